//! The host that runs a run's guests, opened once per run and shared by its jobs: the
//! transport, pikaci's work dir there, and the run's workspace on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{ConnectError, SetupError};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{Config, HostSpec, PoolHost};
use crate::nix::copy::{Copied, Input, InputNotOnHost, ensure_on_host};
use crate::nix::{HOST_FACTS, HostFacts, HostFactsError};
use crate::state::SnapshotRef;
use crate::transport::{Local, Step, Transport, TransportError};

/// Deadline for the small bookkeeping commands on the host (mkdir, rm, cat).
pub const HOST_STEP: Duration = Step::Bookkeeping.duration();
/// Deadline for sending the workspace.
const SYNC_TIMEOUT: Duration = Step::Sync.duration();

/// What every host's backends share of the run.
#[derive(Clone)]
pub struct RunShares<'a> {
    pub config: &'a Config,
    pub run_id: &'a str,
    /// `runs/<run>/`, for logs of per-run steps.
    pub run_dir: &'a Path,
    /// The local snapshot cache and state dir.
    pub cache: PathBuf,
    pub state_root: &'a Path,
    pub snapshot: &'a SnapshotRef,
}

/// What a backend knows about the run it serves, on one host.
pub struct RunContext<'a> {
    pub run: RunShares<'a>,
    /// The host this context's guests run on.
    pub host: &'a PoolHost,
    /// A connection to the host opened already (by its probe), taken over by the session.
    pub connected: Option<Box<dyn Transport>>,
    /// The run's build host (`[nix] build-host`), if it has one.
    pub build_host: Option<&'a super::BuildHost<'a>>,
}

pub struct HostSession {
    pub transport: Box<dyn Transport>,
    /// Absolute, on the host.
    pub work_dir: PathBuf,
    /// The host is this machine: local paths are valid there.
    pub local: bool,
    /// The run's snapshot on the host.
    pub snapshot: PathBuf,
    /// Keeps the snapshot from being patched into another while the run uses it.
    _lease: std::sync::Mutex<Option<crate::exec::GroupChild>>,
    /// Held while inputs are copied to the host: a second job needing the same input
    /// waits for the first copy, then finds nothing to send.
    copying: std::sync::Mutex<()>,
    /// The run's build host: inputs built there are copied from there.
    pub build_host: Option<std::sync::Arc<super::build_host::BuiltOnBuildHost>>,
}

impl HostSession {
    /// Connects, creates the work dir, and makes the snapshot present on the host (an
    /// SSH host gets it by [`crate::sync`]; this machine uses the local snapshot).
    pub fn open(cx: &mut RunContext, cancel: &Cancel) -> Result<HostSession, SetupError> {
        let connected = cx.connected.take();
        let (transport, work_dir, local) =
            connect_with(connected, cx.run.config, cx.host, cx.run.state_root, cancel)?;
        let mut lease = None;
        let snapshot = if local {
            cx.run.snapshot.dir.clone()
        } else {
            // Before the sync: a leased tree is never taken to patch another run's.
            let hex = &cx.run.snapshot.id;
            lease = Some(
                crate::sync::lease(
                    transport.as_ref(),
                    &work_dir,
                    hex,
                    Instant::now() + HOST_STEP,
                    cancel,
                )
                .map_err(SetupError::Sync)?,
            );
            let deadline = Instant::now() + SYNC_TIMEOUT;
            crate::sync::sync(
                transport.as_ref(),
                &cx.run.cache,
                &cx.run.snapshot.id,
                &work_dir,
                deadline,
                cancel,
            )
            .map_err(SetupError::Sync)?
            .dir
        };
        Ok(HostSession {
            transport,
            work_dir,
            local,
            snapshot,
            _lease: std::sync::Mutex::new(lease),
            copying: std::sync::Mutex::new(()),
            build_host: cx.build_host.map(|b| b.shared()),
        })
    }

    /// Makes the job's inputs valid on the host, closures and all, before its guest
    /// starts; rooted under `gcroots/runs/<run>/` there until `pikaci gc` removes the
    /// roots of runs that are over. This machine has them already. What was sent is
    /// noted in the job's `inputs.log`.
    pub fn ensure_inputs(
        &self,
        job: &super::JobContext,
        cancel: &Cancel,
    ) -> Result<Copied, super::BackendError> {
        if self.local || job.inputs.is_empty() {
            return Ok(Copied::default());
        }
        let failed = |source| super::BackendError::Inputs {
            job: job.request.job_id.clone(),
            source: Box::new(source),
        };
        let log_path = job.job_dir.join("inputs.log");
        let mut log =
            std::fs::File::create(&log_path).map_err(|source| super::BackendError::Step {
                job: job.request.job_id.clone(),
                step: "creating inputs.log",
                source: Box::new(super::StepError::Io(source)),
            })?;
        let inputs: Vec<Input> = job
            .inputs
            .iter()
            .map(|(name, outputs)| Input::job_input(name.as_str(), outputs))
            .collect();
        let roots = run_roots(&self.work_dir, job.run_id);
        let _copying = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        let built = self.build_host.as_deref();
        let (on_b, here): (Vec<Input>, Vec<Input>) = inputs
            .into_iter()
            .partition(|i| built.is_some_and(|b| b.holds(i.outputs)));
        let mut copied = ensure_on_host(
            &Local,
            self.transport.as_ref(),
            &roots,
            &here,
            &mut log,
            cancel,
        )
        .map_err(failed)?;
        if let Some(b) = built.filter(|_| !on_b.is_empty()) {
            let from_b = |source| super::BackendError::InputsFromBuildHost {
                job: job.request.job_id.clone(),
                build_host: b.name.to_string(),
                url: b.url.clone(),
                source: Box::new(source),
            };
            // Open while its builds ran; gone only if the run is over.
            let session = b
                .session()
                .ok_or_else(|| from_b(InputNotOnHost::BuildHostGone))?;
            let more = ensure_on_host(
                session.transport.as_ref(),
                self.transport.as_ref(),
                &roots,
                &on_b,
                &mut log,
                cancel,
            )
            .map_err(from_b)?;
            copied.paths += more.paths;
            copied.round_trips += more.round_trips;
        }
        Ok(copied)
    }

