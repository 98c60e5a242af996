//! `[nix] build-host = "B"`: the run's builds happen once, on B, and their closures are
//! copied from B to each guest host that needs them.
//!
//! B is opened like any host (a [`HostSession`]: connect, work dir, the run's snapshot,
//! so that installables in the workspace resolve there), by the first guest host that
//! needs a build. The microVM runner is built there with the same guest flake a guest
//! host would build, once per distinct runner (guest hosts whose facts agree share one
//! build); its out-link under B's `gcroots/` roots it there. Each other guest host then
//! gets its closure by `nix-store --export` on B streamed through this machine into
//! `nix-store --import` on the guest host, only the paths it lacks, rooted under the
//! run's `gcroots/runs/<run>/` like inputs (`nix::copy`). A guest host that is B uses B's
//! session and needs no copy.
//!
//! Why not `nix copy --from ssh-ng://B --to ssh-ng://G`: it would need Nix and a usable
//! store on this machine for the user, its own SSH options (`NIX_SSHOPTS`) beside pikaci's
//! transport, and it gains nothing on trust: the guest host's Nix refuses unsigned paths
//! from a user it does not trust either way.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::session::{HostSession, RunContext, run_roots};
use super::{RunShares, SetupError};
use crate::cancel::Cancel;
use crate::config::PoolHost;
use crate::ids::Id;
use crate::nix::StorePath;
use crate::nix::copy::{Input, InputNotOnHost, ensure_on_host};
use crate::transport::Transport;

/// A runner to build: its installable on B, and the name of its out-link there.
pub(crate) struct RunnerPlan {
    pub installable: String,
    pub name: String,
}

/// Builds a runner's installable on a session, logging to a local file.
pub(crate) type BuildFn<'f> =
    &'f dyn Fn(&HostSession, &RunnerPlan, &std::path::Path) -> Result<StorePath, SetupError>;

/// The run's build host, opened when a guest host first needs it.
pub struct BuildHost<'a> {
    run: RunShares<'a>,
    host: &'a PoolHost,
    /// The connection B's probe opened, if B is in the pool and was probed.
    probed: Mutex<Option<Box<dyn Transport>>>,
    session: OnceLock<Result<Arc<HostSession>, Arc<SetupError>>>,
    /// One build per runner (by its out-link name), shared by every guest host.
    runners: Mutex<BTreeMap<String, Arc<RunnerCell>>>,
}

type RunnerCell = OnceLock<Result<StorePath, Arc<SetupError>>>;

/// A setup error of the build host, shared by every guest host that needed it. Only its
/// message and source show: B failing is no failure of the guest host (the job is not
/// sent elsewhere for it, as for a guest host that is down).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OnBuildHost(Arc<SetupError>);

