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
//! Inputs that guest jobs need are built on B too (`run::prepare`), rooted under B's
//! `gcroots/runs/<run>/`; every guest host's session knows which paths those are
//! ([`BuiltOnBuildHost`]) and copies them from B the same way. Inputs that `host` jobs need
//! (or a `local` pool host) are still built here.
//!
//! Why not `nix copy --from ssh-ng://B --to ssh-ng://G`: Nix 2.8's `ssh-ng://` URLs take
//! no port and one `NIX_SSHOPTS` serves both ends (two hosts on different ports cannot be
//! named without an ssh config file), it bypasses pikaci's transport (options, shared
//! connection, lost-connection detection), and it gains nothing on trust: the guest
//! host's Nix refuses unsigned paths from a user it does not trust either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::session::{HostSession, RunContext, run_roots};
use super::{RunShares, SetupError};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::PoolHost;
use crate::ids::Id;
use crate::nix::copy::{Input, InputNotOnHost, ensure_on_host};
use crate::nix::{BUILD_TIMEOUT, NixBuild, NixError, StorePath, installable_in};
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
    shared: Arc<BuiltOnBuildHost>,
    /// One build per runner (by its out-link name), shared by every guest host.
    runners: Mutex<BTreeMap<String, Arc<RunnerCell>>>,
}

type RunnerCell = OnceLock<Result<StorePath, Arc<SetupError>>>;

/// What every host's session knows of the build host: which input paths were built
/// there, and B's session to copy them from (weak: B's own session knows it too, and the
/// run's [`BuildHost`] owns it).
#[derive(Debug)]
pub struct BuiltOnBuildHost {
    pub name: Id,
    pub url: String,
    session: OnceLock<Weak<HostSession>>,
    inputs: Mutex<BTreeSet<StorePath>>,
}

impl BuiltOnBuildHost {
    /// Whether these outputs were built on B (and so are copied from there).
    pub fn holds(&self, outputs: &[StorePath]) -> bool {
        let built = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        !outputs.is_empty() && outputs.iter().all(|p| built.contains(p))
    }

    /// Every input output built on B so far.
    pub fn built_inputs(&self) -> Vec<StorePath> {
        let built = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        built.iter().cloned().collect()
    }

