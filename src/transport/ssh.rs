//! `ssh://user@host:port`: one multiplexed master connection per run, batch mode (no
//! prompts), connect and keep-alive timeouts. The master is a child process of ours,
//! started by [`Ssh::connect`] and stopped on drop, so no ssh process outlives the run.
//! (It is not daemonised with `-f`: a daemonising ssh can be caught by the process-group
//! kill that follows its parent's exit.)

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelFailure, Input};
use super::{Output, Transport, TransportError, quote_argv};
use crate::argv::Argv;
use crate::cancel::Cancel;

/// The master's own session: reads its stdin until pikaci closes it (or dies).
pub(crate) const DRAIN_STDIN: &str = "cat >/dev/null";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshOptions {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `-i`; with it, only this key is offered.
    pub identity: Option<PathBuf>,
    /// Checked strictly when set; otherwise ssh's own known_hosts and policy apply.
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
}

pub struct Ssh {
    options: SshOptions,
    /// Holds the control socket; short, because socket paths are limited to ~100 bytes.
    control_dir: tempfile::TempDir,
    master: Mutex<Option<Child>>,
    /// The command channel for small commands ([`super::channel`]).
    channel: Mutex<ChannelSlot>,
}

enum ChannelSlot {
    /// None open: the next command opens one.
    Closed,
    Open(Box<Channel>),
    /// This host cannot keep one (no greeting): every command gets a session.
    Refused,
}

impl Ssh {
    pub fn new(options: SshOptions) -> std::io::Result<Ssh> {
        let control_dir = tempfile::Builder::new()
            .prefix("pikaci-ssh-")
            .tempdir_in("/tmp")?;
        Ok(Ssh {
            options,
            control_dir,
            master: Mutex::new(None),
            channel: Mutex::new(ChannelSlot::Closed),
        })
    }

    fn destination(&self) -> String {
        match &self.options.user {
            Some(user) => format!("{user}@{}", self.options.host),
            None => self.options.host.clone(),
        }
    }

    /// Options shared by the master, its clients and `-O exit`.
    fn base_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut opt = |o: String| {
            args.push("-o".into());
            args.push(o.into());
        };
        opt("BatchMode=yes".into());
        opt(format!(
            "ConnectTimeout={}",
            self.options.connect_timeout.as_secs().max(1)
        ));
        opt("ServerAliveInterval=5".into());
        opt("ServerAliveCountMax=3".into());
        opt(format!(
            "ControlPath={}",
            self.control_dir.path().join("%C").display()
        ));
        if let Some(known_hosts) = &self.options.known_hosts {
            opt(format!("UserKnownHostsFile={}", known_hosts.display()));
            opt("StrictHostKeyChecking=yes".into());
        }
        if self.options.identity.is_some() {
            opt("IdentitiesOnly=yes".into());
        }
        if let Some(identity) = &self.options.identity {
            args.push("-i".into());
            args.push(identity.into());
        }
        if let Some(port) = self.options.port {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        args
    }

