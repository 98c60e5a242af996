//! `backend = "host"`: no VM; the job's shell (`bash --noprofile --norc -eo pipefail -c
//! CMD` by default) on the CI host, as the user running pikaci.
//!
//! Three guarantees, each without privileges where the kernel allows:
//! - **Its own tree.** The snapshot store lives in the state dir, usually inside the
//!   user's worktree, and git and Nix look for a repository in every parent directory
//!   (Nix without a ceiling). So the job never runs there: its workspace is an empty
//!   directory under the temp dir onto which, in a private mount namespace, the snapshot
//!   (or the writable job's private copy) is bind-mounted.
//! - **Read-only.** That bind mount is read-only unless the job is writable, so neither
//!   root nor the owner of the snapshot's files can write through its hard links into the
//!   object store. Root gets the mount namespace directly; another user gets it inside a
//!   user namespace mapping it to root, and then a nested one mapping it back to its own
//!   uid and gid, so the job runs as the user it is. Where user namespaces are disabled,
//!   the job runs in a private copy made under the temp dir: still its own tree, but its
//!   files are writable (said in the run's output and in host.log).
//! - **Nothing outlives it.** The job runs under a [`crate::reaper`], which ends every
//!   descendant (`setsid` daemons too) when the command exits, when stopped, or when
//!   pikaci dies.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use super::{Backend, BackendError, Guest, JobContext, StepError};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::BackendKind;
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::fsutil::Durability;
use crate::namespaces::WorkspaceMount;
use crate::output::{Logged, spawn_logged};
use crate::protocol::{GuestResult, Request};

/// How a host job gets a workspace of its own, outside the worktree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// root: a private mount namespace.
    MountNamespace,
    /// Another user: a user and mount namespace, then a nested user namespace that maps
    /// the job back to this uid and gid.
    UserNamespace { uid: u32, gid: u32 },
    /// No namespaces available: a private copy under the temp dir; read-only is not
    /// enforced.
    Copy,
}

impl Isolation {
    /// What this machine allows the user running pikaci, probed by running `unshare`
    /// once (a root in a container without CAP_SYS_ADMIN gets no mount namespace).
    pub fn detect() -> Isolation {
        let works = |argv: Argv| {
            argv.arg("true")
                .command()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if rustix::process::geteuid().is_root() && works(probe_argv(None)) {
            return Isolation::MountNamespace;
        }
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        if works(probe_argv(Some((uid, gid)))) {
            Isolation::UserNamespace { uid, gid }
        } else {
            Isolation::Copy
        }
    }

    /// The workspace mount of a job that sees `source` at `workspace`.
    fn mount(self, source: &Path, workspace: &Path, writable: bool) -> Option<WorkspaceMount> {
        let user = match self {
            Isolation::MountNamespace => None,
            Isolation::UserNamespace { uid, gid } => Some((uid, gid)),
            Isolation::Copy => return None,
        };
        Some(WorkspaceMount {
            source: source.to_path_buf(),
            target: workspace.to_path_buf(),
            read_only: !writable,
            user,
        })
    }

    /// [`Isolation::detect`], once per process: started early by [`Isolation::probe_early`]
    /// or made here.
    pub fn detected() -> Isolation {
        *DETECTED.get_or_init(Isolation::detect)
    }

    /// Starts the probe on a thread, so that its `unshare` runs while the snapshot is
    /// taken instead of before the first host job.
    pub fn probe_early() {
        std::thread::spawn(Isolation::detected);
    }

    /// The line said in the run's output and host.log when a guarantee is missing.
    pub fn caveat(self) -> Option<&'static str> {
        (self == Isolation::Copy).then_some(
            "user namespaces are not available to this user, so host jobs run in a private \
             copy of the workspace under the temp dir: a job can change its copy (not the \
             snapshot); its read-only workspace is not enforced",
        )
    }
}

/// `unshare` into what a job's reaper enters ([`crate::namespaces`]), and for another
/// user the nested namespace the job runs in.
fn probe_argv(user: Option<(u32, u32)>) -> Argv {
    match user {
        None => Argv::new("unshare").args(["--mount", "--propagation", "private", "--"]),
        Some((uid, gid)) => Argv::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "--",
            ])
            .args(crate::namespaces::as_user_argv(uid, gid)),
    }
}

