//! `backend = "incus"`: each job in a throwaway Incus instance, every `incus` call an
//! argv through the transport (local or SSH).
//!
//! Once per run: the host session, and a check that an image has exactly the alias
//! (`incus image list` filters by prefix), for a clear error. Per job: `init` from the
//! alias (resolved by Incus atomically, so `pikaci image import` may move it at any
//! time; the image really used is read back from the instance), tagged with the run id
//! for gc, the workspace as a read-only disk when the instance runs where the snapshot is
//! (otherwise streamed in), `start`, readiness (`exec true`), the job's inputs (valid on
//! the host first, then mounted or imported: [`inputs`]), the request written
//! through `exec … sh -c 'umask 077; …; cat > FILE'`, then the agent via `exec`, its
//! output streamed to `host.log`; afterwards the artifacts come back as a tar stream and
//! the instance is deleted — also on failure, timeout and Ctrl-C.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub(crate) mod doctor;
pub(crate) mod inputs;
pub(crate) mod reach;

use super::remote_guest::{RemoteGuest, Side};
use super::session::{HOST_STEP, HostSession, RunContext};
use super::{Backend, BackendError, Guest, HostGcError, JobContext, SetupError, StepError};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{BackendKind, IncusSettings, InstanceType};
use crate::guest_layout::ARTIFACTS;
use crate::incus::{GUEST_WORKSPACE, Incus, REQUEST, instances_of_runs, usable_image};
use crate::protocol::Request;

/// Writes the request from stdin, readable by root only.
pub(crate) const WRITE_REQUEST: &str = r#"umask 077 && mkdir -p "${1%/*}" && cat > "$1""#;
/// Unpacks the workspace tar from stdin and gives it to the job user (uid 1000 in
/// pikaci's images; absent users are not an error).
pub(crate) const UNPACK_WORKSPACE: &str = r#"mkdir -p "$1" && tar -x -f - -C "$1" && chmod -R u+w "$1" && chown -R 1000:1000 "$1" 2>/dev/null; true"#;

/// How long an instance may take to answer `exec true` after `start`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time on top of the job's timeout for the agent to stop the job and write its result.
const AGENT_GRACE: Duration = Duration::from_secs(30);

/// `pikaci gc` for Incus: deletes the instances of runs that are over (a killed pikaci
/// could not delete them). Returns how many.
pub fn collect_instances(
    config: &crate::config::Config,
    host: &crate::config::PoolHost,
    state_root: &Path,
    finished_runs: &[String],
    cancel: &Cancel,
) -> Result<usize, HostGcError> {
    let (transport, _, _) = super::session::connect(config, host, state_root, cancel)?;
    let incus = Incus::new(&config.backends.incus);
    let deadline = || Instant::now() + HOST_STEP;
    let json = transport.run(&incus.list_instances(), b"", deadline(), cancel)?;
    let names = instances_of_runs(&json.stdout, finished_runs)?;
    for name in &names {
        transport.run(&incus.delete(name), b"", deadline(), cancel)?;
    }
    Ok(names.len())
}

/// A valid instance name for a job: letters, digits and dashes, unique per run and job.
pub fn instance_name(run: &str, job: &str) -> String {
    let digest = Sha256::digest(format!("{run}\0{job}").as_bytes());
    let hash = crate::snapshot::hex(&digest[..6]);
    let readable: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("pikaci-{}-{hash}", readable.trim_matches('-'))
}

struct Prepared {
    session: HostSession,
    settings: IncusSettings,
    /// Job id → its `incus-target`, for the jobs that have one.
    job_targets: BTreeMap<String, String>,
}

impl Prepared {
    /// The cluster member a job's instance goes to, and the setting that says so.
    fn placement(&self, job: &str) -> Option<(&str, String)> {
        match self.job_targets.get(job) {
            Some(member) => Some((member, format!("jobs.{job}.incus-target"))),
            None => self
                .settings
                .target
                .as_deref()
                .map(|member| (member, "backends.incus.target".to_string())),
        }
    }
}

pub struct IncusBackend {
    prepared: Arc<Prepared>,
}