    /// Runs a bookkeeping command with the short deadline.
    pub fn run(
        &self,
        argv: &Argv,
        stdin: &[u8],
        cancel: &Cancel,
    ) -> Result<Vec<u8>, TransportError> {
        self.transport
            .run(argv, stdin, Instant::now() + HOST_STEP, cancel)
            .map(|o| o.stdout)
    }
}

/// The guest-profile facts of the host, read on it (the same for `pikaci run` and
/// `pikaci render guest-flake`, so both name the same runner).
pub fn read_host_facts(
    transport: &dyn Transport,
    cancel: &Cancel,
) -> Result<HostFacts, HostFactsFailed> {
    let argv = Argv::new("sh").args(["-c", HOST_FACTS]);
    let out = transport
        .run(&argv, b"", Instant::now() + HOST_STEP, cancel)
        .map_err(|source| HostFactsFailed::Run {
            host: transport.host(),
            source,
        })?;
    HostFacts::parse(&String::from_utf8_lossy(&out.stdout)).map_err(|source| {
        HostFactsFailed::Read {
            host: transport.host(),
            source,
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HostFactsFailed {
    #[error("cannot run `{HOST_FACTS}` on {host}")]
    Run {
        host: String,
        #[source]
        source: TransportError,
    },
    #[error("on {host}")]
    Read {
        host: String,
        #[source]
        source: HostFactsError,
    },
}

/// Connects to `host` and resolves pikaci's work dir there.
pub fn connect(
    config: &Config,
    host: &PoolHost,
    state_root: &Path,
    cancel: &Cancel,
) -> Result<(Box<dyn Transport>, PathBuf, bool), ConnectError> {
    connect_with(None, config, host, state_root, cancel)
}

/// [`connect`], through `connected` when that is open already.
pub fn connect_with(
    connected: Option<Box<dyn Transport>>,
    config: &Config,
    host: &PoolHost,
    state_root: &Path,
    cancel: &Cancel,
) -> Result<(Box<dyn Transport>, PathBuf, bool), ConnectError> {
    let spec = &host.spec;
    let transport = match connected {
        Some(transport) => transport,
        None => {
            crate::transport::connect(spec, &config.ssh, cancel).map_err(ConnectError::Transport)?
        }
    };
    let local = *spec == HostSpec::Local;
    let wanted = wanted_work_dir(config, host, state_root);
    let work_dir =
        resolve_dir(transport.as_ref(), &wanted, cancel).map_err(ConnectError::WorkDir)?;
    Ok((transport, work_dir, local))
}

/// pikaci's work dir on `host` as the config has it: relative to the SSH user's home, or
/// `host/` in the state dir on this machine.
pub fn wanted_work_dir(config: &Config, host: &PoolHost, state_root: &Path) -> String {
    match (config.work_dir_on(host), host.spec == HostSpec::Local) {
        (Some(dir), _) => dir.to_string(),
        (None, true) => state_root.join("host").to_string_lossy().into_owned(),
        (None, false) => ".cache/pikaci".into(),
    }
}

/// Where a run's inputs are rooted on the host; `pikaci gc` removes it with the run's
/// job dirs (`host_gc::COLLECT`).
pub fn run_roots(work_dir: &Path, run_id: &str) -> PathBuf {
    work_dir.join("gcroots").join("runs").join(run_id)
}

pub(crate) const WORK_DIR: &str = r#"mkdir -p -- "$1/gcroots" && cd -- "$1" && pwd -P"#;

/// Creates `dir` (and its `gcroots/`) on the host and returns its absolute,
/// symlink-free path.
fn resolve_dir(
    transport: &dyn Transport,
    dir: &str,
    cancel: &Cancel,
) -> Result<PathBuf, TransportError> {
    let argv = Argv::new("sh")
        .args(["-c", WORK_DIR, "pikaci-work-dir"])
        .arg(dir);
    let out = transport.run(&argv, b"", Instant::now() + HOST_STEP, cancel)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(text.trim_end_matches('\n')))
}
