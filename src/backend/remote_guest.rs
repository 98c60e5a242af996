//! What microVM and Incus guests share: the process that runs the guest on the host
//! (its output streamed into `host.log`), waiting for it and stopping it, bringing the
//! artifacts back with a result of pikaci's own when the guest wrote none, and a
//! teardown on the host that runs once, also from `Drop`. A backend says what differs
//! through [`Side`].

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::error::{BackendError, StepError};
use super::session::HostSession;
use super::{Guest, JobContext};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::protocol::GuestResult;

/// What one kind of remote guest knows that the other does not.
pub(super) trait Side: Send {
    /// The host the guest runs on.
    fn session(&self) -> &HostSession;
    /// A tar of the guest's artifacts dir on stdout.
    fn artifacts_argv(&self) -> Argv;
    /// What removes the guest from the host, and the step's name for its error.
    fn teardown(&self) -> (&'static str, Argv);
    /// Time past the job's deadline before the host gives up on the guest (booting, or
    /// the agent stopping the job and writing its result).
    fn slack(&self) -> Duration;
    /// Whether closing the process's stdin asks the guest to stop (the microVM
    /// supervisor's protocol) before the signals.
    fn stops_on_eof(&self) -> bool;
    /// Said after "the connection to HOST was lost while the job ran".
    fn after_lost_connection(&self) -> &'static str;
    /// The result's message when the process exited with `status` and the guest wrote no
    /// result; `host_log` holds what the process printed.
    fn no_result(&self, status: &ExitStatus, host_log: &Path) -> String;
    /// The message for a job that ran past its deadline without a result, if the side
    /// says more than the default.
    fn timed_out(&self, _timeout: Duration) -> Option<String> {
        None
    }
}

pub(super) struct RemoteGuest<S: Side> {
    pub side: S,
    /// Runs the guest: a local process for a local host, the ssh client otherwise.
    child: Option<GroupChild>,
    job_id: String,
    timeout: Duration,
    /// The local job dir.
    job_dir: PathBuf,
    torn_down: bool,
    /// How long each named step of launch took.
    steps: Vec<(&'static str, Duration)>,
}

impl<S: Side> RemoteGuest<S> {
    /// A guest not yet started; dropping it tears down whatever launch made so far.
    pub fn new(side: S, job: &JobContext) -> RemoteGuest<S> {
        RemoteGuest {
            side,
            child: None,
            job_id: job.request.job_id.clone(),
            timeout: job.request.timeout(),
            job_dir: job.job_dir.to_path_buf(),
            torn_down: false,
            steps: Vec::new(),
        }
    }

    pub fn error(&self, step: &'static str, source: impl Into<StepError>) -> BackendError {
        BackendError::Step {
            job: self.job_id.clone(),
            step,
            source: Box::new(source.into()),
        }
    }

    /// Runs one step of launch, timed under `name`; a failure names `what`.
    pub fn step<T, E: Into<StepError>>(
        &mut self,
        name: &'static str,
        what: &'static str,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, BackendError> {
        let started = Instant::now();
        let value = f(self);
        self.steps.push((name, started.elapsed()));
        value.map_err(|e| self.error(what, e))
    }

    /// Records a step launch timed itself.
    pub fn took(&mut self, name: &'static str, took: Duration) {
        self.steps.push((name, took));
    }

    /// Starts `argv` on the host with its output into the job's `host.log`; stdin stays
    /// open (a pipe) when the side stops the guest by closing it.
    pub fn start(
        &mut self,
        argv: &Argv,
        what: &'static str,
        cancel: &Cancel,
    ) -> Result<(), BackendError> {
        // Appended to: pikaci's notes from before the guest (a host that failed during
        // setup, so the job moved here) stay above what the guest process prints.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.host_log())
            .map_err(|e| self.error(what, e))?;
        let log_err = log.try_clone().map_err(|e| self.error(what, e))?;
        let mut command = self.side.session().transport.command(argv);
        let stdin = if self.side.stops_on_eof() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        command.stdin(stdin).stdout(log).stderr(log_err);
        let child = GroupChild::spawn(&mut command, cancel).map_err(|e| self.error(what, e))?;
        self.child = Some(child);
        Ok(())
    }

    fn host_log(&self) -> PathBuf {
        self.job_dir.join("host.log")
    }

    /// The result when the guest wrote none: a lost connection, the process's own
    /// failure, or the job's end as the host saw it.
    fn result_of_host(&self, ended: Ended, started: SystemTime) -> GuestResult {
        let transport = self.side.session().transport.as_ref();
        match ended {
            Ended::Exited(status) if transport.is_connection_failure(&status) => {
                GuestResult::error(
                    started,
                    format!(
                        "the connection to {} was lost while the job ran{}",
                        transport.host(),
                        self.side.after_lost_connection()
                    ),
                )
            }
            Ended::Exited(status) => {
                GuestResult::error(started, self.side.no_result(&status, &self.host_log()))
            }
            ended => {
                let mut result = GuestResult::from_ended(ended, self.timeout, started);
                if ended == Ended::TimedOut
                    && let Some(message) = self.side.timed_out(self.timeout)
                {
                    result.message = Some(message);
                }
                result
            }
        }
    }
}

impl<S: Side> Guest for RemoteGuest<S> {
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError> {
        let deadline = deadline + self.side.slack();
        let Some(child) = self.child.as_mut() else {
            return Err(self.error("waiting for the job", StepError::NotStarted));
        };
        child
            .wait(deadline, cancel)
            .map_err(|e| self.error("waiting for the job", e))
    }

    fn stop(&mut self, urgent: bool) {
        let eof = self.side.stops_on_eof();
        if let Some(child) = self.child.as_mut() {
            if eof {
                child.close_stdin();
            }
            child.terminate(if urgent { Duration::ZERO } else { KILL_GRACE });
        }
    }

    fn collect(&mut self, ended: Ended, started: SystemTime) -> Result<GuestResult, BackendError> {
        let transport = self.side.session().transport.as_ref();
        let from_guest =
            super::artifacts::fetch(transport, &self.side.artifacts_argv(), &self.job_dir)
                .map_err(|e| self.error("collecting the artifacts", e))?;
        let result = match from_guest {
            Some(result) => result,
            None => self.result_of_host(ended, started),
        };
        crate::fsutil::write_json_atomic(&self.job_dir.join("result.json"), &result)
            .map_err(|e| self.error("writing result.json", e))?;
        Ok(result)
    }

    fn cleanup(&mut self) -> Result<(), BackendError> {
        if let Some(mut child) = self.child.take() {
            if self.side.stops_on_eof() {
                child.close_stdin();
            }
            child.terminate(KILL_GRACE);
        }
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let (step, argv) = self.side.teardown();
        self.side
            .session()
            .run(&argv, b"", &Cancel::new())
            .map(drop)
            .map_err(|e| self.error(step, e))
    }

    fn launch_steps(&self) -> Vec<(&'static str, Duration)> {
        self.steps.clone()
    }
}

impl<S: Side> Drop for RemoteGuest<S> {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// The last `lines` lines of `path` (empty when it cannot be read), read from its end so
/// a huge `host.log` is never held whole.
pub(super) fn tail_of(path: &Path, lines: usize) -> String {
    crate::report::tail::log_tail(
        path,
        crate::report::tail::TailLimits {
            lines,
            bytes: 64 * 1024,
            line_bytes: 2000,
        },
    )
}