impl IncusBackend {
    pub fn prepare(mut cx: RunContext, cancel: &Cancel) -> Result<IncusBackend, SetupError> {
        let settings = cx.run.config.backends.incus.clone();
        let session = HostSession::open(&mut cx, cancel)?;
        let incus = Incus::new(&settings);
        let json = session
            .run(&incus.image_list(&settings.image), b"", cancel)
            .map_err(|source| SetupError::Host {
                what: "list the Incus images",
                source,
            })?;
        usable_image(&json, &settings)?;
        let job_targets = cx
            .run
            .config
            .jobs
            .iter()
            .filter_map(|(id, job)| Some((id.to_string(), job.incus_target.clone()?)))
            .collect();
        Ok(IncusBackend {
            prepared: Arc::new(Prepared {
                session,
                settings,
                job_targets,
            }),
        })
    }
}

impl Backend for IncusBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Incus
    }

    /// A writable workspace is streamed into the instance, which is its copy.
    fn uses_local_copy(&self) -> bool {
        false
    }

    fn launch(&self, job: &JobContext, cancel: &Cancel) -> Result<Box<dyn Guest>, BackendError> {
        let p = &self.prepared;
        let incus = Incus::new(&p.settings);
        // Checked before the instance exists: never a guest without its inputs.
        p.session.ensure_inputs(job, cancel)?;
        let instance = Instance {
            prepared: Arc::clone(&self.prepared),
            name: instance_name(job.run_id, &job.request.job_id),
        };
        // Dropping the guest deletes the instance, also when `init` fails half way (a
        // deadline hit after the instance was created).
        let mut guest = RemoteGuest::new(instance, job);
        let placement = p.placement(&job.request.job_id);
        guest.step("init", "creating the instance", |g| {
            let member = placement.as_ref().map(|(member, _)| *member);
            let init = incus.init(&p.settings, &g.side.name, job.run_id, member);
            let created = p.session.run(&init, b"", cancel).or_else(|first| {
                // `image import` may have moved the alias and removed the image it named
                // while Incus was creating this instance from it; the alias now names a
                // new image, so one more try (after removing what the first left).
                if cancel.is_cancelled() {
                    return Err(first);
                }
                let _ = p.session.run(&incus.delete(&g.side.name), b"", cancel);
                p.session.run(&init, b"", cancel)
            });
            created.map_err(|source| match &placement {
                Some((member, key)) => StepError::Placement {
                    member: member.to_string(),
                    key: key.clone(),
                    source: Box::new(source),
                },
                None => StepError::Host(source),
            })
        })?;
        // A read-only disk when the instance runs where the snapshot is; otherwise (a
        // remote host, an Incus remote whose server cannot see this machine's files, or
        // a writable workspace) the files are streamed in after start.
        let stream_workspace =
            !p.session.local || p.settings.remote.is_some() || job.request.writable_workspace;
        if !stream_workspace {
            guest.step("workspace", "adding the workspace", |g| {
                p.session.run(
                    &incus.add_workspace(&g.side.name, job.workspace),
                    b"",
                    cancel,
                )
            })?;
        }
        // The instance's own record of its image (not a second lookup), read while it
        // starts.
        let name = guest.side.name.clone();
        let ((start, start_took), (base, base_took)) = std::thread::scope(|scope| {
            let base =
                scope.spawn(|| timed(|| p.session.run(&incus.base_image(&name), b"", cancel)));
            let start = timed(|| p.session.run(&incus.start(&name), b"", cancel));
            (start, base.join().expect("a host command does not panic"))
        });
        guest.took("start", start_took);
        guest.took("image", base_took);
        start.map_err(|e| guest.error("starting the instance", e))?;
        let base = base.map_err(|e| guest.error("reading the instance's image", e))?;
        // Kept beside the job's logs: the image this job really ran on.
        let base = format!("{}\n", String::from_utf8_lossy(&base).trim());
        std::fs::write(job.job_dir.join("incus-image"), base)
            .map_err(|e| guest.error("recording the instance's image", e))?;
        // A container runs its processes once `start` returns; a VM's agent needs time.
        if p.settings.instance_type == InstanceType::Vm {
            guest.step("ready", "waiting for the instance", |g| {
                g.side.wait_ready(&incus, cancel)
            })?;
        }
        if stream_workspace {
            guest.step("workspace", "copying the workspace in", |g| {
                g.side.stream_workspace(&incus, job.workspace, cancel)
            })?;
        }
        // Into the started instance, as its image allows (inputs::provide).
        let (provided, inputs_took) = timed(|| {
            inputs::provide(
                p.session.transport.as_ref(),
                &incus,
                &guest.side.name,
                job,
                cancel,
            )
        });
        if !job.inputs.is_empty() {
            guest.took("inputs", inputs_took);
        }
        provided.map_err(|source| BackendError::InstanceInputs {
            job: job.request.job_id.clone(),
            source: Box::new(source),
        })?;
        let request = Request {
            workdir: GUEST_WORKSPACE.into(),
            ..job.request.clone()
        };
        let json = serde_json::to_vec_pretty(&request)
            .map_err(|e| guest.error("writing the request", std::io::Error::from(e)))?;
        let write = incus.exec(
            &guest.side.name,
            &["sh", "-c", WRITE_REQUEST, "pikaci-request", REQUEST],
        );
        guest.step("request", "writing the request", |_| {
            p.session.run(&write, &json, cancel)
        })?;
        let agent = incus.exec(&guest.side.name, &[&p.settings.guest_agent, "run", REQUEST]);
        guest.start(&agent, "starting the agent", cancel)?;
        Ok(Box::new(guest))
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    (f(), started.elapsed())
}