    /// The master: authenticates, then serves every later command over the control socket
    /// until it is told to exit. Its own session reads its stdin, which pikaci holds open:
    /// if pikaci dies without closing the master, the EOF ends it (after its clients).
    pub fn master_argv(&self) -> Argv {
        Argv::new("ssh")
            .args(self.base_args())
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "--"])
            .arg(self.destination())
            .arg(quote_argv(&Argv::new("sh").args(["-c", DRAIN_STDIN])))
    }

    /// How `argv` runs on the host: a client of the master (or a direct connection if the
    /// master is gone), with the command quoted once.
    pub fn client_argv(&self, argv: &Argv) -> Argv {
        Argv::new("ssh")
            .args(self.base_args())
            .args(["-o", "ControlMaster=no", "--"])
            .arg(self.destination())
            .arg(quote_argv(argv))
    }

    fn exit_argv(&self) -> Argv {
        Argv::new("ssh")
            .args(self.base_args())
            .args(["-O", "exit", "--"])
            .arg(self.destination())
    }

    /// Opens the master connection; ready when its control socket appears. Fails with
    /// ssh's own words (bad key, unknown host key, refused) within the connect timeout.
    pub fn connect(&self, cancel: &Cancel) -> Result<(), TransportError> {
        let host = self.host();
        let fail = |status: String, stderr: &std::path::Path| TransportError::Connect {
            host: host.clone(),
            status,
            stderr_tail: crate::fsutil::tail(
                &std::fs::read_to_string(stderr).unwrap_or_default(),
                15,
            ),
        };
        let stderr = self.control_dir.path().join("master.log");
        let spawn_err = |source| TransportError::Spawn {
            host: self.host(),
            command: (&self.master_argv()).into(),
            error: source,
        };
        let log = std::fs::File::create(&stderr).map_err(spawn_err)?;
        let child = self
            .master_argv()
            .command()
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn_err)?;
        let mut master = self.master.lock().unwrap_or_else(|p| p.into_inner());
        let child = master.insert(child);
        let deadline = Instant::now() + self.options.connect_timeout + Duration::from_secs(2);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(status.to_string(), &stderr));
            }
            if self.socket_ready() {
                drop(master);
                // Opened now, greeted by the first command: its session starts while
                // the run prepares its first step.
                self.open_channel(cancel);
                return Ok(());
            }
            if cancel.is_cancelled() || Instant::now() > deadline {
                return Err(fail(
                    "no connection within the connect timeout".into(),
                    &stderr,
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn open_channel(&self, cancel: &Cancel) {
        let mut slot = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        self.open_into(&mut slot, cancel);
    }

    /// Opens a channel into `slot` when none is open (and the host has not refused one).
    /// Without a channel every command gets a session, as it always could.
    fn open_into(&self, slot: &mut ChannelSlot, cancel: &Cancel) {
        if matches!(slot, ChannelSlot::Closed)
            && let Ok(channel) = Channel::open(&self.client_argv(&Channel::driver_argv()), cancel)
        {
            *slot = ChannelSlot::Open(Box::new(channel));
        }
    }

    /// Runs `argv` over the command channel when it is free and `input` small (or a
    /// stream of `stream_len` bytes); gives `input` back when the command should get a
    /// session of its own instead.
    fn run_on_channel(
        &self,
        argv: &Argv,
        mut input: std::fs::File,
        stream_len: Option<u64>,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Result<Output, TransportError>, std::fs::File> {
        let Some(len) = stream_len.or_else(|| super::channel::input_len(&mut input)) else {
            return Err(input);
        };
        // Busy with another command: this one does not wait for it.
        let Ok(mut slot) = self.channel.try_lock() else {
            return Err(input);
        };
        // One reopening per command, for a channel that ended since its last one.
        for _ in 0..2 {
            self.open_into(&mut slot, cancel);
            let ChannelSlot::Open(channel) = &mut *slot else {
                return Err(input);
            };
            let command = quote_argv(argv).into_encoded_bytes();
            let stdin = Input {
                file: input,
                len,
                stream: stream_len.is_some(),
            };
            let failure = match channel.run(command, stdin, deadline, cancel) {
                Ok(output) => return Ok(Ok(output)),
                Err(failure) => failure,
            };
            let never_answered = channel.answered == 0;
            *slot = ChannelSlot::Closed;
            let (host, command) = (self.host(), argv.into());
            return Ok(Err(match failure {
                // Not sent: once more on a new channel, unless this host never answers.
                ChannelFailure::Refused(back) => {
                    input = back;
                    if never_answered {
                        *slot = ChannelSlot::Refused;
                    }
                    continue;
                }
                ChannelFailure::Lost { stderr_tail } => TransportError::ChannelLost {
                    host,
                    command,
                    stderr_tail,
                },
                ChannelFailure::TimedOut => TransportError::TimedOut { host, command },
                ChannelFailure::Cancelled => TransportError::Cancelled { host, command },
            }));
        }
        Err(input)
    }

    fn socket_ready(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::read_dir(self.control_dir.path()).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_type().ok())
                .any(|t| t.is_socket())
        })
    }
}

impl Transport for Ssh {
    fn host(&self) -> String {
        let mut text = format!("ssh://{}", self.destination());
        if let Some(port) = self.options.port {
            text.push_str(&format!(":{port}"));
        }
        text
    }

    fn command(&self, argv: &Argv) -> Command {
        self.client_argv(argv).command()
    }

    fn is_connection_failure(&self, status: &ExitStatus) -> bool {
        status.code() == Some(255)
    }

