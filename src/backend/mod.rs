//! One trait for every backend; one file per backend. The orchestrator drives a guest
//! through launch → wait → (stop) → collect → cleanup and never matches on the kind.

mod host;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use host::HostBackend;

use crate::cancel::Cancel;
use crate::config::BackendKind;
use crate::exec::Ended;
use crate::protocol::{GuestResult, Request};

/// Everything a backend needs to start one job.
pub struct JobContext<'a> {
    pub run_id: &'a str,
    /// Guest protocol v1: command, timeout, user, env, PATH entries, workspace mode.
    pub request: &'a Request,
    /// The job's workspace: the read-only snapshot, or a private writable copy.
    pub workspace: &'a Path,
    /// `runs/<run>/jobs/<job>/`: `host.log`, `guest.log`, `result.json`, `artifacts/`.
    pub job_dir: &'a Path,
}

impl JobContext<'_> {
    pub fn artifacts(&self) -> PathBuf {
        self.job_dir.join("artifacts")
    }
    pub fn guest_log(&self) -> PathBuf {
        self.job_dir.join("guest.log")
    }
    pub fn result_json(&self) -> PathBuf {
        self.job_dir.join("result.json")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the {backend} backend is not available yet: {why}")]
    Unavailable { backend: BackendKind, why: String },
    #[error("{step} failed for job `{job}`")]
    Io {
        job: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Starts the job's guest. The returned guest tears itself down on drop, so a
    /// panic or early return cannot leak it.
    fn launch(&self, job: &JobContext, cancel: &Cancel) -> Result<Box<dyn Guest>, BackendError>;
}

pub trait Guest: Send {
    /// Until the job ends, `deadline` passes, or the run is cancelled.
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError>;

    /// Stops a job that has not ended: graceful unless `urgent`.
    fn stop(&mut self, urgent: bool);

    /// The job's result (`result.json` is in the job dir afterwards) and its `guest.log`.
    fn collect(&mut self, ended: Ended, started: SystemTime) -> Result<GuestResult, BackendError>;

    /// Removes everything the guest used on the host. Idempotent.
    fn cleanup(&mut self) -> Result<(), BackendError>;
}

/// The backend object for `kind`. Backends that are not built yet say so when used.
pub fn for_kind(kind: BackendKind) -> Result<Box<dyn Backend>, BackendError> {
    match kind {
        BackendKind::Host => Ok(Box::new(HostBackend::new())),
        BackendKind::Microvm | BackendKind::Incus => Err(BackendError::Unavailable {
            backend: kind,
            why: "this build of pikaci runs jobs with `backend = \"host\"` only".into(),
        }),
    }
}