static DETECTED: OnceLock<Isolation> = OnceLock::new();

pub struct HostBackend {
    isolation: OnceLock<Isolation>,
}

impl Default for HostBackend {
    fn default() -> Self {
        HostBackend::new()
    }
}

impl HostBackend {
    pub fn new() -> HostBackend {
        HostBackend {
            isolation: OnceLock::new(),
        }
    }

    /// Detected at the first host job of the run, and its caveat said once.
    fn isolation(&self) -> Isolation {
        *self.isolation.get_or_init(|| {
            let isolation = Isolation::detected();
            if let Some(caveat) = isolation.caveat() {
                crate::errln!("pikaci: note: {caveat}");
            }
            isolation
        })
    }
}

/// Everything one host job's command line is made of.
pub struct HostJob<'a> {
    pub request: &'a Request,
    /// What the job sees: the snapshot, or a writable job's private copy.
    pub source: &'a Path,
    /// Where it sees it: an empty directory outside the worktree (the copy itself with
    /// [`Isolation::Copy`]).
    pub workspace: &'a Path,
    pub artifacts: &'a Path,
    pub inherited_path: Option<OsString>,
    pub isolation: Isolation,
    /// The `pikaci` binary, which is also the job's [`crate::reaper`] (see [`reaper`]).
    pub reaper: Option<&'a Path>,
}

/// The job's reaper: this very `pikaci` binary, run as `pikaci __pikaci-reap`. The
/// library's unit tests run inside a test harness, which is no pikaci (it would take the
/// reaper's arguments for test names and run its tests again): their host jobs run
/// without one, in a copy. The integration tests drive the real binary, reaper included.
fn reaper() -> std::io::Result<Option<std::path::PathBuf>> {
    if cfg!(test) {
        return Ok(None);
    }
    std::env::current_exe().map(Some)
}

impl HostJob<'_> {
    /// Its workspace mount, unless it runs in a copy.
    pub fn mount(&self) -> Option<WorkspaceMount> {
        let writable = self.request.writable_workspace;
        self.isolation.mount(self.source, self.workspace, writable)
    }
}

/// The command line for one job; pure so its shape can be pinned by a snapshot. The
/// reaper makes the workspace mount ([`HostJob::mount`]).
pub fn job_argv(job: &HostJob) -> Argv {
    let request = job.request;
    let shell = request.shell_argv();
    // Reaper (with the workspace mount), then the shell.
    let mut words: Vec<OsString> = Vec::new();
    if let Some(reaper) = job.reaper {
        words.push(reaper.into());
        words.push(crate::reaper::REAP_ARG.into());
        match job.mount() {
            Some(mount) => {
                words.extend(mount.args());
                words.extend(mount.as_user_argv());
            }
            None => words.push("--".into()),
        }
    }
    words.extend(shell.into_iter().map(OsString::from));
    let argv = Argv::new(&words[0]).args(&words[1..]);
    let mut path: Vec<PathBuf> = request.path.iter().map(|p| p.join("bin")).collect();
    path.extend(job.inherited_path.iter().flat_map(std::env::split_paths));
    let path = std::env::join_paths(path).unwrap_or_default();
    let mut argv = argv
        .cwd(job.workspace)
        .env("PATH", path)
        .env("PWD", job.workspace)
        .env("PIKACI_ARTIFACTS", job.artifacts)
        .env("PIKACI_JOB", &request.job_id);
    for (key, value) in &request.env {
        argv = argv.env(key, value);
    }
    argv
}

