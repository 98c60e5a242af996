//! What can go wrong in a backend, typed up to the reporter: a step of one job's guest,
//! or the run's setup of the backend. Each keeps the transport, Nix, sync or Incus error
//! it came from as its source; the reporter renders the chain once
//! ([`crate::error::chain`]) and the job's `host.log` gets the whole commands
//! ([`commands_of`]).

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::{CommandLine, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A step of the job's guest (launch, wait, collect, cleanup).
    #[error("{step} failed for job `{job}`")]
    Step {
        job: String,
        step: &'static str,
        #[source]
        source: Box<StepError>,
    },
    /// An input of the job could not be made valid on the host that runs its guest.
    #[error("job `{job}` cannot start")]
    Inputs {
        job: String,
        #[source]
        source: Box<crate::nix::copy::InputNotOnHost>,
    },
    /// An input built on the build host could not be copied from there to the host that
    /// runs the job's guest.
    #[error(
        "job `{job}` cannot start: its inputs built on build host `{build_host}` ({url}) did not reach its host"
    )]
    InputsFromBuildHost {
        job: String,
        build_host: String,
        url: String,
        #[source]
        source: Box<crate::nix::copy::InputNotOnHost>,
    },
    /// An input of the job could not be made present in its Incus instance.
    #[error("job `{job}` cannot start")]
    InstanceInputs {
        job: String,
        #[source]
        source: Box<super::incus::inputs::InputsNotInInstance>,
    },
    /// The job was placed on a host the run does not know (a bug of pikaci's).
    #[error("no host `{0}` in this run")]
    NoHost(String),
    /// The backend's setup for the run, shared by every job that needed it.
    #[error("{backend} setup failed")]
    Setup {
        backend: &'static str,
        #[source]
        source: Arc<SetupError>,
    },
}

/// Why a step of a job's guest failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Host(#[from] TransportError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Artifacts(#[from] super::artifacts::ArtifactsError),
    #[error("it did not answer `incus exec … true` within {}", humantime::format_duration(*.0))]
    NotReady(Duration),
    #[error("the guest was not started")]
    NotStarted,
    /// `incus init --target MEMBER` failed: the member is named, since a wrong one
    /// fails with only the server's words.
    #[error("Incus did not create it on cluster member `{member}` ({key})")]
    Placement {
        member: String,
        /// The setting that named it.
        key: String,
        #[source]
        source: Box<TransportError>,
    },
}

