//! Runs one request: as the unprivileged job user unless `run_as_root`, with PATH from the
//! request's store paths, output teed to `guest.log` and the console, the process group
//! killed at the deadline, and `result.json` written atomically in every outcome.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::request::parse_request;
use super::user::{self, JOB_USER};
use crate::cancel::Cancel;
use crate::exec::{Ended, KILL_GRACE};
use crate::output::spawn_logged;
use crate::protocol::{GuestResult, GuestStatus, Request};

/// PATH entries after the request's store paths.
const SYSTEM_PATH: &str = "/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin";

pub struct Agent {
    /// Where `guest.log` and `result.json` go (`/artifacts` in a guest).
    pub artifacts: PathBuf,
    /// The passwd file the job user is looked up in.
    pub passwd: PathBuf,
    /// Also copy the job's output to this process's stdout (the guest console).
    pub echo: bool,
}

/// Runs the request at `path`; returns the result (already written) and the exit code:
/// 0 passed, 1 failed or timed out, 2 bad request, 3 the agent itself failed.
pub fn run_request(agent: &Agent, path: &Path, cancel: &Cancel) -> (GuestResult, u8) {
    let started = SystemTime::now();
    let result = match std::fs::read(path) {
        Err(e) => Err((
            GuestResult::error(
                started,
                format!("cannot read request {}: {e}", path.display()),
            ),
            2,
        )),
        Ok(bytes) => match parse_request(&bytes) {
            Err(e) => Err((GuestResult::error(started, e.to_string()), 2)),
            Ok(request) => match hide_request(path) {
                Err(e) => Err((GuestResult::error(started, e), 3)),
                Ok(()) => Ok(agent.run(&request, started, cancel)),
            },
        },
    };
    let (result, code) = match result {
        Ok(result) => {
            let code = match result.status {
                GuestStatus::Passed => 0,
                GuestStatus::Failed | GuestStatus::TimedOut => 1,
                GuestStatus::Error => 3,
            };
            (result, code)
        }
        Err(pair) => pair,
    };
    let target = agent.artifacts.join("result.json");
    let written = std::fs::create_dir_all(&agent.artifacts)
        .and_then(|()| crate::fsutil::write_json_atomic(&target, &result));
    if let Err(e) = written {
        eprintln!("pikaci-guest: cannot write {}: {e}", target.display());
        return (result, 3);
    }
    (result, code)
}

/// Takes the request away from the job once it is read: it holds the secrets' values.
/// Where it came in on a share of its own (microVMs), the share is detached. Mode 0600
/// is not enough there: an unprivileged virtiofsd shows the host user's ownership, and
/// the job user has that user's uid. Elsewhere (Incus) it is root's, 0600, and stays.
fn hide_request(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let (Ok(inner), Ok(outer)) = (std::fs::metadata(dir), std::fs::metadata(dir.join(".."))) else {
        return Ok(());
    };
    if inner.dev() == outer.dev() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    return rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
        format!(
            "cannot detach the request's share {} from the job: {e}",
            dir.display()
        )
    });
    // The agent runs in Linux guests only; elsewhere this is never reached with a share.
    #[cfg(not(target_os = "linux"))]
    Err(format!("cannot detach {} here", dir.display()))
}

impl Agent {
    fn run(&self, request: &Request, started: SystemTime, cancel: &Cancel) -> GuestResult {
        match self.spawn_and_wait(request, started, cancel) {
            Ok(result) => result,
            Err(message) => GuestResult::error(started, message),
        }
    }