impl Backend for HostBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Host
    }

    fn launch(&self, job: &JobContext, cancel: &Cancel) -> Result<Box<dyn Guest>, BackendError> {
        let io = |step| {
            let job = job.request.job_id.clone();
            move |source| BackendError::Step {
                job,
                step,
                source: Box::new(StepError::Io(source)),
            }
        };
        std::fs::create_dir_all(job.artifacts()).map_err(io("creating the artifacts dir"))?;
        let log = File::create(job.guest_log()).map_err(io("creating guest.log"))?;
        let mut host_log =
            File::create(job.job_dir.join("host.log")).map_err(io("creating host.log"))?;
        let reaper = reaper().map_err(io("finding the pikaci binary"))?;
        // The reaper makes the workspace mount: without one, a copy.
        let isolation = match reaper {
            Some(_) => self.isolation(),
            None => Isolation::Copy,
        };
        let scratch =
            Scratch::create().map_err(io("creating the job's directory under the temp dir"))?;
        let workspace = scratch.workspace();
        if isolation == Isolation::Copy {
            crate::snapshot::private_copy(job.workspace, &workspace)
                .map_err(|e| std::io::Error::other(crate::error::chain(&e)))
                .map_err(io("copying the workspace under the temp dir"))?;
        } else {
            std::fs::create_dir(&workspace).map_err(io("creating the workspace mount point"))?;
        }
        let artifacts = job.artifacts();
        let spec = HostJob {
            request: job.request,
            source: job.workspace,
            workspace: &workspace,
            artifacts: &artifacts,
            inherited_path: std::env::var_os("PATH"),
            isolation,
            reaper: reaper.as_deref(),
        };
        let argv = job_argv(&spec);
        let _ = writeln!(
            host_log,
            "workspace: {} ({isolation:?})",
            workspace.display()
        );
        if let Some(caveat) = isolation.caveat() {
            let _ = writeln!(host_log, "note: {caveat}");
        }
        // The log line shows the environment: with the secrets' values masked.
        let shown = job_argv(&HostJob {
            request: &job.request.redacted(),
            ..spec
        });
        let _ = writeln!(host_log, "+ {shown}");
        // Through a pipe, so that secrets are masked before the log sees them.
        let mut command = argv.command();
        command
            .env(crate::reaper::PARENT_ENV, std::process::id().to_string())
            .env(crate::reaper::SCRATCH_ENV, &scratch.dir)
            .stdin(Stdio::null());

        let secrets = job.request.secret_values();
        let (child, output) = spawn_logged(command, log, false, &secrets, cancel)
            .map_err(io("starting the job's shell"))?;
        Ok(Box::new(HostGuest {
            child: if reaper.is_some() {
                child.with_reaper()
            } else {
                child
            },
            output: Some(output),
            job_id: job.request.job_id.clone(),
            timeout: job.request.timeout(),
            result_json: job.result_json(),
            scratch: Some(scratch),
        }))
    }
}

struct HostGuest {
    child: GroupChild,
    /// The job's output on its way to guest.log.
    output: Option<Logged>,
    job_id: String,
    timeout: std::time::Duration,
    result_json: std::path::PathBuf,
    scratch: Option<Scratch>,
}

/// The job's directory under the temp dir (its workspace's mount point or copy), removed
/// when dropped. An empty one goes by path alone: a run out of file descriptors must
/// not leave a directory behind for every job it could not start.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn create() -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new().prefix("pikaci-job-").tempdir()?;
        Ok(Scratch { dir: dir.keep() })
    }

    fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }

    fn remove(&self) -> std::io::Result<()> {
        // A mount point is empty here: the mount is in the reaper's namespace.
        let _ = std::fs::remove_dir(self.workspace());
        let removed = std::fs::remove_dir(&self.dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            // A copy may hold read-only directories the job made.
            _ => crate::state::remove_tree(&self.dir),
        });
        match removed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

impl HostGuest {
    fn error(&self, step: &'static str, source: std::io::Error) -> BackendError {
        BackendError::Step {
            job: self.job_id.clone(),
            step,
            source: Box::new(StepError::Io(source)),
        }
    }
}

impl Guest for HostGuest {
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError> {
        self.child
            .wait(deadline, cancel)
            .map_err(|source| self.error("waiting for the job", source))
    }

    fn stop(&mut self, urgent: bool) {
        self.child.terminate(if urgent {
            Default::default()
        } else {
            KILL_GRACE
        });
    }

    fn collect(&mut self, ended: Ended, started: SystemTime) -> Result<GuestResult, BackendError> {
        if let Some(output) = self.output.take() {
            output.finish();
        }
        let result = GuestResult::from_ended(ended, self.timeout, started);
        crate::fsutil::write_json_with(&self.result_json, &result, Durability::Atomic)
            .map_err(|source| self.error("writing result.json", source))?;
        Ok(result)
    }

