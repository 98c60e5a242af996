//! One trait for every backend; one file per backend. The orchestrator drives a guest
//! through launch → wait → (stop) → collect → cleanup and never matches on the kind.

mod artifacts;
pub(crate) mod build_host;
mod error;
pub(crate) mod host;
pub(crate) mod host_gc;
pub(crate) mod incus;
pub(crate) mod microvm;
mod remote_guest;
pub(crate) mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

pub use build_host::{BuildHost, BuildHostError};
pub use error::{BackendError, ConnectError, SetupError, StepError, commands_of, host_failure};
pub use host::HostBackend;
pub use host_gc::{HostGc, HostGcError, HostGcStats, collect_host};
pub use incus::{IncusBackend, collect_instances};
pub use microvm::{MicrovmBackend, RunnerShare, parse_shares, supervise_argv};
pub use session::{
    HostFactsFailed, HostSession, RunContext, RunShares, connect, connect_with, read_host_facts,
    wanted_work_dir,
};

use crate::cancel::Cancel;
use crate::config::{BackendKind, Config};
use crate::doctor::Check;
use crate::exec::Ended;
use crate::ids::Id;
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

/// Removes what a backend left on a pool host for runs that are over; returns how many.
pub type CollectFn =
    fn(&Config, &crate::config::PoolHost, &Path, &[String], &Cancel) -> Result<usize, HostGcError>;

/// A gc step on the host: what it removes, and how (returns how many it removed).
pub struct HostCollector {
    pub what: &'static str,
    pub collect: CollectFn,
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

/// The backends of one run. Each is set up on a host when the first job placed there
/// needs it (a microVM backend connects, syncs and builds its runner once per host) and
/// shared by the jobs placed there; a setup failure is kept and reported by every job
/// that needed it.
pub struct RunBackends<'a> {
    run: RunShares<'a>,
    host: HostBackend,
    on: BTreeMap<Id, OnHost>,
    /// `[nix] build-host`: where the runner is built for every guest host.
    build: Option<BuildHost<'a>>,
}

/// The backends of one pool host, and the connection its probe opened, which the first
/// backend set up there takes over.
#[derive(Default)]
struct OnHost {
    probed: Mutex<Option<Box<dyn crate::transport::Transport>>>,
    microvm: OnceLock<Result<MicrovmBackend, Arc<SetupError>>>,
    incus: OnceLock<Result<IncusBackend, Arc<SetupError>>>,
}

impl<'a> RunBackends<'a> {
    pub fn new(run: RunShares<'a>) -> RunBackends<'a> {
        let on = run
            .config
            .hosts
            .keys()
            .map(|name| (name.clone(), OnHost::default()))
            .collect();
        let build = run
            .config
            .nix
            .build_host
            .as_ref()
            .and_then(|name| run.config.hosts.get(name))
            .map(|host| BuildHost::new(run.clone(), host));
        RunBackends {
            run,
            host: HostBackend::new(),
            on,
            build,
        }
    }

    /// Where the input built from `inputs` is built: here (`true`) when a `host` job needs
    /// it, or with no build host, or when a pool host is this machine; on the build host
    /// when a guest job needs it. Judged from the config's jobs, before any is placed.
    pub fn input_builds(&self, inputs: &[Id]) -> (bool, Option<&BuildHost<'a>>) {
        let config = self.run.config;
        let needing: Vec<&crate::config::Job> = config
            .jobs
            .values()
            .filter(|j| j.inputs.iter().any(|i| inputs.contains(i)))
            .collect();
        let guest = needing.iter().any(|j| j.backend != BackendKind::Host);
        let host_job = needing.iter().any(|j| j.backend == BackendKind::Host);
        let local_pool_host = config
            .hosts
            .values()
            .any(|h| h.spec == crate::config::HostSpec::Local);
        let build = self.build.as_ref().filter(|_| guest);
        let here = build.is_none() || host_job || local_pool_host;
        (here, build)
    }

    pub fn config(&self) -> &'a crate::config::Config {
        self.run.config
    }

    /// `[nix] build-host`, where build jobs of flake targets build.
    pub fn build_host(&self) -> Option<&BuildHost<'a>> {
        self.build.as_ref()
    }

    /// Hands the connection `host`'s probe opened to the first backend set up there; the
    /// build host's goes to its session, which its microVM jobs share.
    pub fn adopt(&self, host: &Id, transport: Box<dyn crate::transport::Transport>) {
        if let Some(build) = self.build.as_ref().filter(|b| b.name() == host) {
            build.adopt(transport);
        } else if let Some(on) = self.on.get(host) {
            *on.probed.lock().unwrap_or_else(|p| p.into_inner()) = Some(transport);
        }
    }

    /// The backend of `kind`: a `host` job's on this machine, else the one on the pool
    /// host `on`, set up there by the first job that asks.
    pub fn get(
        &self,
        kind: BackendKind,
        on: Option<&Id>,
        cancel: &Cancel,
    ) -> Result<&dyn Backend, BackendError> {
        if kind == BackendKind::Host {
            return Ok(&self.host);
        }
        // A job the scheduler did not place (none does) gets the main host.
        let name = on.unwrap_or(&self.run.config.main_host().name);
        let (Some(host), Some(pool_host)) = (self.on.get(name), self.run.config.hosts.get(name))
        else {
            return Err(BackendError::NoHost(name.to_string()));
        };
        let cx = || RunContext {
            run: self.run.clone(),
            host: pool_host,
            connected: host.probed.lock().unwrap_or_else(|p| p.into_inner()).take(),
            build_host: self.build.as_ref(),
        };
        match kind {
            BackendKind::Host => Ok(&self.host),
            BackendKind::Microvm => prepared(&host.microvm, "microVM", || {
                MicrovmBackend::prepare(cx(), cancel)
            }),
            BackendKind::Incus => {
                prepared(&host.incus, "Incus", || IncusBackend::prepare(cx(), cancel))
            }
        }
    }
}

/// The backend in `cell`, prepared by the first caller; later callers wait for it and
/// get the same backend or the same setup error.
fn prepared<'c, B: Backend>(
    cell: &'c OnceLock<Result<B, Arc<SetupError>>>,
    backend: &'static str,
    prepare: impl FnOnce() -> Result<B, SetupError>,
) -> Result<&'c dyn Backend, BackendError> {
    match cell.get_or_init(|| prepare().map_err(Arc::new)) {
        Ok(backend) => Ok(backend),
        Err(source) => Err(BackendError::Setup {
            backend,
            source: Arc::clone(source),
        }),
    }
}
