//! A persistent command channel to an SSH host: one long-lived session (opened with the
//! master connection) runs a small `sh` loop, [`DRIVER`], that runs one command at a
//! time, framed over its stdin and stdout. A new SSH session costs the host a login
//! shell with its rc files (about 100 ms on the testbed, whose `.bashrc` runs
//! `pyenv init`); a command over the channel costs a pipe round trip and the loop's few
//! forks.
//!
//! Request: `CMDLEN INLEN\n` (or `CMDLEN INLEN stream\n`), the command line (quoted
//! once, by [`super::quote_argv`]), then the command's stdin: stored on the host before
//! the command starts, or for a stream piped into it as it arrives. Answer: `STATUS OUTLEN ERRLEN\n`, then its stdout and
//! stderr. The loop reads exact byte counts with `head -c`, which must not read ahead
//! of them: it checks that first (busybox's `head` reads ahead) and answers
//! `unsupported`, and such a host gets a session per command as before.
//!
//! Commands go over the channel one at a time: those whose stdin is a small regular
//! file, and streams of a known length ([`super::Transport::run_stream`]); a command
//! that finds it busy, and any other stream, gets its own session. A command that
//! overruns its deadline or is cancelled ends the channel's ssh (its process group); the
//! next command opens a new channel.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Read, Seek, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Output;
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::exec::{Ended, GroupChild, KILL_GRACE};

/// The loop on the host. Args: none. The temporary dir holds one command's stdin,
/// stdout and stderr at a time (outputs are sent whole, once the command has ended).
pub(crate) const DRIVER: &str = r#"set -u
if [ "$(printf ab | { head -c 1 >/dev/null; cat; })" != b ]; then echo unsupported; exit 0; fi
home=$PWD
d=$(mktemp -d "${TMPDIR:-/tmp}/pikaci-channel.XXXXXX") && cd "$d" || exit 1
trap 'rm -rf "$d"' EXIT
trap 'exit 1' HUP INT TERM
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
  printf '%d %d %d\n' "$s" "$1" "$3"
  cat out err || exit 1
done
"#;

/// Larger stdin goes over a session of its own: the loop stores stdin on the host
/// before the command starts, where a session streams it.
pub(super) const INPUT_LIMIT: u64 = 16 << 20;

/// Why a command did not run or did not finish over the channel.
#[derive(Debug)]
pub(super) enum ChannelFailure {
    /// The channel cannot take commands (dead before this one, or `unsupported`): the
    /// command was not sent and may run elsewhere.
    Refused(File),
    /// The channel ended after the command was sent: whether it ran is unknown.
    Lost {
        stderr_tail: String,
    },
    TimedOut,
    Cancelled,
}

/// The pipes to the loop, owned by whichever thread talks to it.
struct Pipes {
    to_host: PipeWriter,
    from_host: BufReader<PipeReader>,
    /// The loop's first line (`ready`) is still to be read.
    greeted: bool,
}

pub(super) struct Channel {
    child: GroupChild,
    /// None while a command is in flight, and for good once the channel failed.
    pipes: Option<Pipes>,
    /// Commands answered: a channel that refuses its first is not worth reopening.
    pub(super) answered: u64,
    /// ssh's own stderr (connection errors), for the message when the channel ends.
    log: File,
}

impl Channel {
    /// Starts `ssh … sh -c DRIVER` (as `client`, a client of the master); its greeting is
    /// read by the first command, so opening does not wait for the host.
    pub(super) fn open(client: &Argv, cancel: &Cancel) -> std::io::Result<Channel> {
        let (stdin_read, to_host) = std::io::pipe()?;
        let (from_host, stdout_write) = std::io::pipe()?;
        let log = tempfile::tempfile()?;
        let mut command = client.command();
        command
            .stdin(Stdio::from(stdin_read))
            .stdout(Stdio::from(stdout_write))
            .stderr(log.try_clone()?);
        let child = GroupChild::spawn(&mut command, cancel)?;
        // The child's ends must close here, or a dead channel never reads as EOF.
        drop(command);
        Ok(Channel {
            child,
            pipes: Some(Pipes {
                to_host,
                from_host: BufReader::new(from_host),
                greeted: false,
            }),
            answered: 0,
            log,
        })
    }