    fn command(&self, request: &Request) -> Result<Command, String> {
        let mut path: Vec<PathBuf> = request.path.iter().map(|p| p.join("bin")).collect();
        path.extend(std::env::split_paths(SYSTEM_PATH));
        let path = std::env::join_paths(path).map_err(|e| format!("request field `path`: {e}"))?;
        let argv = request.shell_argv();
        let mut command = Command::new(argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&request.workdir)
            .env_clear()
            .env("PATH", path)
            .env("CI", "true")
            .env("PIKACI_JOB", &request.job_id)
            .env("PIKACI_ARTIFACTS", &self.artifacts)
            .envs(&request.env)
            .stdin(Stdio::null());
        let as_root = rustix::process::geteuid().is_root();
        if as_root && !request.run_as_root {
            let user = user::lookup(&self.passwd, JOB_USER).ok_or_else(|| {
                format!(
                    "user `{JOB_USER}` is not in {}; the guest image must create it",
                    self.passwd.display()
                )
            })?;
            // The job writes its artifacts, and only it (and root) may read them; the
            // share's root arrives belonging to the host user.
            let give = rustix::fs::chown(
                &self.artifacts,
                Some(rustix::fs::Uid::from_raw(user.uid)),
                Some(rustix::fs::Gid::from_raw(user.gid)),
            )
            .and_then(|()| rustix::fs::chmod(&self.artifacts, rustix::fs::Mode::RWXU));
            give.map_err(|e| {
                format!(
                    "cannot give {} to `{JOB_USER}`: {e}",
                    self.artifacts.display()
                )
            })?;
            if request.writable_workspace {
                // The job's private copy arrives owned by the host user.
                give_tree(&request.workdir, user.uid, user.gid)?;
            }
            command
                .uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", JOB_USER);
        } else if let Some(home) = std::env::var_os("HOME") {
            command.env("HOME", home);
        }
        Ok(command)
    }