    /// B's session, opened by the builds that made those paths.
    pub fn session(&self) -> Option<Arc<HostSession>> {
        self.session.get().and_then(Weak::upgrade)
    }
}

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
    #[error("build host `{build_host}` ({url}) cannot be set up to build the run's inputs")]
    ForInputs {
        build_host: Id,
        url: String,
        #[source]
        source: OnBuildHost,
    },
    #[error("input `{input}` cannot be built on build host `{build_host}` ({url})")]
    Input {
        input: String,
        build_host: Id,
        url: String,
        #[source]
        source: Box<NixError>,
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
            shared: Arc::new(BuiltOnBuildHost {
                name: host.name.clone(),
                url: host.spec.to_string(),
                session: OnceLock::new(),
                inputs: Mutex::new(BTreeSet::new()),
            }),
            runners: Mutex::new(BTreeMap::new()),
        }
    }

    /// What the guest hosts' sessions keep of B.
    pub fn shared(&self) -> Arc<BuiltOnBuildHost> {
        Arc::clone(&self.shared)
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
                    run: self.run.clone(),
                    host: self.host,
                    connected: self.probed.lock().unwrap_or_else(|p| p.into_inner()).take(),
                    build_host: None,
                };
                let mut session = HostSession::open(&mut cx, cancel).map_err(Arc::new)?;
                session.build_host = Some(self.shared());
                let session = Arc::new(session);
                let _ = self.shared.session.set(Arc::downgrade(&session));
                Ok(session)
            })
            .clone()
    }

    /// Builds input `name` (`installable`) on B, its out-link under the run's roots there;
    /// returns its outputs, which guest hosts then copy from B.
    pub fn build_input(
        &self,
        name: &str,
        installable: &str,
        log: &Path,
        cancel: &Cancel,
    ) -> Result<Vec<StorePath>, BuildHostError> {
        let b = self
            .session(cancel)
            .map_err(|source| BuildHostError::ForInputs {
                build_host: self.host.name.clone(),
                url: self.host.spec.to_string(),
                source: OnBuildHost(source),
            })?;
        let failed = |source| BuildHostError::Input {
            input: name.to_string(),
            build_host: self.host.name.clone(),
            url: self.host.spec.to_string(),
            source: Box::new(source),
        };
        let roots = run_roots(&b.work_dir, self.run.run_id);
        let (mkdir, installable) = (roots_argv(&roots), installable_in(&b.snapshot, installable));
        b.run(&mkdir, b"", cancel)
            .map_err(|e| failed(NixError::Transport(e)))?;
        let build = NixBuild {
            installable: &installable,
            out_link: &roots.join(format!("input-{name}")),
            cwd: &b.snapshot,
        };
        let results = build
            .run(
                b.transport.as_ref(),
                log,
                Instant::now() + BUILD_TIMEOUT,
                cancel,
            )
            .map_err(failed)?;
        let outputs: Vec<StorePath> = results
            .into_iter()
            .flat_map(|r| r.outputs.into_values())
            .collect();
        let mut built = self.shared.inputs.lock().unwrap_or_else(|p| p.into_inner());
        built.extend(outputs.iter().cloned());
        if let Ok(mut log) = self.log() {
            note(
                &mut log,
                &format!(
                    "nix build of input {name} ({installable}) on build host `{}`\n",
                    self.host.name
                ),
            );
        }
        Ok(outputs)
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
        let mut log = self.log()?;
        let (name, path) = self.built_runner(&b, guest, plan, build, &mut log)?;
        if guest.name != self.host.name {
            let runner = Input {
                kind: "the microVM runner",
                name: &name,
                outputs: std::slice::from_ref(&path),
            };
            self.copy(&b, guest, on_guest, &runner, &mut log, cancel)?;
        }
        Ok(path)
    }

    /// The runner `plan` names on B, built by the first guest host that asks for it;
    /// later ones wait for that build and get its result. Returns its name and path.
    fn built_runner(
        &self,
        b: &HostSession,
        guest: &PoolHost,
        plan: impl FnOnce(&HostSession) -> Result<RunnerPlan, SetupError>,
        build: BuildFn,
        log: &mut File,
    ) -> Result<(String, StorePath), BuildHostError> {
        let failed = |source| BuildHostError::Build {
            build_host: self.host.name.clone(),
            url: self.host.spec.to_string(),
            guest_host: guest.name.clone(),
            source: OnBuildHost(source),
        };
        let runner = plan(b).map_err(|e| failed(Arc::new(e)))?;
        let cell = Arc::clone(
            self.runners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(runner.name.clone())
                .or_default(),
        );
        let path = cell.get_or_init(|| {
            note(
                log,
                &format!(
                    "nix build of the microVM runner {} ({}) on build host `{}`, for guest host `{}`\n",
                    runner.name, runner.installable, self.host.name, guest.name
                ),
            );
            let build_log = self
                .run
                .run_dir
                .join("prepare")
                .join(format!("microvm-runner-{}.log", self.host.name));
            build(b, &runner, &build_log).map_err(Arc::new)
        });
        Ok((runner.name.clone(), path.clone().map_err(failed)?))
    }

    /// Streams the runner's closure from B into `guest`'s store, what it lacks.
    fn copy(
        &self,
        b: &HostSession,
        guest: &PoolHost,
        on_guest: &HostSession,
        runner: &Input,
        log: &mut File,
        cancel: &Cancel,
    ) -> Result<(), BuildHostError> {
        let roots = run_roots(&on_guest.work_dir, self.run.run_id);
        let copied = ensure_on_host(
            b.transport.as_ref(),
            on_guest.transport.as_ref(),
            &roots,
            std::slice::from_ref(runner),
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
                "copied the microVM runner {} from build host `{}` to guest host `{}`: {} path(s)\n",
                runner.name, self.host.name, guest.name, copied.paths
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

/// `mkdir -p ROOTS`: the run's roots dir on B, where input builds put their out-links.
fn roots_argv(roots: &Path) -> Argv {
    Argv::new("mkdir").args(["-p", "--"]).arg(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands an input build on B runs there: the roots dir, then `nix build` of the
    /// installable pinned to B's copy of the snapshot, its out-link among the run's roots.
    #[test]
    fn input_build_command_shapes() {
        let roots = run_roots(Path::new("/home/ci/.cache/pikaci"), "R");
        let snapshot = Path::new("/home/ci/.cache/pikaci/snapshots/abc");
        let installable = installable_in(snapshot, ".#tools");
        let build = NixBuild {
            installable: &installable,
            out_link: &roots.join("input-tools"),
            cwd: snapshot,
        };
        let shown = [roots_argv(&roots).to_string(), build.argv().to_string()];
        insta::assert_snapshot!(shown.join("\n"), @"
        mkdir -p -- /home/ci/.cache/pikaci/gcroots/runs/R
        env -C /home/ci/.cache/pikaci/snapshots/abc -- nix --extra-experimental-features 'nix-command flakes' build --json -o /home/ci/.cache/pikaci/gcroots/runs/R/input-tools 'path:/home/ci/.cache/pikaci/snapshots/abc#tools'
        ");
    }
}