    /// The argv of the loop's session on the host.
    pub(super) fn driver_argv() -> Argv {
        Argv::new("sh").args(["-c", DRIVER, "pikaci-channel"])
    }

    /// Runs `command` (a shell command line) with stdin `input` within `deadline`.
    /// After any failure the channel is spent; `Refused` gives `input` back, unsent.
    pub(super) fn run(
        &mut self,
        command: Vec<u8>,
        input: Input,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Output, ChannelFailure> {
        let alive = matches!(self.child.wait(Instant::now(), cancel), Ok(Ended::TimedOut));
        let Some(pipes) = self.pipes.take().filter(|_| alive) else {
            return Err(ChannelFailure::Refused(input.file));
        };
        let (tx, rx) = mpsc::channel();
        // A thread of its own, so a host that stops answering cannot outlast the
        // deadline; it ends when the killed ssh closes the pipes.
        let spawned = std::thread::Builder::new()
            .name("pikaci-channel".into())
            .spawn(move || {
                let mut pipes = pipes;
                let result = exchange(&mut pipes, &command, input);
                let _ = tx.send((pipes, result));
            });
        if spawned.is_err() {
            return Err(self.lost());
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok((pipes, Ok(Exchanged::Answered(output)))) => {
                    self.pipes = Some(pipes);
                    self.answered += 1;
                    return Ok(output);
                }
                Ok((_, Ok(Exchanged::Refused(input)))) => {
                    self.child.terminate(Duration::ZERO);
                    return Err(ChannelFailure::Refused(input));
                }
                Ok((_, Err(_))) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.lost());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let ended = if cancel.is_cancelled() {
                        ChannelFailure::Cancelled
                    } else if Instant::now() >= deadline {
                        ChannelFailure::TimedOut
                    } else {
                        continue;
                    };
                    self.child.terminate(if cancel.is_urgent() {
                        Duration::ZERO
                    } else {
                        KILL_GRACE
                    });
                    return Err(ended);
                }
            }
        }
    }

    /// The channel ended under a command: ssh's own words, if it left any.
    fn lost(&mut self) -> ChannelFailure {
        let status = self.child.terminate(Duration::from_secs(1));
        let mut text = String::new();
        let _ = self
            .log
            .rewind()
            .and_then(|()| self.log.read_to_string(&mut text));
        let status = status.map_or("killed".to_string(), |s| s.to_string());
        let mut stderr_tail = crate::fsutil::tail(&text, 15);
        if stderr_tail.trim().is_empty() {
            stderr_tail = format!("(the channel's ssh ended: {status})");
        }
        ChannelFailure::Lost { stderr_tail }
    }

    /// Closes the channel: the loop reads EOF, removes its temporary dir and exits; its
    /// ssh is killed with its group if it lingers.
    pub(super) fn close(mut self) {
        self.pipes = None;
        let _ = self
            .child
            .wait(Instant::now() + Duration::from_secs(1), &Cancel::new());
    }
}

enum Exchanged {
    Answered(Output),
    /// No greeting (the loop could not start, or the host's `head` reads ahead): the
    /// command was not sent.
    Refused(File),
}

/// A command's stdin for the channel: the next `len` bytes of `file`, stored on the host
/// first, or for a `stream` piped into the command as they arrive.
#[derive(Debug)]
pub(super) struct Input {
    pub file: File,
    pub len: u64,
    pub stream: bool,
}