    fn run_file_unchecked(
        &self,
        argv: &Argv,
        input: std::fs::File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        match self.run_on_channel(argv, input, None, deadline, cancel) {
            Ok(result) => result,
            Err(input) => super::run_in_session(self, argv, input, deadline, cancel),
        }
    }

    /// Over the channel when it is free: a session costs the host a login shell (with
    /// its rc files), a command over the channel a few forks.
    fn run_stream(
        &self,
        argv: &Argv,
        stream: std::fs::File,
        len: u64,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, TransportError> {
        let output = match self.run_on_channel(argv, stream, Some(len), deadline, cancel) {
            Ok(result) => result?,
            Err(stream) => super::run_in_session(self, argv, stream, deadline, cancel)?,
        };
        self.check(argv, output)
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        let slot = std::mem::replace(
            self.channel.get_mut().unwrap_or_else(|p| p.into_inner()),
            ChannelSlot::Closed,
        );
        if let ChannelSlot::Open(channel) = slot {
            channel.close();
        }
        let Some(mut master) = self.master.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // Ask it to close its sessions cleanly, then make sure it is gone.
        let _ = self
            .exit_argv()
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = master.kill();
        let _ = master.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_shapes() {
        let ssh = Ssh::new(SshOptions {
            user: Some("ci".into()),
            host: "builder".into(),
            port: Some(2222),
            identity: Some("/keys/id".into()),
            known_hosts: Some("/keys/known_hosts".into()),
            connect_timeout: Duration::from_secs(10),
        })
        .unwrap();
        let control = ssh.control_dir.path().display().to_string();
        let job = Argv::new("nix")
            .args(["build", "--json", "-o", "/w/r", ".#x"])
            .cwd("/w");
        let channel = ssh.client_argv(&Channel::driver_argv());
        let text = [
            ssh.master_argv(),
            ssh.client_argv(&job),
            ssh.exit_argv(),
            channel,
        ]
        .map(|a| a.to_string().replace(&control, "[CONTROL]"))
        .join("\n");
        insta::assert_snapshot!(text, @r#"
        ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ControlPath=[CONTROL]/%C -o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i /keys/id -p 2222 -o ControlMaster=yes -o ControlPersist=no -- ci@builder 'sh -c '\''cat >/dev/null'\'''
        ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ControlPath=[CONTROL]/%C -o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i /keys/id -p 2222 -o ControlMaster=no -- ci@builder 'env -C /w -- nix build --json -o /w/r '\''.#x'\'''
        ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ControlPath=[CONTROL]/%C -o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i /keys/id -p 2222 -O exit -- ci@builder
        ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ControlPath=[CONTROL]/%C -o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i /keys/id -p 2222 -o ControlMaster=no -- ci@builder 'sh -c '\''set -u
        if [ "$(printf ab | { head -c 1 >/dev/null; cat; })" != b ]; then echo unsupported; exit 0; fi
        home=$PWD
        d=$(mktemp -d "${TMPDIR:-/tmp}/pikaci-channel.XXXXXX") && cd "$d" || exit 1
        trap '\''\'\'''\''rm -rf "$d"'\''\'\'''\'' EXIT
        trap '\''\'\'''\''exit 1'\''\'\'''\'' HUP INT TERM
        echo ready
        # Few forks per command: that is all a command over the channel costs.
        while read -r n m k; do
          head -c "$n" > cmd || exit 1
          if [ "$k" = stream ]; then
            # Straight into the command as it arrives; what it leaves unread is drained, so
            # the next request starts where it should.
            # shellcheck disable=SC1091
            head -c "$m" | { (cd "$home" && . "$d/cmd") > out 2> err; s=$?; cat > /dev/null; exit "$s"; }
            s=$?
          else
            if [ "$m" -gt 0 ]; then head -c "$m" > in || exit 1; else : > in; fi
            # shellcheck disable=SC1091
            (cd "$home" && . "$d/cmd") < in > out 2> err
            s=$?
          fi
          # shellcheck disable=SC2046
          set -- $(wc -c out err)
          printf '\''\'\'''\''%d %d %d\n'\''\'\'''\'' "$s" "$1" "$3"
          cat out err || exit 1
        done
        '\'' pikaci-channel'
        "#);
    }
}