/// Why a backend could not be set up for a run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot send the workspace")]
    Sync(#[source] crate::sync::SyncError),
    /// A step on the host (`what` says which).
    #[error("cannot {what}")]
    Host {
        what: &'static str,
        #[source]
        source: TransportError,
    },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    HostFacts(#[from] super::HostFactsFailed),
    #[error(transparent)]
    PikaciFlake(#[from] crate::nix::NoPikaciFlake),
    #[error("cannot build the microVM runner")]
    Build(#[source] crate::nix::NixError),
    #[error("the runner build produced no output")]
    NoOutput,
    #[error(transparent)]
    BuildHost(#[from] super::BuildHostError),
    #[error(transparent)]
    Shares(#[from] super::microvm::ShareError),
    #[error(transparent)]
    Incus(#[from] crate::incus::IncusError),
}

/// Connecting to the configured host and making pikaci's work dir there.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Transport(TransportError),
    #[error("cannot create pikaci's work dir on the host")]
    WorkDir(#[source] TransportError),
}

/// The whole command lines of the transport errors in `error`'s chain, outermost first
/// (messages show them with scripts elided).
pub fn commands_of(error: &(dyn StdError + 'static)) -> Vec<CommandLine> {
    let mut commands = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(line) = as_transport(e).and_then(TransportError::command_line) {
            commands.push(line.clone());
        }
        next = e.source();
    }
    commands
}

/// The transport error `e` is or wraps transparently (a transparent wrapper's source is
/// its inner error's source, so the chain never shows the inner error itself).
/// The lost or refused connection to the host in `error`'s chain, if that is what it
/// was: the host failed, not the job, and the job may run on another host. A command
/// channel that ended under a command is a lost connection too: its commands run in a
/// subshell each, so only its ssh ending ends it.
pub fn host_failure<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e TransportError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(t @ (TransportError::Connect { .. } | TransportError::ChannelLost { .. })) =
            as_transport(e)
        {
            return Some(t);
        }
        next = e.source();
    }
    None
}

fn as_transport<'e>(e: &'e (dyn StdError + 'static)) -> Option<&'e TransportError> {
    use super::artifacts::ArtifactsError;
    use crate::{nix::NixError, sync::SyncError};
    if let Some(t) = e.downcast_ref::<TransportError>() {
        return Some(t);
    }
    if let Some(t) = e.downcast_ref::<Box<TransportError>>() {
        return Some(t);
    }
    if let Some(step) = e.downcast_ref::<Box<StepError>>() {
        return match &**step {
            StepError::Host(t) | StepError::Artifacts(ArtifactsError::Fetch(t)) => Some(t),
            _ => None,
        };
    }
    if let Some(setup) = e.downcast_ref::<Arc<SetupError>>() {
        return match &**setup {
            SetupError::Connect(ConnectError::Transport(t) | ConnectError::WorkDir(t)) => Some(t),
            _ => None,
        };
    }
    if let Some(NixError::Transport(t)) = e.downcast_ref() {
        return Some(t);
    }
    if let Some(SyncError::Transport(t)) = e.downcast_ref() {
        return Some(t);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv::Argv;

    fn failed(argv: &Argv) -> TransportError {
        TransportError::Failed {
            host: "ssh://u@h:22".into(),
            command: argv.into(),
            status: "exit status: 1".into(),
            stderr_tail: "mkdir: cannot create directory: Permission denied".into(),
        }
    }

    /// A stream cut off on the channel during the sync (a host that went away) sends the
    /// job elsewhere, as a refused connection does; a failed command does not.
    #[test]
    fn a_lost_channel_is_the_hosts_failure_and_a_failed_command_is_not() {
        let argv = Argv::new("sh").args(["-c", "true", "pikaci-sync"]);
        let lost = TransportError::ChannelLost {
            host: "ssh://u@h:22".into(),
            command: (&argv).into(),
            stderr_tail: "(the channel's ssh ended: exit status: 255)".into(),
        };
        let sync = |t| SetupError::Sync(crate::sync::SyncError::Transport(t));
        assert!(host_failure(&sync(lost)).is_some());
        assert!(host_failure(&sync(failed(&argv))).is_none());
    }

    /// A failed host step reads as the step, the host and stderr's tail; the script is
    /// left to the log, which gets the whole command, however the error was wrapped.
    #[test]
    fn messages_elide_scripts_and_the_log_gets_the_whole_command() {
        let argv = Argv::new("sh").args([
            "-c",
            "set -eu\nmkdir -p -- \"$1\"\n",
            "pikaci-job-setup",
            "/w/j",
        ]);
        let step = BackendError::Step {
            job: "lint".into(),
            step: "preparing the job dir on the host",
            source: Box::new(StepError::Host(failed(&argv))),
        };
        let setup = |source| BackendError::Setup {
            backend: "microVM",
            source: Arc::new(source),
        };
        let connect = setup(SetupError::Connect(ConnectError::Transport(failed(&argv))));
        let host = setup(SetupError::Host {
            what: "write the guest flake on the host",
            source: failed(&argv),
        });
        let shown: Vec<String> = [&step, &connect, &host]
            .iter()
            .map(|e| crate::error::chain(*e))
            .collect();
        insta::assert_snapshot!(shown.join("\n---\n"), @"
        preparing the job dir on the host failed for job `lint`: on ssh://u@h:22: `sh -c … pikaci-job-setup /w/j` failed (exit status: 1):
        mkdir: cannot create directory: Permission denied
        ---
        microVM setup failed: on ssh://u@h:22: `sh -c … pikaci-job-setup /w/j` failed (exit status: 1):
        mkdir: cannot create directory: Permission denied
        ---
        microVM setup failed: cannot write the guest flake on the host: on ssh://u@h:22: `sh -c … pikaci-job-setup /w/j` failed (exit status: 1):
        mkdir: cannot create directory: Permission denied
        ");
        for error in [&step, &connect, &host] {
            let commands = commands_of(error);
            assert_eq!(commands.len(), 1, "{error:?}");
            assert_eq!(commands[0].full, argv.to_string());
        }
    }

    /// A failed `incus init --target` names the member and the key that set it; the log
    /// still gets the whole `incus init` line.
    #[test]
    fn a_placement_failure_names_the_member_and_its_key() {
        let argv = Argv::new("incus").args([
            "init",
            "ci:pikaci/dev",
            "ci:pikaci-a-0123",
            "--target",
            "node9",
        ]);
        let failed = TransportError::Failed {
            host: "local".into(),
            command: (&argv).into(),
            status: "exit status: 1".into(),
            stderr_tail: "Error: Cluster member \"node9\" not found".into(),
        };
        let error = BackendError::Step {
            job: "a".into(),
            step: "creating the instance",
            source: Box::new(StepError::Placement {
                member: "node9".into(),
                key: "jobs.a.incus-target".into(),
                source: Box::new(failed),
            }),
        };
        insta::assert_snapshot!(crate::error::chain(&error), @r#"
        creating the instance failed for job `a`: Incus did not create it on cluster member `node9` (jobs.a.incus-target): on local: `incus init ci:pikaci/dev ci:pikaci-a-0123 --target node9` failed (exit status: 1):
        Error: Cluster member "node9" not found
        "#);
        let commands = commands_of(&error);
        assert_eq!(commands.len(), 1, "{error:?}");
        assert_eq!(commands[0].full, argv.to_string());
    }
}
