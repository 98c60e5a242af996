//! One trait for every backend; one file per backend. The orchestrator drives a guest
//! through launch → wait → (stop) → collect → cleanup and never matches on the kind.

mod artifacts;
pub(crate) mod host;
pub(crate) mod host_gc;
pub(crate) mod incus;
pub(crate) mod microvm;
pub(crate) mod session;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

pub use host::HostBackend;
pub use host_gc::{HostGc, HostGcError, HostGcStats, collect_host};
pub use incus::{IncusBackend, collect_instances};
pub use microvm::{MicrovmBackend, RunnerShare, parse_shares, supervise_argv};
pub use session::{HostFactsFailed, HostSession, RunContext, connect, read_host_facts};

use crate::cancel::Cancel;
use crate::config::{BackendKind, Config};
use crate::doctor::Check;
use crate::exec::Ended;
use crate::protocol::{GuestResult, Request};

/// Everything a backend needs to start one job.
pub struct JobContext<'a> {
    pub run_id: &'a str,
    /// Guest protocol v1: command, timeout, user, env, PATH entries, workspace mode.
    pub request: &'a Request,
    /// The job's own inputs by name, as built on this machine (their outputs are the
    /// request's PATH entries); a backend whose guests run elsewhere makes them valid
    /// there before the guest starts.
    pub inputs: &'a std::collections::BTreeMap<crate::ids::Id, Vec<crate::nix::StorePath>>,
    /// The job's workspace: the read-only snapshot, or a private writable copy when the
    /// backend [uses a local copy](Backend::uses_local_copy).
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
    #[error("{step} failed for job `{job}`")]
    Io {
        job: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{step} failed for job `{job}`: {why}")]
    Host {
        job: String,
        step: &'static str,
        why: String,
    },
    #[error("{0}")]
    Setup(String),
    /// An input of the job could not be made valid on the host that runs its guest.
    #[error("job `{job}` cannot start")]
    Inputs {
        job: String,
        #[source]
        source: Box<crate::nix::copy::InputNotOnHost>,
    },
}

pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Whether a writable job runs in a private copy made on this machine; backends
    /// whose guests live elsewhere make their copy there, from the snapshot.
    fn uses_local_copy(&self) -> bool {
        true
    }

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

    /// How long the named steps of `launch` took, for the job record (`launch.NAME`).
    fn launch_steps(&self) -> Vec<(&'static str, Duration)> {
        Vec::new()
    }
}

/// What a backend knows besides running jobs: how `pikaci doctor` checks that its jobs
/// can run and what `pikaci gc` collects on the host. Reached through [`descriptor`], so
/// doctor and gc hold no backend-specific code.
pub struct Descriptor {
    /// Its guests run on the configured host (`defaults.host`): doctor connects there,
    /// gc cleans pikaci's work dir there.
    pub on_host: bool,
    /// doctor's checks, on the host when [`on_host`](Descriptor::on_host).
    pub doctor: fn(&DoctorHost) -> Vec<Check>,
    /// What gc removes on the host beyond the work dir (its name, how it removes it).
    pub gc: Option<HostCollector>,
}

/// A gc step on the host: what it removes, and how (returns how many it removed).
pub struct HostCollector {
    pub what: &'static str,
    pub collect: fn(&Config, &Path, &[String], &Cancel) -> Result<usize, String>,
}

/// Where doctor's backend checks run.
pub struct DoctorHost<'a> {
    pub config: &'a Config,
    pub transport: &'a dyn crate::transport::Transport,
    /// How the checks name the host (`local`, `ssh://…`).
    pub on: &'a str,
    pub cancel: &'a Cancel,
}

pub fn descriptor(kind: BackendKind) -> Descriptor {
    match kind {
        BackendKind::Host => Descriptor {
            on_host: false,
            doctor: |_| Vec::new(),
            gc: None,
        },
        BackendKind::Microvm => Descriptor {
            on_host: true,
            doctor: microvm::doctor::checks,
            gc: None,
        },
        BackendKind::Incus => Descriptor {
            on_host: true,
            doctor: incus::doctor::checks,
            gc: Some(HostCollector {
                what: "Incus instance(s)",
                collect: collect_instances,
            }),
        },
    }
}

/// The backends of one run. Each is set up when its first job needs it (a microVM run
/// connects to its host and builds its runner once) and shared by the run's jobs; a
/// setup failure is kept and reported by every job that needed it.
pub struct RunBackends<'a> {
    cx: RunContext<'a>,
    host: HostBackend,
    microvm: OnceLock<Result<MicrovmBackend, String>>,
    incus: OnceLock<Result<IncusBackend, String>>,
}

impl<'a> RunBackends<'a> {
    pub fn new(cx: RunContext<'a>) -> RunBackends<'a> {
        RunBackends {
            cx,
            host: HostBackend::new(),
            microvm: OnceLock::new(),
            incus: OnceLock::new(),
        }
    }

    pub fn get(&self, kind: BackendKind, cancel: &Cancel) -> Result<&dyn Backend, BackendError> {
        match kind {
            BackendKind::Host => Ok(&self.host),
            BackendKind::Microvm => prepared(&self.microvm, "microVM", || {
                MicrovmBackend::prepare(&self.cx, cancel)
            }),
            BackendKind::Incus => prepared(&self.incus, "Incus", || {
                IncusBackend::prepare(&self.cx, cancel)
            }),
        }
    }
}

/// The backend in `cell`, prepared by the first caller; later callers wait for it and
/// get the same backend or the same setup error.
fn prepared<'c, B: Backend>(
    cell: &'c OnceLock<Result<B, String>>,
    name: &str,
    prepare: impl FnOnce() -> Result<B, String>,
) -> Result<&'c dyn Backend, BackendError> {
    match cell.get_or_init(prepare) {
        Ok(backend) => Ok(backend),
        Err(why) => Err(BackendError::Setup(format!("{name} setup failed: {why}"))),
    }
}
