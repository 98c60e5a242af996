//! `backend = "host"`: no isolation; `bash --noprofile --norc -c CMD` on the CI host, in
//! the job's workspace, as the user running pikaci.
//!
//! The snapshot is read-only by permissions; root ignores those, so as root the job runs
//! in a private mount namespace where the workspace is bind-mounted read-only — otherwise
//! a root job could write through the hard links into the shared snapshot store.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use super::{Backend, BackendError, Guest, JobContext};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::BackendKind;
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::output::{Logged, spawn_logged};
use crate::protocol::{GuestResult, Request};

/// Runs inside `unshare`: makes `$1` read-only for this namespace, then runs `$2`.
const READ_ONLY_WRAPPER: &str =
    r#"mount --bind -o ro -- "$1" "$1" && cd -- "$1" && exec bash --noprofile --norc -c "$2""#;

#[derive(Default)]
pub struct HostBackend {
    as_root: bool,
}

impl HostBackend {
    pub fn new() -> HostBackend {
        HostBackend {
            as_root: rustix::process::geteuid().is_root(),
        }
    }
}

/// The command line for one job; pure so its shape can be pinned by a snapshot.
pub fn job_argv(
    request: &Request,
    workspace: &Path,
    artifacts: &Path,
    inherited_path: Option<OsString>,
    as_root: bool,
) -> Argv {
    let argv = if as_root && !request.writable_workspace {
        Argv::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "bash",
                "--noprofile",
                "--norc",
                "-c",
            ])
            .arg(READ_ONLY_WRAPPER)
            .arg("pikaci-read-only")
            .arg(workspace)
            .arg(&request.command)
    } else {
        Argv::new("bash")
            .args(["--noprofile", "--norc", "-c"])
            .arg(&request.command)
    };
    let mut path: Vec<std::path::PathBuf> = request.path.iter().map(|p| p.join("bin")).collect();
    path.extend(inherited_path.iter().flat_map(std::env::split_paths));
    let path = std::env::join_paths(path).unwrap_or_default();
    let mut argv = argv
        .cwd(workspace)
        .env("PATH", path)
        .env("PIKACI_ARTIFACTS", artifacts)
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
            move |source| BackendError::Io { job, step, source }
        };
        std::fs::create_dir_all(job.artifacts()).map_err(io("creating the artifacts dir"))?;
        let log = File::create(job.guest_log()).map_err(io("creating guest.log"))?;
        let argv = job_argv(
            job.request,
            job.workspace,
            &job.artifacts(),
            std::env::var_os("PATH"),
            self.as_root,
        );
        // Through a pipe, so that secrets are masked before the log sees them.
        let mut command = argv.command();
        command
            .env("PIKACI_RUN_ID", job.run_id)
            .stdin(Stdio::null());
        let secrets = job.request.secret_values();
        let (child, output) =
            spawn_logged(command, log, false, &secrets, cancel).map_err(io("starting bash"))?;
        Ok(Box::new(HostGuest {
            child,
            output: Some(output),
            job_id: job.request.job_id.clone(),
            timeout: job.request.timeout(),
            result_json: job.result_json(),
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
}

impl Guest for HostGuest {
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError> {
        self.child
            .wait(deadline, cancel)
            .map_err(|source| BackendError::Io {
                job: self.job_id.clone(),
                step: "waiting for the job",
                source,
            })
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
        crate::fsutil::write_json_atomic(&self.result_json, &result).map_err(|source| {
            BackendError::Io {
                job: self.job_id.clone(),
                step: "writing result.json",
                source,
            }
        })?;
        Ok(result)
    }

    fn cleanup(&mut self) -> Result<(), BackendError> {
        self.child.terminate(Default::default());
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
            workdir: "/workspace".into(),
            env: BTreeMap::from([("RUST_LOG".into(), "debug".into())]),
            path: vec!["/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust".into()],
            writable_workspace: writable,
            secrets: Vec::new(),
        }
    }

    #[test]
    fn argv_as_user() {
        let argv = job_argv(
            &request(false),
            Path::new("/s/ws"),
            Path::new("/s/art"),
            Some("/usr/bin:/bin".into()),
            false,
        );
        insta::assert_snapshot!(argv.to_string(), @r#"env -C /s/ws -- PATH=/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust/bin:/usr/bin:/bin PIKACI_ARTIFACTS=/s/art PIKACI_JOB=lint RUST_LOG=debug bash --noprofile --norc -c 'cargo clippy -- -D warnings && echo "$HOME"'"#);
    }

    #[test]
    fn argv_as_root_mounts_workspace_read_only() {
        let argv = job_argv(
            &request(false),
            Path::new("/s/ws"),
            Path::new("/s/art"),
            None,
            true,
        );
        insta::assert_snapshot!(argv.to_string(), @r#"env -C /s/ws -- PATH=/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-rust/bin PIKACI_ARTIFACTS=/s/art PIKACI_JOB=lint RUST_LOG=debug unshare --mount --propagation private -- bash --noprofile --norc -c 'mount --bind -o ro -- "$1" "$1" && cd -- "$1" && exec bash --noprofile --norc -c "$2"' pikaci-read-only /s/ws 'cargo clippy -- -D warnings && echo "$HOME"'"#);
    }

    #[test]
    fn argv_as_root_writable_needs_no_namespace() {
        let argv = job_argv(
            &request(true),
            Path::new("/s/copy"),
            Path::new("/s/art"),
            None,
            true,
        );
        assert_eq!(argv.program, "bash");
    }
}
