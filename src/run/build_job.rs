//! One build job of a flake target: `nix build` of its attribute where builds happen (the
//! build host, else this machine), recorded like any job. Phases: `eval` (a dry run that
//! evaluates and names the outputs; when they are already valid there, or in the cache,
//! the job is `cached` and ends) and `build`. The job's log (`guest.log`, what
//! `pikaci logs` and JUnit show) is nix's; `host.log` has each command pikaci ran there
//! and the tail of what it printed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::job::{JobEnd, RunShared};
use crate::argv::Argv;
use crate::backend::session::{HostSession, run_roots};
use crate::config::BuildSpec;
use crate::fsutil::{now_rfc3339, tail};
use crate::ids::Id;
use crate::nix::flake_jobs::{
    cache_options, dry_run_argv, dry_run_builds_nothing, parse_valid, path_info_argv,
};
use crate::nix::{NixBuild, NixError, StorePath, installable_in, parse_build_json};
use crate::plan::ExecuteNode;
use crate::state::{EventKind, JobStatus};
use crate::transport::{Local, Step, Transport, TransportError};

/// The file in a build job's directory that lists the outputs it built or found valid,
/// for the push to the cache.
pub fn outputs_file(job_dir: &Path) -> PathBuf {
    job_dir.join("outputs.json")
}

/// Where the job builds: a transport, the snapshot there, and the directory its out-link
/// (GC root) goes in.
struct Place {
    transport: PlaceTransport,
    snapshot: PathBuf,
    roots: PathBuf,
    host: Option<Id>,
}

enum PlaceTransport {
    Here,
    Session(Arc<HostSession>),
}

impl Place {
    fn transport(&self) -> &dyn Transport {
        match &self.transport {
            PlaceTransport::Here => &Local,
            PlaceTransport::Session(s) => s.transport.as_ref(),
        }
    }
}

/// How the job ended, before it is recorded.
struct Ended {
    status: JobStatus,
    message: Option<String>,
    exit_code: Option<i32>,
    failed_in: Option<&'static str>,
}

impl Ended {
    fn error(phase: &'static str, message: String) -> Ended {
        Ended {
            status: JobStatus::Error,
            message: Some(crate::hint::with_hint(message)),
            exit_code: None,
            failed_in: Some(phase),
        }
    }
}

/// Runs build job `node` to its end and records it; errors are record-write failures.
pub fn run_build_job(
    node: &ExecuteNode,
    spec: &BuildSpec,
    run: &RunShared,
) -> std::io::Result<JobEnd> {
    let job = &node.job;
    let dir = run.recorder.run.job(&job.id);
    let started = SystemTime::now();
    let build_host = run.backends.build_host().map(|b| b.name().clone());
    let mut record =
        super::job::start_record(node, build_host.as_ref(), Vec::new(), run.recorder, &dir)?;
    let ended = Build {
        node,
        spec,
        run,
        dir: &dir,
        phases: &mut record.phases,
    }
    .drive();
    let ended = if run.cancel.is_cancelled() && !ended.status.passed() {
        Ended {
            status: JobStatus::Cancelled,
            ..ended
        }
    } else {
        ended
    };
    record.status = ended.status;
    record.message = ended.message;
    record.exit_code = ended.exit_code;
    record.failed_in = ended.failed_in.map(str::to_string);
    record.finished_at = Some(now_rfc3339());
    record.duration_ms = Some(
        SystemTime::now()
            .duration_since(started)
            .unwrap_or_default()
            .as_millis() as u64,
    );
    run.recorder.write_job(&dir, &record)?;
    run.recorder.emit(super::job::finished_event(&record));
    Ok(JobEnd::Recorded(record.status))
}

struct Build<'a> {
    node: &'a ExecuteNode,
    spec: &'a BuildSpec,
    run: &'a RunShared<'a>,
    dir: &'a Path,
    phases: &'a mut BTreeMap<String, u64>,
}