    fn spawn_and_wait(
        &self,
        request: &Request,
        started: SystemTime,
        cancel: &Cancel,
    ) -> Result<GuestResult, String> {
        std::fs::create_dir_all(&self.artifacts)
            .map_err(|e| format!("cannot create {}: {e}", self.artifacts.display()))?;
        let log_path = self.artifacts.join("guest.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let command = self.command(request)?;
        let deadline = Instant::now() + request.timeout();
        let (mut child, output) =
            spawn_logged(command, log, self.echo, &request.secret_values(), cancel).map_err(
                |e| {
                    format!(
                        "cannot start `{}` in {}: {e}",
                        request.shell_argv()[0],
                        request.workdir.display()
                    )
                },
            )?;
        let ended = child.wait(deadline, cancel).map_err(|e| e.to_string())?;
        if !matches!(ended, Ended::Exited(_)) {
            child.terminate(if cancel.is_urgent() {
                Duration::ZERO
            } else {
                KILL_GRACE
            });
        }
        drop(child);
        output.finish();
        // Before result.json and the poweroff: the host reads the log after the guest.
        if let Ok(log) = File::open(&log_path) {
            let _ = log.sync_all();
        }
        Ok(GuestResult::from_ended(ended, request.timeout(), started))
    }
}

/// Hands every file under `root` to uid/gid, without following symlinks.
fn give_tree(root: &Path, uid: u32, gid: u32) -> Result<(), String> {
    use rustix::fs::{AtFlags, CWD, Gid, Uid, chownat};
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(|e| format!("cannot walk the writable workspace: {e}"))?;
        chownat(
            CWD,
            entry.path(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| {
            format!(
                "cannot give {} to `{JOB_USER}`: {e}",
                entry.path().display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("ws")).unwrap();
            std::fs::write(dir.path().join("ws/input.txt"), "from the workspace\n").unwrap();
            Fixture { dir }
        }

        fn agent(&self) -> Agent {
            Agent {
                artifacts: self.dir.path().join("artifacts"),
                passwd: self.dir.path().join("passwd"),
                echo: false,
            }
        }

        fn request(&self, command: &str, timeout_secs: u64) -> PathBuf {
            let request = serde_json::json!({
                "schema_version": 1, "job_id": "j", "command": command, "timeout_secs": timeout_secs,
                "run_as_root": true, "workdir": self.dir.path().join("ws"), "env": {"GREETING": "hi"},
                "path": [], "writable_workspace": false,
            });
            let path = self.dir.path().join("request.json");
            std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
            path
        }

        fn run(&self, request: &Path) -> (GuestResult, u8) {
            run_request(&self.agent(), request, &Cancel::new())
        }

        fn written_result(&self) -> GuestResult {
            serde_json::from_slice(
                &std::fs::read(self.dir.path().join("artifacts/result.json")).unwrap(),
            )
            .unwrap()
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("artifacts/guest.log")).unwrap()
        }
    }

    #[test]
    fn passed_with_env_workdir_and_log() {
        let f = Fixture::new();
        let (result, code) = f.run(&f.request("echo $GREETING; cat input.txt; echo err >&2", 10));
        assert_eq!((result.status, code), (GuestStatus::Passed, 0));
        assert_eq!(f.log(), "hi\nfrom the workspace\nerr\n");
        assert_eq!(f.written_result(), result);
    }

    #[test]
    fn default_shell_fails_on_the_first_failing_command_and_sets_ci() {
        let f = Fixture::new();
        let path = f.request("echo \"$CI $PIKACI_JOB\"; false; echo still-ran", 10);
        let mut request: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        request["shell"] = serde_json::json!(crate::protocol::DEFAULT_SHELL);
        std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
        let (result, code) = f.run(&path);
        assert_eq!((result.status, code), (GuestStatus::Failed, 1));
        assert_eq!(f.log(), "true j\n");
        // A pipeline fails when any stage does.
        request["command"] = "false | cat".into();
        std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
        assert_eq!(f.run(&path).0.status, GuestStatus::Failed);
    }

    #[test]
    fn failed_keeps_exit_code() {
        let f = Fixture::new();
        let (result, code) = f.run(&f.request("exit 9", 10));
        assert_eq!(
            (result.status, result.exit_code, code),
            (GuestStatus::Failed, Some(9), 1)
        );
    }

    #[test]
    fn timed_out_kills_the_group() {
        let f = Fixture::new();
        let pid_file = f.dir.path().join("pgid");
        let command = format!("echo $$ > {}; sleep 100 & sleep 100", pid_file.display());
        let started = Instant::now();
        let (result, code) = f.run(&f.request(&command, 1));
        assert_eq!((result.status, code), (GuestStatus::TimedOut, 1));
        assert!(started.elapsed() < Duration::from_secs(30));
        let pgid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let live = crate::exec::live_group_members_after(pgid, Duration::from_secs(5));
        assert_eq!(live, Vec::<i32>::new());
    }

    #[test]
    fn bad_request_still_writes_an_error_result() {
        let f = Fixture::new();
        let path = f.dir.path().join("request.json");
        std::fs::write(&path, r#"{"schema_version": 1, "job_id": "j"}"#).unwrap();
        let (result, code) = f.run(&path);
        assert_eq!((result.status, code), (GuestStatus::Error, 2));
        assert_eq!(
            result.message.as_deref(),
            Some("request field `command`: missing")
        );
        assert_eq!(f.written_result(), result);
    }

    #[test]
    fn unprivileged_job_needs_the_job_user() {
        if !rustix::process::geteuid().is_root() {
            return; // switching users needs root; covered in guests
        }
        let f = Fixture::new();
        let path = f.request("id -u", 10);
        let mut request: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        request["run_as_root"] = false.into();
        std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
        std::fs::write(f.dir.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let (result, code) = f.run(&path);
        assert_eq!((result.status, code), (GuestStatus::Error, 3));
        assert!(result.message.unwrap().contains("user `pikaci`"));
        std::fs::write(
            f.dir.path().join("passwd"),
            "pikaci:x:4321:4321::/nonexistent:/bin/sh\n",
        )
        .unwrap();
        let (result, _) = f.run(&path);
        assert_eq!(result.status, GuestStatus::Passed, "{:?}", result.message);
        assert_eq!(f.log(), "4321\n", "ran as the job user");
    }
}