/// One job's instance: what the shared [`RemoteGuest`] needs to know of it.
struct Instance {
    prepared: Arc<Prepared>,
    name: String,
}

impl Instance {
    fn incus(&self) -> Incus<'_> {
        Incus::new(&self.prepared.settings)
    }

    fn wait_ready(&self, incus: &Incus, cancel: &Cancel) -> Result<(), StepError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let probe = incus.exec(&self.name, &["true"]);
        loop {
            let step = Instant::now() + HOST_STEP;
            let answer = self.prepared.session.transport.run_unchecked(
                &probe,
                b"",
                step.min(deadline.max(Instant::now())),
                cancel,
            );
            if answer.as_ref().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if cancel.is_cancelled() || Instant::now() >= deadline {
                return Err(StepError::NotReady(READY_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Copies the workspace in: a tar stream into `/workspace`.
    fn stream_workspace(
        &self,
        incus: &Incus,
        workspace: &Path,
        cancel: &Cancel,
    ) -> Result<(), StepError> {
        let mut builder = tar::Builder::new(tempfile::tempfile()?);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", workspace)?;
        let mut file = builder.into_inner()?;
        std::io::Seek::rewind(&mut file)?;
        let argv = incus.exec(
            &self.name,
            &[
                "sh",
                "-c",
                UNPACK_WORKSPACE,
                "pikaci-workspace",
                GUEST_WORKSPACE,
            ],
        );
        self.prepared.session.transport.run_file(
            &argv,
            file,
            crate::transport::Step::Upload.from_now(),
            cancel,
        )?;
        Ok(())
    }
}

impl Side for Instance {
    fn session(&self) -> &HostSession {
        &self.prepared.session
    }

    fn artifacts_argv(&self) -> Argv {
        self.incus()
            .exec(&self.name, &["tar", "-C", ARTIFACTS, "-cf", "-", "."])
    }

    fn teardown(&self) -> (&'static str, Argv) {
        ("deleting the instance", self.incus().delete(&self.name))
    }

    fn slack(&self) -> Duration {
        AGENT_GRACE
    }

    fn stops_on_eof(&self) -> bool {
        false
    }

    fn after_lost_connection(&self) -> &'static str {
        ""
    }

    fn no_result(&self, status: &ExitStatus, host_log: &Path) -> String {
        let tail = super::remote_guest::tail_of(host_log, 10);
        crate::incus::agent_without_result(status, &self.prepared.settings, &tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_valid_and_distinct() {
        let a = instance_name("20261125T010203Z-abc", "lint_all.v2");
        assert!(a.starts_with("pikaci-lint-all-v2-"), "{a}");
        assert!(a.len() <= 63);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(a, instance_name("20261125T010203Z-abd", "lint_all.v2"));
    }
}