/// One request and its answer. Any error means the channel is spent.
fn exchange(pipes: &mut Pipes, command: &[u8], input: Input) -> std::io::Result<Exchanged> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if !pipes.greeted {
        let greeting = pipes.from_host.read_line(&mut line);
        if greeting.is_err() || line.trim_end() != "ready" {
            return Ok(Exchanged::Refused(input.file));
        }
        pipes.greeted = true;
    }
    let Input { file, len, stream } = input;
    let mode = if stream { " stream" } else { "" };
    let to_host = &mut pipes.to_host;
    to_host.write_all(format!("{} {len}{mode}\n", command.len()).as_bytes())?;
    to_host.write_all(command)?;
    let copied = std::io::copy(&mut file.take(len), to_host)?;
    if copied != len {
        return Err(bad(format!("stdin shrank to {copied} of {len} bytes")));
    }
    to_host.flush()?;
    line.clear();
    pipes.from_host.read_line(&mut line)?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("answer `{}`", line.trim_end())))?;
    let [status, out_len, err_len] = numbers[..] else {
        return Err(bad(format!("answer `{}`", line.trim_end())));
    };
    let mut read = |n: u64| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        (&mut pipes.from_host).take(n).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != n {
            return Err(bad(format!("{} of {n} bytes", bytes.len())));
        }
        Ok(bytes)
    };
    let stdout = read(out_len)?;
    let stderr = read(err_len)?;
    Ok(Exchanged::Answered(Output {
        status: ExitStatus::from_raw(((status & 0xff) as i32) << 8),
        stdout,
        stderr,
    }))
}