/// Why the build host could not serve a guest host.
#[derive(Debug, thiserror::Error)]
pub enum BuildHostError {
    #[error("build host `{build_host}` ({url}) cannot be set up for guest host `{guest_host}`")]
    Unreachable {
        build_host: Id,
        url: String,
        guest_host: Id,
        #[source]
        source: OnBuildHost,
    },
    #[error(
        "the microVM runner for guest host `{guest_host}` cannot be built on build host `{build_host}` ({url})"
    )]
    Build {
        build_host: Id,
        url: String,
        guest_host: Id,
        #[source]
        source: OnBuildHost,
    },
    #[error(
        "cannot copy the microVM runner from build host `{build_host}` ({url}) to guest host `{guest_host}` ({guest_url})"
    )]
    Copy {
        build_host: Id,
        url: String,
        guest_host: Id,
        guest_url: String,
        #[source]
        source: Box<InputNotOnHost>,
    },
    #[error("cannot write {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl<'a> BuildHost<'a> {
    pub fn new(run: RunShares<'a>, host: &'a PoolHost) -> BuildHost<'a> {
        BuildHost {
            run,
            host,
            probed: Mutex::new(None),
            session: OnceLock::new(),
            runners: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &Id {
        &self.host.name
    }

    /// Keeps the connection B's probe opened for B's session.
    pub fn adopt(&self, transport: Box<dyn Transport>) {
        *self.probed.lock().unwrap_or_else(|p| p.into_inner()) = Some(transport);
    }

    /// B's session, opened (and the snapshot synced there) by the first caller.
    pub fn session(&self, cancel: &Cancel) -> Result<Arc<HostSession>, Arc<SetupError>> {
        self.session
            .get_or_init(|| {
                let mut cx = RunContext {
                    config: self.run.config,
                    host: self.host,
                    run_id: self.run.run_id,
                    run_dir: self.run.run_dir,
                    cache: self.run.cache.clone(),
                    state_root: self.run.state_root,
                    snapshot: self.run.snapshot,
                    connected: self.probed.lock().unwrap_or_else(|p| p.into_inner()).take(),
                    build_host: None,
                };
                HostSession::open(&mut cx, cancel)
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
    }

    /// B's session, for a guest host that is B; else `None`.
    pub fn session_for(
        &self,
        guest: &PoolHost,
        cancel: &Cancel,
    ) -> Option<Result<Arc<HostSession>, BuildHostError>> {
        (guest.name == self.host.name).then(|| {
            self.session(cancel)
                .map_err(|source| self.unreachable(guest, source))
        })
    }

    fn unreachable(&self, guest: &PoolHost, source: Arc<SetupError>) -> BuildHostError {
        BuildHostError::Unreachable {
            build_host: self.host.name.clone(),
            url: self.host.spec.to_string(),
            guest_host: guest.name.clone(),
            source: OnBuildHost(source),
        }
    }

    /// The microVM runner for `guest` (whose session is `on_guest`): built on B unless a
    /// guest host asked for the same runner before, then valid on `guest` (copied from B
    /// unless `guest` is B).
    pub(crate) fn runner(
        &self,
        guest: &PoolHost,
        on_guest: &HostSession,
        plan: impl FnOnce(&HostSession) -> Result<RunnerPlan, SetupError>,
        build: BuildFn,
        cancel: &Cancel,
    ) -> Result<StorePath, BuildHostError> {
        let b = self
            .session(cancel)
            .map_err(|source| self.unreachable(guest, source))?;
        let built = |source| BuildHostError::Build {
            build_host: self.host.name.clone(),
            url: self.host.spec.to_string(),
            guest_host: guest.name.clone(),
            source: OnBuildHost(source),
        };
        let runner = plan(&b).map_err(|e| built(Arc::new(e)))?;
        let cell = Arc::clone(
            self.runners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(runner.name.clone())
                .or_default(),
        );
        let mut log = self.log()?;
        let name = runner.name.clone();
        let path = cell
            .get_or_init(|| {
                note(
                    &mut log,
                    &format!(
                        "nix build of the microVM runner {name} ({}) on build host `{}`, for guest host `{}`\n",
                        runner.installable, self.host.name, guest.name
                    ),
                );
                let build_log = self
                    .run
                    .run_dir
                    .join("prepare")
                    .join(format!("microvm-runner-{}.log", self.host.name));
                build(&b, &runner, &build_log).map_err(Arc::new)
            })
            .clone()
            .map_err(built)?;
        if guest.name != self.host.name {
            self.copy(&b, guest, on_guest, &name, &path, &mut log, cancel)?;
        }
        Ok(path)
    }

    /// Streams the runner's closure from B into `guest`'s store, what it lacks.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        b: &HostSession,
        guest: &PoolHost,
        on_guest: &HostSession,
        name: &str,
        runner: &StorePath,
        log: &mut File,
        cancel: &Cancel,
    ) -> Result<(), BuildHostError> {
        let outputs = std::slice::from_ref(runner);
        let input = Input {
            kind: "the microVM runner",
            name,
            outputs,
        };
        let roots = run_roots(&on_guest.work_dir, self.run.run_id);
        let copied = ensure_on_host(
            b.transport.as_ref(),
            on_guest.transport.as_ref(),
            &roots,
            &[input],
            log,
            cancel,
        )
        .map_err(|source| BuildHostError::Copy {
            build_host: self.host.name.clone(),
            url: self.host.spec.to_string(),
            guest_host: guest.name.clone(),
            guest_url: guest.spec.to_string(),
            source: Box::new(source),
        })?;
        note(
            log,
            &format!(
                "copied the microVM runner {name} from build host `{}` to guest host `{}`: {} path(s)\n",
                self.host.name, guest.name, copied.paths
            ),
        );
        Ok(())
    }

    /// `runs/<run>/prepare/build-host.log`: what B built and copied, for people and tests.
    fn log(&self) -> Result<File, BuildHostError> {
        let dir = self.run.run_dir.join("prepare");
        let path = dir.join("build-host.log");
        crate::fsutil::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            })
            .map_err(|source| BuildHostError::Log { path, source })
    }
}

fn note(log: &mut File, line: &str) {
    // The log is for people; a write that fails must not fail the job.
    let _ = std::io::Write::write_all(log, line.as_bytes());
}