    fn cleanup(&mut self) -> Result<(), BackendError> {
        self.child.terminate(Default::default());
        // The reaper removes it when it ends; this covers a reaper that never ran.
        if let Some(scratch) = &self.scratch {
            scratch
                .remove()
                .map_err(|e| self.error("removing the job's directory under the temp dir", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn request(writable: bool) -> Request {
        Request {
            schema_version: 1,
            job_id: "lint".into(),
            command: "cargo clippy -- -D warnings && echo \"$HOME\"".into(),
            timeout_secs: 600,
            timeout_ms: None,
            run_as_root: false,
            workdir: crate::guest_layout::WORKSPACE.into(),
            env: BTreeMap::from([("RUST_LOG".into(), "debug".into())]),
            path: vec!["/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust".into()],
            writable_workspace: writable,
            secrets: Vec::new(),
            shell: crate::protocol::DEFAULT_SHELL
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn argv(writable: bool, isolation: Isolation) -> String {
        job_argv(&HostJob {
            request: &request(writable),
            source: Path::new("/repo/.pikaci/cache/snapshots/ab12"),
            workspace: Path::new("/tmp/pikaci-job-x/workspace"),
            artifacts: Path::new("/s/art"),
            inherited_path: Some("/usr/bin:/bin".into()),
            isolation,
            reaper: Some(Path::new("/bin/pikaci")),
        })
        .to_string()
    }

    #[test]
    fn argv_as_user_nests_user_namespaces_around_the_mount() {
        let isolation = Isolation::UserNamespace {
            uid: 1500,
            gid: 100,
        };
        insta::assert_snapshot!(argv(false, isolation), @r#"env -C /tmp/pikaci-job-x/workspace -- PATH=/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust/bin:/usr/bin:/bin PWD=/tmp/pikaci-job-x/workspace PIKACI_ARTIFACTS=/s/art PIKACI_JOB=lint RUST_LOG=debug /bin/pikaci __pikaci-reap --mount ro /repo/.pikaci/cache/snapshots/ab12 /tmp/pikaci-job-x/workspace 1500 100 -- unshare --user --map-user=1500 --map-group=100 -- bash --noprofile --norc -eo pipefail -c 'cargo clippy -- -D warnings && echo "$HOME"'"#);
    }

    #[test]
    fn argv_as_root_mounts_workspace_read_only() {
        insta::assert_snapshot!(argv(false, Isolation::MountNamespace), @r#"env -C /tmp/pikaci-job-x/workspace -- PATH=/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust/bin:/usr/bin:/bin PWD=/tmp/pikaci-job-x/workspace PIKACI_ARTIFACTS=/s/art PIKACI_JOB=lint RUST_LOG=debug /bin/pikaci __pikaci-reap --mount ro /repo/.pikaci/cache/snapshots/ab12 /tmp/pikaci-job-x/workspace -- bash --noprofile --norc -eo pipefail -c 'cargo clippy -- -D warnings && echo "$HOME"'"#);
    }

    #[test]
    fn argv_writable_mounts_read_write() {
        assert!(argv(true, Isolation::MountNamespace).contains(" --mount rw /repo/"));
    }

    #[test]
    fn argv_without_namespaces_runs_in_the_copy() {
        insta::assert_snapshot!(argv(false, Isolation::Copy), @r#"env -C /tmp/pikaci-job-x/workspace -- PATH=/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust/bin:/usr/bin:/bin PWD=/tmp/pikaci-job-x/workspace PIKACI_ARTIFACTS=/s/art PIKACI_JOB=lint RUST_LOG=debug /bin/pikaci __pikaci-reap -- bash --noprofile --norc -eo pipefail -c 'cargo clippy -- -D warnings && echo "$HOME"'"#);
    }

    #[test]
    fn the_probes_unshare_what_the_reaper_and_the_job_enter() {
        insta::assert_snapshot!(probe_argv(None).to_string(), @"unshare --mount --propagation private --");
        insta::assert_snapshot!(probe_argv(Some((1500, 100))).to_string(), @"unshare --user --map-root-user --mount --propagation private -- unshare --user --map-user=1500 --map-group=100 --");
    }

    #[test]
    fn user_namespaces_work_here_or_the_caveat_is_said() {
        let isolation = Isolation::detect();
        assert_eq!(isolation.caveat().is_some(), isolation == Isolation::Copy);
    }
}
