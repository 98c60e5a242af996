//! `backend = "incus"`: each job in a throwaway Incus instance, every `incus` call an
//! argv through the transport (local or SSH).
//!
//! Once per run: the host session, and a check that an image has exactly the alias
//! (`incus image list` filters by prefix), for a clear error. Per job: `init` from the
//! alias (resolved by Incus atomically, so `pikaci image import` may move it at any
//! time; the image really used is read back from the instance), tagged with the run id
//! for gc, the workspace as a read-only disk when the instance runs where the snapshot is
//! (otherwise streamed in), `start`, readiness (`exec true`), the request written
//! through `exec … sh -c 'umask 077; …; cat > FILE'`, then the agent via `exec`, its
//! output streamed to `host.log`; afterwards the artifacts come back as a tar stream and
//! the instance is deleted — also on failure, timeout and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

pub(crate) mod doctor;

use super::session::{HOST_STEP, HostSession, RunContext};
use super::{Backend, BackendError, Guest, JobContext};
use crate::cancel::Cancel;
use crate::config::{BackendKind, IncusSettings, InstanceType};
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::guest_layout::ARTIFACTS;
use crate::incus::{GUEST_WORKSPACE, Incus, REQUEST, instances_of_runs, usable_image};
use crate::protocol::{GuestResult, Request};

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
    state_root: &Path,
    finished_runs: &[String],
    cancel: &Cancel,
) -> Result<usize, String> {
    let (transport, _, _) = super::session::connect(config, state_root, cancel)?;
    let incus = Incus::new(&config.backends.incus);
    let list = incus.list_instances();
    let deadline = || Instant::now() + HOST_STEP;
    let json = transport
        .run(&list, b"", deadline(), cancel)
        .map_err(|e| e.to_string())?;
    let names = instances_of_runs(&json.stdout, finished_runs)?;
    for name in &names {
        transport
            .run(&incus.delete(name), b"", deadline(), cancel)
            .map_err(|e| e.to_string())?;
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
}

pub struct IncusBackend {
    prepared: Arc<Prepared>,
}

impl IncusBackend {
    pub fn prepare(cx: &RunContext, cancel: &Cancel) -> Result<IncusBackend, String> {
        let settings = cx.config.backends.incus.clone();
        let session = HostSession::open(cx, cancel)?;
        let incus = Incus::new(&settings);
        let json = session.run(&incus.image_list(&settings.image), b"", cancel)?;
        usable_image(&json, &settings)?;
        Ok(IncusBackend {
            prepared: Arc::new(Prepared { session, settings }),
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
        let name = instance_name(job.run_id, &job.request.job_id);
        // Dropping the guest deletes the instance, also when `init` fails half way (a
        // deadline hit after the instance was created).
        let mut guest = IncusGuest {
            prepared: Arc::clone(&self.prepared),
            name,
            child: None,
            job_id: job.request.job_id.clone(),
            timeout: job.request.timeout(),
            job_dir: job.job_dir.to_path_buf(),
            deleted: false,
            steps: Vec::new(),
        };
        guest.step("init", "creating the instance", |g| {
            let init = incus.init(&p.settings, &g.name, job.run_id);
            p.session.run(&init, b"", cancel).or_else(|first| {
                // `image import` may have moved the alias and removed the image it named
                // while Incus was creating this instance from it; the alias now names a
                // new image, so one more try (after removing what the first left).
                if cancel.is_cancelled() {
                    return Err(first);
                }
                let _ = p.session.run(&incus.delete(&g.name), b"", cancel);
                p.session.run(&init, b"", cancel)
            })
        })?;
        // A read-only disk when the instance runs where the snapshot is; otherwise (a
        // remote host, or a writable workspace) the files are streamed in after start.
        let stream_workspace = !p.session.local || job.request.writable_workspace;
        if !stream_workspace {
            guest.step("workspace", "adding the workspace", |g| {
                p.session
                    .run(&incus.add_workspace(&g.name, job.workspace), b"", cancel)
            })?;
        }
        // The instance's own record of its image (not a second lookup), read while it
        // starts.
        let ((start, start_took), (base, base_took)) = std::thread::scope(|scope| {
            let base = scope
                .spawn(|| timed(|| p.session.run(&incus.base_image(&guest.name), b"", cancel)));
            let start = timed(|| p.session.run(&incus.start(&guest.name), b"", cancel));
            (start, base.join().expect("a host command does not panic"))
        });
        guest
            .steps
            .extend([("start", start_took), ("image", base_took)]);
        start.map_err(|e| guest.error("starting the instance", e))?;
        let base = base.map_err(|e| guest.error("reading the instance's image", e))?;
        // Kept beside the job's logs: the image this job really ran on.
        let base = format!("{}\n", String::from_utf8_lossy(&base).trim());
        std::fs::write(guest.job_dir.join("incus-image"), base)
            .map_err(|e| guest.error("recording the instance's image", e.to_string()))?;
        // A container runs its processes once `start` returns; a VM's agent needs time.
        if p.settings.instance_type == InstanceType::Vm {
            guest.step("ready", "waiting for the instance", |g| {
                g.wait_ready(&incus, cancel)
            })?;
        }
        if stream_workspace {
            guest.step("workspace", "copying the workspace in", |g| {
                g.stream_workspace(&incus, job.workspace, cancel)
            })?;
        }
        let request = Request {
            workdir: GUEST_WORKSPACE.into(),
            ..job.request.clone()
        };
        let json = serde_json::to_vec_pretty(&request)
            .map_err(|e| guest.error("writing the request", e.to_string()))?;
        let write = incus.exec(
            &guest.name,
            &["sh", "-c", WRITE_REQUEST, "pikaci-request", REQUEST],
        );
        guest.step("request", "writing the request", |_| {
            p.session.run(&write, &json, cancel)
        })?;

        let agent = incus.exec(&guest.name, &[&p.settings.guest_agent, "run", REQUEST]);
        let log = std::fs::File::create(job.job_dir.join("host.log"))
            .map_err(|e| guest.error("creating host.log", e.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| guest.error("creating host.log", e.to_string()))?;
        let mut command = p.session.transport.command(&agent);
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = GroupChild::spawn(&mut command, cancel)
            .map_err(|e| guest.error("starting the agent", e.to_string()))?;
        guest.child = Some(child);
        Ok(Box::new(guest))
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    (f(), started.elapsed())
}

struct IncusGuest {
    prepared: Arc<Prepared>,
    name: String,
    /// `incus exec … pikaci-guest run`, streaming into host.log.
    child: Option<GroupChild>,
    job_id: String,
    timeout: std::time::Duration,
    job_dir: PathBuf,
    deleted: bool,
    /// How long each step of launch took.
    steps: Vec<(&'static str, Duration)>,
}

impl IncusGuest {
    fn error(&self, step: &'static str, why: impl ToString) -> BackendError {
        BackendError::Host {
            job: self.job_id.clone(),
            step,
            why: why.to_string(),
        }
    }

    /// Runs one step of launch, timed under `name`; a failure names `what`.
    fn step<T, E: ToString>(
        &mut self,
        name: &'static str,
        what: &'static str,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, BackendError> {
        let (value, took) = timed(|| f(self));
        self.steps.push((name, took));
        value.map_err(|e| self.error(what, e.to_string()))
    }

    fn incus(&self) -> Incus<'_> {
        Incus::new(&self.prepared.settings)
    }

    fn wait_ready(&self, incus: &Incus, cancel: &Cancel) -> Result<(), String> {
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
                return Err(format!(
                    "it did not answer `incus exec … true` within {READY_TIMEOUT:?}"
                ));
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
    ) -> Result<(), String> {
        let pack = |e: std::io::Error| format!("cannot pack the workspace: {e}");
        let mut builder = tar::Builder::new(tempfile::tempfile().map_err(pack)?);
        builder.follow_symlinks(false);
        builder.append_dir_all(".", workspace).map_err(pack)?;
        let mut file = builder.into_inner().map_err(pack)?;
        std::io::Seek::rewind(&mut file).map_err(pack)?;
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
        self.prepared
            .session
            .transport
            .run_file(
                &argv,
                file,
                crate::transport::Step::Upload.from_now(),
                cancel,
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Guest for IncusGuest {
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.error("waiting for the job", "the agent was not started"));
        };
        child
            .wait(deadline + AGENT_GRACE, cancel)
            .map_err(|e| self.error("waiting for the job", e))
    }

    fn stop(&mut self, urgent: bool) {
        if let Some(child) = self.child.as_mut() {
            child.terminate(if urgent { Duration::ZERO } else { KILL_GRACE });
        }
    }

    fn collect(&mut self, ended: Ended, started: SystemTime) -> Result<GuestResult, BackendError> {
        let argv = self
            .incus()
            .exec(&self.name, &["tar", "-C", ARTIFACTS, "-cf", "-", "."]);
        let from_guest = super::artifacts::fetch(
            self.prepared.session.transport.as_ref(),
            &argv,
            &self.job_dir,
        )
        .map_err(|(step, why)| self.error(step, why))?;
        let transport = self.prepared.session.transport.as_ref();
        let result = match (from_guest, ended) {
            (Some(result), _) => result,
            (None, Ended::Exited(status)) if transport.is_connection_failure(&status) => {
                GuestResult::error(
                    started,
                    format!(
                        "the connection to {} was lost while the job ran",
                        transport.host()
                    ),
                )
            }
            (None, Ended::Exited(status)) => {
                let host_log = std::fs::read(self.job_dir.join("host.log")).unwrap_or_default();
                let tail = crate::fsutil::tail(&String::from_utf8_lossy(&host_log), 10);
                let why =
                    crate::incus::agent_without_result(&status, &self.prepared.settings, &tail);
                GuestResult::error(started, why)
            }
            (None, ended) => GuestResult::from_ended(ended, self.timeout, started),
        };
        crate::fsutil::write_json_atomic(&self.job_dir.join("result.json"), &result)
            .map_err(|e| self.error("writing result.json", e))?;
        Ok(result)
    }

    fn launch_steps(&self) -> Vec<(&'static str, Duration)> {
        self.steps.clone()
    }

    fn cleanup(&mut self) -> Result<(), BackendError> {
        if let Some(mut child) = self.child.take() {
            child.terminate(KILL_GRACE);
        }
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        let argv = self.incus().delete(&self.name);
        self.prepared
            .session
            .run(&argv, b"", &Cancel::new())
            .map(drop)
            .map_err(|e| self.error("deleting the instance", e))
    }
}

impl Drop for IncusGuest {
    fn drop(&mut self) {
        let _ = self.cleanup();
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
