//! Running commands on the host that runs guests: this machine or one reached over SSH.
//! Commands are argv values; they become a shell string once, at the SSH boundary
//! ([`quote::quote_argv`]), and never anywhere else.

mod channel;
mod deadline;
mod host_sh;
mod local;
mod quote;
pub(crate) mod ssh;

use std::fs::File;
use std::io::{Read, Seek};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

pub use deadline::Step;
pub use host_sh::host_sh;
pub use local::Local;
pub use quote::quote_argv;
pub use ssh::{Ssh, SshOptions};

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::exec::{Ended, GroupChild, KILL_GRACE};

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A command as errors show it: embedded scripts elided ([`Argv::summary`]); the whole
/// command line is kept for the job's `host.log`.
#[derive(Clone, Debug)]
pub struct CommandLine {
    pub shown: String,
    pub full: String,
}

impl From<&Argv> for CommandLine {
    fn from(argv: &Argv) -> CommandLine {
        CommandLine {
            shown: argv.summary(),
            full: argv.to_string(),
        }
    }
}

/// Boxed in errors, which stay small that way.
impl From<&Argv> for Box<CommandLine> {
    fn from(argv: &Argv) -> Box<CommandLine> {
        Box::new(argv.into())
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("on {host}: {}", self.without_host())]
    Spawn {
        host: String,
        command: Box<CommandLine>,
        error: std::io::Error,
    },
    #[error("{}", self.without_host())]
    Connect {
        host: String,
        status: String,
        stderr_tail: String,
    },
    #[error("on {host}: {}", self.without_host())]
    Failed {
        host: String,
        command: Box<CommandLine>,
        status: String,
        stderr_tail: String,
    },
    /// The command channel ([`channel`]) ended after the command was sent: whether it
    /// ran is unknown.
    #[error("on {host}: {}", self.without_host())]
    ChannelLost {
        host: String,
        command: Box<CommandLine>,
        stderr_tail: String,
    },
    #[error("on {host}: {}", self.without_host())]
    TimedOut {
        host: String,
        command: Box<CommandLine>,
    },
    #[error("on {host}: {}", self.without_host())]
    Cancelled {
        host: String,
        command: Box<CommandLine>,
    },
}

impl TransportError {
    /// The whole command line, for the job's log (messages show it shortened).
    pub fn command_line(&self) -> Option<&CommandLine> {
        match self {
            TransportError::Spawn { command, .. }
            | TransportError::Failed { command, .. }
            | TransportError::ChannelLost { command, .. }
            | TransportError::TimedOut { command, .. }
            | TransportError::Cancelled { command, .. } => Some(command),
            TransportError::Connect { .. } => None,
        }
    }

    /// The message without `on HOST: `, for a caller that names the host itself. (The
    /// reason is in the message, not a source: callers show errors with `to_string`.)
    pub fn without_host(&self) -> String {
        match self {
            TransportError::Spawn { command, error, .. } => format!(
                "cannot start `{command}`: {}",
                spawn_reason(&command.shown, error)
            ),
            TransportError::Connect {
                host,
                status,
                stderr_tail,
            } => format!("cannot connect to {host} ({status}):\n{stderr_tail}"),
            TransportError::Failed {
                command,
                status,
                stderr_tail,
                ..
            } => format!("`{command}` failed ({status}):\n{stderr_tail}"),
            TransportError::ChannelLost {
                command,
                stderr_tail,
                ..
            } => format!(
                "the command channel ended before `{command}` answered (it may or may not have run):\n{stderr_tail}"
            ),
            TransportError::TimedOut { command, .. } => {
                format!("`{command}` did not finish within its deadline")
            }
            TransportError::Cancelled { command, .. } => format!("`{command}` was cancelled"),
        }
    }
}

/// The OS error, and for a missing program, which one (the first word of `command`).
fn spawn_reason(command: &str, error: &std::io::Error) -> String {
    let program = command.split_whitespace().next().unwrap_or(command);
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            format!("`{program}` is not installed or not on PATH ({error})")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("`{program}` is not executable by this user ({error})")
        }
        _ => error.to_string(),
    }
}

pub trait Transport: Send + Sync {
    /// `local` or `ssh://user@host:port`, for messages.
    fn host(&self) -> String;

    /// The local process that runs `argv` on the host.
    fn command(&self, argv: &Argv) -> Command;

    /// True when a failure was the connection's, not the command's (ssh exits 255).
    fn is_connection_failure(&self, _status: &ExitStatus) -> bool {
        false
    }

    /// Runs `argv` on the host to completion, feeding it `stdin`, within `deadline`. A
    /// non-zero exit is an error naming the host, the command and the tail of stderr.
    fn run(
        &self,
        argv: &Argv,
        stdin: &[u8],
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let output = self.run_unchecked(argv, stdin, deadline, cancel)?;
        self.check(argv, output)
    }

    /// Like [`Transport::run`], with stdin read from a file (large inputs such as a tar
    /// stream never sit in memory).
    fn run_file(
        &self,
        argv: &Argv,
        stdin: File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let output = self.run_file_unchecked(argv, stdin, deadline, cancel)?;
        self.check(argv, output)
    }