/// The stdin bytes left in `input`, when it is a regular file the channel may carry.
pub(super) fn input_len(input: &mut File) -> Option<u64> {
    let meta = input.metadata().ok()?;
    let left = meta.len().checked_sub(input.stream_position().ok()?)?;
    (meta.is_file() && left <= INPUT_LIMIT).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop as a local `sh`: what an SSH host runs, without the SSH.
    /// A channel to a loop on this machine, with its temporary dirs in the returned dir:
    /// a loop killed outright leaves its dir behind.
    fn local_channel(path: Option<&std::path::Path>) -> (Channel, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let mut driver = Channel::driver_argv().env("TMPDIR", tmp.path());
        if let Some(path) = path {
            driver = driver.env("PATH", path);
        }
        (Channel::open(&driver, &Cancel::new()).unwrap(), tmp)
    }

    fn entries(dir: &tempfile::TempDir) -> usize {
        std::fs::read_dir(dir.path()).unwrap().count()
    }

    fn input(bytes: &[u8]) -> Input {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.rewind().unwrap();
        Input {
            file,
            len: bytes.len() as u64,
            stream: false,
        }
    }

    fn run(channel: &mut Channel, argv: &Argv, stdin: &[u8], within: Duration) -> Output {
        let file = input(stdin);
        let command = super::super::quote_argv(argv).into_encoded_bytes();
        match channel.run(command, file, Instant::now() + within, &Cancel::new()) {
            Ok(output) => output,
            Err(failure) => panic!("{failure:?}"),
        }
    }

    /// Prints the loop's pid: the parent of the subshell that runs a command.
    const LOOP_PID: &str = "read -r _ _ _ pp _ < /proc/$PPID/stat; echo $pp";

    fn sh(script: &str) -> Argv {
        Argv::new("sh").args(["-c", script, "test"])
    }

    #[test]
    fn commands_keep_their_status_output_and_binary_stdin_and_share_one_loop() {
        let (mut channel, tmp) = local_channel(None);
        let stdin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let echo = sh("cat; printf 'to stderr' >&2; exit 3");
        let first = run(&mut channel, &echo, &stdin, Duration::from_secs(20));
        assert_eq!(first.status.code(), Some(3));
        assert!(first.stdout == stdin, "stdin came back changed");
        assert_eq!(first.stderr, b"to stderr");
        // Words with quotes and newlines arrive as they were.
        let odd = Argv::new("printf").args(["%s|", "it's", "a\nb", "$(x)"]);
        let second = run(&mut channel, &odd, b"", Duration::from_secs(20));
        assert_eq!(String::from_utf8_lossy(&second.stdout), "it's|a\nb|$(x)|");
        let loop_pid = |channel: &mut Channel| {
            let out = run(channel, &sh(LOOP_PID), b"", Duration::from_secs(20));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let pid = loop_pid(&mut channel);
        assert_eq!(loop_pid(&mut channel), pid, "both ran in the same loop");
        assert_eq!(channel.answered, 4);
        assert_eq!(entries(&tmp), 1, "the loop's dir");
        channel.close();
        assert_eq!(entries(&tmp), 0, "a closed loop removes its dir");
    }

    /// A stream from a pipe reaches the command as it arrives; what the command leaves
    /// unread is drained, and the next command is framed as before.
    #[test]
    fn a_stream_goes_straight_into_its_command_and_the_next_still_runs() {
        let (mut channel, tmp) = local_channel(None);
        let stdin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let bytes = stdin.clone();
        let feeder = std::thread::spawn(move || writer.write_all(&bytes));
        let stream = Input {
            file: File::from(std::os::fd::OwnedFd::from(reader)),
            len: stdin.len() as u64,
            stream: true,
        };
        let head = sh("head -c 10 | wc -c; exit 4");
        let command = super::super::quote_argv(&head).into_encoded_bytes();
        let deadline = Instant::now() + Duration::from_secs(20);
        let out = channel
            .run(command, stream, deadline, &Cancel::new())
            .unwrap();
        feeder.join().unwrap().unwrap();
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10");
        let echo = run(&mut channel, &sh("cat"), b"next", Duration::from_secs(20));
        assert_eq!(echo.stdout, b"next", "the rest of the stream was drained");
        channel.close();
        assert_eq!(entries(&tmp), 0, "a closed loop removes its dir");
    }

    #[test]
    fn a_command_past_its_deadline_ends_the_channel_and_its_processes() {
        let (mut channel, tmp) = local_channel(None);
        let pgid = channel.child.pgid();
        let file = input(b"");
        let command = super::super::quote_argv(&sh("sleep 100")).into_encoded_bytes();
        let deadline = Instant::now() + Duration::from_millis(300);
        let failure = channel
            .run(command, file, deadline, &Cancel::new())
            .unwrap_err();
        assert!(matches!(failure, ChannelFailure::TimedOut), "{failure:?}");
        let live = crate::exec::live_group_members_after(pgid, Duration::from_secs(5));
        assert_eq!(live, Vec::<i32>::new());
        assert_eq!(entries(&tmp), 0, "a loop ended by SIGTERM removes its dir");
        let file = input(b"");
        let again = channel.run(b"true".to_vec(), file, Instant::now(), &Cancel::new());
        assert!(matches!(again, Err(ChannelFailure::Refused(_))), "spent");
    }

    #[test]
    fn a_channel_that_ends_under_a_command_is_lost_not_failed() {
        let (mut channel, _tmp) = local_channel(None);
        let file = input(b"");
        let command =
            super::super::quote_argv(&sh(&format!("kill -9 $({LOOP_PID})"))).into_encoded_bytes();
        let failure = channel
            .run(
                command,
                file,
                Instant::now() + Duration::from_secs(20),
                &Cancel::new(),
            )
            .unwrap_err();
        let ChannelFailure::Lost { stderr_tail } = failure else {
            panic!("{failure:?}")
        };
        assert!(stderr_tail.contains("channel's ssh ended"), "{stderr_tail}");
    }

    /// busybox `head -c` reads ahead of its count: the loop says so before any command.
    #[test]
    fn a_head_that_reads_ahead_is_refused() {
        let Ok(busybox) = which("busybox") else {
            return;
        };
        let bin = tempfile::tempdir().unwrap();
        for tool in ["sh", "head", "cat", "mktemp", "rm", "printf", "wc"] {
            let target = if tool == "head" {
                busybox.clone()
            } else {
                which(tool).unwrap()
            };
            std::os::unix::fs::symlink(target, bin.path().join(tool)).unwrap();
        }
        let (mut channel, _tmp) = local_channel(Some(bin.path()));
        let file = input(b"stdin");
        let result = channel.run(
            b"true".to_vec(),
            file,
            Instant::now() + Duration::from_secs(20),
            &Cancel::new(),
        );
        let Err(ChannelFailure::Refused(mut back)) = result else {
            panic!("{result:?}")
        };
        let mut text = String::new();
        back.read_to_string(&mut text).unwrap();
        assert_eq!(text, "stdin", "the command's stdin comes back unread");
    }

    fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
            .ok_or(())
    }
}