impl Build<'_> {
    fn phase<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.run.recorder.emit(EventKind::JobPhase {
            job: self.node.job.id.to_string(),
            phase: name.to_string(),
        });
        let started = Instant::now();
        let value = f(self);
        *self.phases.entry(name.to_string()).or_default() += started.elapsed().as_millis() as u64;
        value
    }

    fn drive(mut self) -> Ended {
        let place = match self.phase("setup", |b| b.place()) {
            Ok(place) => place,
            Err(message) => return Ended::error("setup", message),
        };
        let installable = installable_in(&place.snapshot, &self.spec.installable());
        let (outputs, builds_nothing) =
            match self.phase("eval", |b| b.dry_run(&place, &installable)) {
                Ok(found) => found,
                Err(ended) => return ended,
            };
        if self.spec.skip_cached
            && let Some((why, here)) = self.phase("eval", |b| {
                b.already_there(&place, &outputs, builds_nothing)
            })
        {
            if here {
                self.keep_outputs(&outputs);
            }
            return Ended {
                status: JobStatus::Cached,
                message: Some(why),
                exit_code: None,
                failed_in: None,
            };
        }
        self.phase("build", |b| b.build(&place, &installable))
    }

    /// The build host's session (opened by the first job that needs it), else here.
    fn place(&mut self) -> Result<Place, String> {
        let run = self.run;
        match run.backends.build_host() {
            None => Ok(Place {
                transport: PlaceTransport::Here,
                snapshot: run.snapshot.to_path_buf(),
                roots: run.recorder.run.gcroots(),
                host: None,
            }),
            Some(b) => {
                let session = b.session(run.cancel).map_err(|e| {
                    format!(
                        "build host `{}` cannot be set up: {}",
                        b.name(),
                        crate::error::chain(&*e)
                    )
                })?;
                Ok(Place {
                    snapshot: session.snapshot.clone(),
                    roots: run_roots(&session.work_dir, &run.recorder.run.id),
                    transport: PlaceTransport::Session(session),
                    host: Some(b.name().clone()),
                })
            }
        }
    }

    /// Runs `argv` where the job builds, noting it and the tail of its stderr in host.log.
    fn on_place(&self, place: &Place, argv: &Argv) -> Result<crate::transport::Output, String> {
        let deadline = Step::Build.from_now();
        let output = place
            .transport()
            .run_unchecked(argv, b"", deadline, self.run.cancel)
            .map_err(|e| crate::error::chain(&e))?;
        let on = place
            .host
            .as_ref()
            .map_or("here".into(), |h| format!("on `{h}`"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut text = format!("pikaci: {on}: {argv} ({})\n", output.status);
        if !stderr.trim().is_empty() {
            text.push_str(&tail(&stderr, 25));
            text.push('\n');
        }
        self.host_log(&text);
        Ok(output)
    }

    fn host_log(&self, text: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("host.log"));
        let _ = log.and_then(|mut log| log.write_all(text.as_bytes()));
    }

    /// `nix build --dry-run --json`: the derivation evaluates, and these are its outputs.
    /// An evaluation error is the job's failure, with nix's stderr as its log.
    /// Also whether the dry run would build nothing (see [`dry_run_builds_nothing`]).
    fn dry_run(&self, place: &Place, installable: &str) -> Result<(Vec<StorePath>, bool), Ended> {
        let argv = dry_run_argv(installable, &place.snapshot);
        let output = self
            .on_place(place, &argv)
            .map_err(|e| Ended::error("eval", e))?;
        if !output.status.success() {
            let _ = std::fs::write(self.dir.join("guest.log"), &output.stderr);
            return Err(Ended {
                status: JobStatus::Failed,
                message: Some(format!(
                    "`{}` does not evaluate ({}): {}",
                    self.spec.installable(),
                    output.status,
                    tail(&String::from_utf8_lossy(&output.stderr), 5)
                )),
                exit_code: output.status.code(),
                failed_in: Some("eval"),
            });
        }
        let results = parse_build_json(&String::from_utf8_lossy(&output.stdout)).map_err(|e| {
            Ended::error(
                "eval",
                format!("`{argv}` printed JSON pikaci cannot read: {e}"),
            )
        })?;
        let outputs = results
            .into_iter()
            .flat_map(|r| r.outputs.into_values())
            .collect();
        let builds_nothing = dry_run_builds_nothing(&String::from_utf8_lossy(&output.stderr));
        Ok((outputs, builds_nothing))
    }

    /// Why the job need not build: every output is valid where it builds, or in the
    /// cache (`[nix] cache`), or Nix's dry run would only fetch them from the substituters
    /// of the Nix where it builds; and whether it is the first. A store that cannot be
    /// asked counts as not having them.
    fn already_there(
        &self,
        place: &Place,
        outputs: &[StorePath],
        builds_nothing: bool,
    ) -> Option<(String, bool)> {
        let all_in = |store: Option<&str>| {
            let argv = path_info_argv(store, outputs);
            let output = self.on_place(place, &argv).ok()?;
            let valid = parse_valid(&String::from_utf8_lossy(&output.stdout)).ok()?;
            output
                .status
                .success()
                .then(|| outputs.iter().all(|p| valid.contains(&p.to_string())))
        };
        let where_built = place
            .host
            .as_ref()
            .map_or("here".to_string(), |h| format!("on build host `{h}`"));
        if all_in(None) == Some(true) {
            let why = format!("its outputs are already valid {where_built}");
            return Some((why, true));
        }
        if let Some(cache) = self.run.backends.config().nix.cache.as_deref()
            && all_in(Some(cache)) == Some(true)
        {
            return Some((format!("its outputs are in the cache {cache}"), false));
        }
        let why =
            format!("its outputs can be fetched by the Nix {where_built} from its substituters");
        builds_nothing.then_some((why, false))
    }

    fn build(&self, place: &Place, installable: &str) -> Ended {
        let job = &self.node.job;
        let mkdir = Argv::new("mkdir").args(["-p", "--"]).arg(&place.roots);
        if let Err(e) =
            place
                .transport()
                .run(&mkdir, b"", Step::Bookkeeping.from_now(), self.run.cancel)
        {
            return Ended::error("build", crate::error::chain(&e));
        }
        let out_link = place.roots.join(format!("build-{}", job.id));
        let build = NixBuild {
            installable,
            out_link: &out_link,
            cwd: &place.snapshot,
        };
        let options = self.substituter();
        let log = self.dir.join("guest.log");
        let deadline = Instant::now() + job.timeout;
        let result = build.run_with(place.transport(), &log, deadline, self.run.cancel, &options);
        self.host_log(&format!(
            "pikaci: {}\n{}\n",
            build.argv_with(&options),
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 25)
        ));
        match result {
            Ok(results) => {
                let outputs: Vec<StorePath> = results
                    .into_iter()
                    .flat_map(|r| r.outputs.into_values())
                    .collect();
                self.keep_outputs(&outputs);
                Ended {
                    status: JobStatus::Passed,
                    message: None,
                    exit_code: Some(0),
                    failed_in: None,
                }
            }
            Err(NixError::Failed {
                status,
                stderr_tail,
                ..
            }) => Ended {
                status: JobStatus::Failed,
                message: Some(format!(
                    "nix build failed ({status}): {}",
                    tail(&stderr_tail, 5)
                )),
                exit_code: None,
                failed_in: Some("build"),
            },
            Err(NixError::Transport(TransportError::TimedOut { .. })) => Ended {
                status: JobStatus::TimedOut,
                message: Some(format!(
                    "nix build did not finish within the job's timeout of {}",
                    humantime::format_duration(job.timeout)
                )),
                exit_code: None,
                failed_in: Some("build"),
            },
            Err(e) => Ended::error("build", crate::error::chain(&e)),
        }
    }

    /// `--option`s that make the build substitute from `[nix] cache`, trusting its key.
    fn substituter(&self) -> Vec<(String, String)> {
        let (options, key_error) = cache_options(&self.run.backends.config().nix);
        if let Some(e) = key_error {
            self.host_log(&format!("pikaci: {e}; the cache's paths are not trusted\n"));
        }
        options
    }

    /// Best effort: a job without the file only has nothing pushed to the cache.
    fn keep_outputs(&self, outputs: &[StorePath]) {
        let paths: Vec<String> = outputs.iter().map(|p| p.to_string()).collect();
        let _ = crate::fsutil::write_json_atomic(&outputs_file(self.dir), &paths);
    }
}