    /// Turns a non-zero exit into an error; a connection failure is reported as such.
    fn check(&self, argv: &Argv, output: Output) -> Result<Output, TransportError> {
        if output.status.success() {
            return Ok(output);
        }
        let stderr_tail = crate::fsutil::tail(&String::from_utf8_lossy(&output.stderr), 15);
        let status = output.status.to_string();
        if self.is_connection_failure(&output.status) {
            return Err(TransportError::Connect {
                host: self.host(),
                status,
                stderr_tail,
            });
        }
        Err(TransportError::Failed {
            host: self.host(),
            command: argv.into(),
            status,
            stderr_tail,
        })
    }

    /// Like [`Transport::run`], but any exit status is returned to the caller.
    fn run_unchecked(
        &self,
        argv: &Argv,
        stdin: &[u8],
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let mut input = tempfile::tempfile().map_err(|source| self.spawn_error(argv, source))?;
        std::io::Write::write_all(&mut input, stdin)
            .and_then(|()| input.rewind())
            .map_err(|source| self.spawn_error(argv, source))?;
        self.run_file_unchecked(argv, input, deadline, cancel)
    }

    fn spawn_error(&self, argv: &Argv, source: std::io::Error) -> TransportError {
        TransportError::Spawn {
            host: self.host(),
            command: argv.into(),
            error: source,
        }
    }

    /// Like [`Transport::run_file`], for a stream (a pipe) that carries exactly `len`
    /// bytes: the SSH transport can then send it over its command channel.
    fn run_stream(
        &self,
        argv: &Argv,
        stream: File,
        _len: u64,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        self.run_file(argv, stream, deadline, cancel)
    }

    /// Runs `argv` with stdin from `input`; any exit status is returned.
    fn run_file_unchecked(
        &self,
        argv: &Argv,
        input: File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        run_in_session(self, argv, input, deadline, cancel)
    }

    /// Like [`Transport::run`] with no stdin, but stdout goes to `out` (a tar stream of
    /// any size never sits in memory); the returned output's stdout is empty.
    fn run_into(
        &self,
        argv: &Argv,
        out: &File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let input = File::open("/dev/null").map_err(|source| self.spawn_error(argv, source))?;
        let output = self.run_with_files(argv, input, out, deadline, cancel)?;
        self.check(argv, output)
    }

    /// The common part: runs `argv` with stdin `input` and stdout `out`, stderr kept.
    fn run_with_files(
        &self,
        argv: &Argv,
        input: File,
        out: &File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let spawn_err = |source| self.spawn_error(argv, source);
        let mut err = tempfile::tempfile().map_err(spawn_err)?;
        let mut command = self.command(argv);
        command
            .stdin(Stdio::from(input))
            .stdout(out.try_clone().map_err(spawn_err)?)
            .stderr(err.try_clone().map_err(spawn_err)?);
        let mut child = GroupChild::spawn(&mut command, cancel).map_err(spawn_err)?;
        let status = match child.wait(deadline, cancel).map_err(spawn_err)? {
            Ended::Exited(status) => status,
            ended => {
                child.terminate(if cancel.is_urgent() {
                    Default::default()
                } else {
                    KILL_GRACE
                });
                let (host, command) = (self.host(), argv.into());
                return Err(match ended {
                    Ended::Cancelled => TransportError::Cancelled { host, command },
                    _ => TransportError::TimedOut { host, command },
                });
            }
        };
        Ok(Output {
            status,
            stdout: Vec::new(),
            stderr: read_all(&mut err).map_err(spawn_err)?,
        })
    }
}

/// [`Transport::run_file_unchecked`] as a process of its own (for SSH: a session).
fn run_in_session<T: Transport + ?Sized>(
    transport: &T,
    argv: &Argv,
    input: File,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<Output, TransportError> {
    let spawn_err = |source| transport.spawn_error(argv, source);
    // Files rather than pipes: no reader threads, and no deadlock on large output.
    let mut out = tempfile::tempfile().map_err(spawn_err)?;
    let status = transport.run_with_files(argv, input, &out, deadline, cancel)?;
    Ok(Output {
        stdout: read_all(&mut out).map_err(spawn_err)?,
        ..status
    })
}

fn read_all(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The transport for `host`: this machine, or an SSH master connection opened now.
pub fn connect(
    spec: &crate::config::HostSpec,
    settings: &crate::config::SshSettings,
    cancel: &Cancel,
) -> Result<Box<dyn Transport>, TransportError> {
    match spec {
        crate::config::HostSpec::Local => Ok(Box::new(Local)),
        crate::config::HostSpec::Ssh { user, host, port } => {
            let options = SshOptions {
                user: user.clone(),
                host: host.clone(),
                port: *port,
                identity: settings.identity_file.clone(),
                known_hosts: settings.known_hosts_file.clone(),
                connect_timeout: settings.connect_timeout,
            };
            let ssh = Ssh::new(options).map_err(|source| TransportError::Spawn {
                host: spec.to_string(),
                command: (&Argv::new("ssh")).into(),
                error: source,
            })?;
            ssh.connect(cancel)?;
            Ok(Box::new(ssh))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_cannot_start_says_why() {
        // What `sudo = true` meets on a host without sudo.
        let argv = Argv::new("pikaci-test-no-such-sudo").args(["-n", "incus", "start", "x"]);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let err = Local.run(&argv, b"", deadline, &Cancel::new()).unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"on local: cannot start `pikaci-test-no-such-sudo -n incus start x`: `pikaci-test-no-such-sudo` is not installed or not on PATH (No such file or directory (os error 2))");
    }
}
