//! A job's output on its way to `guest.log` (and a guest's console): copied as it comes,
//! with the values of the job's secrets replaced by `***`.

use std::io::{Read, Write};

use crate::cancel::Cancel;
use crate::exec::GroupChild;

/// What a secret's value is replaced with.
pub const MASK: &str = "***";

/// Replaces secret values in a byte stream that arrives in chunks. A position is decided
/// only once the longest secret fits after it, so a value split across chunks is still
/// found and a shorter secret never pre-empts a longer one; at most `longest - 1` bytes
/// wait for the next chunk.
pub struct Redactor {
    secrets: Vec<Vec<u8>>,
    held: Vec<u8>,
}

impl Redactor {
    /// Empty values are ignored (they would match everywhere).
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first: a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets,
            held: Vec::new(),
        }
    }

    /// The bytes of `chunk` (after what was held back) that can be written now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(longest) = self.secrets.first().map(Vec::len) else {
            return chunk.to_vec();
        };
        self.held.extend_from_slice(chunk);
        let decided = self.held.len().saturating_sub(longest - 1);
        let (out, used) = self.replace(&self.held, decided);
        self.held.drain(..used);
        out
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.replace(&held, held.len()).0
    }

    /// Redacts `text` from the start, deciding positions before `until`; returns the
    /// output and how many bytes of `text` it covers (a match may run past `until`).
    fn replace(&self, text: &[u8], until: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(until);
        let mut i = 0;
        'scan: while i < until {
            for secret in &self.secrets {
                if text[i..].starts_with(secret) {
                    out.extend_from_slice(MASK.as_bytes());
                    i += secret.len();
                    continue 'scan;
                }
            }
            out.push(text[i]);
            i += 1;
        }
        (out, i)
    }
}

/// A job's output on its way to the log: [`Logged::finish`] waits until all of it is in.
pub struct Logged(std::sync::mpsc::Receiver<()>);

impl Logged {
    /// Waits for the last output. The job's group has ended by now, but a process that
    /// left the group could hold the pipe open, so the wait is bounded.
    pub fn finish(self) {
        let _ = self.0.recv_timeout(std::time::Duration::from_secs(5));
    }
}

/// Starts `command` as a [`GroupChild`] whose stdout and stderr go through a pipe to
/// `log` (see [`tee`]) with `secrets` masked.
pub fn spawn_logged(
    mut command: std::process::Command,
    log: std::fs::File,
    echo: bool,
    secrets: &[&str],
    cancel: &Cancel,
) -> std::io::Result<(GroupChild, Logged)> {
    let (reader, writer) = std::io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let spawned = GroupChild::spawn(&mut command, cancel);
    drop(command); // our copies of the write end: EOF comes when the job's close
    let child = spawned?;
    let done = tee(reader, log, echo, Redactor::new(secrets));
    Ok((child, Logged(done)))
}

/// How much output may wait for a slow console before the console skips some.
const CONSOLE_BACKLOG: usize = 128;
const SKIPPED: &[u8] = b"\n[pikaci-guest: output skipped on the console, which is slower than the job; guest.log has all of it]\n";

/// Copies `reader` to `log` (and stdout when `echo`) with secrets redacted, on a thread;
/// the receiver fires at EOF, after the log is synced. The log gets every byte; the
/// console (a microVM's serial port, far slower than a busy job) gets what it keeps up
/// with, so it never slows the job down.
pub fn tee(
    mut reader: impl Read + Send + 'static,
    mut log: std::fs::File,
    echo: bool,
    mut redactor: Redactor,
) -> std::sync::mpsc::Receiver<()> {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let console = echo.then(console_writer);
        let mut skipping = false;
        let mut write = |bytes: Vec<u8>| {
            let _ = log.write_all(&bytes);
            if let Some((sender, _)) = &console {
                use std::sync::mpsc::TrySendError;
                if skipping && sender.try_send(SKIPPED.to_vec()).is_ok() {
                    skipping = false;
                }
                if !skipping && matches!(sender.try_send(bytes), Err(TrySendError::Full(_))) {
                    skipping = true;
                }
            }
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            write(redactor.feed(&buf[..n]));
        }
        write(redactor.finish());
        let _ = log.sync_all();
        if let Some((sender, writer)) = console {
            drop(sender);
            let _ = writer.join();
        }
        let _ = done.send(());
    });
    finished
}

/// A thread that writes what it receives to stdout.
fn console_writer() -> (
    std::sync::mpsc::SyncSender<Vec<u8>>,
    std::thread::JoinHandle<()>,
) {
    let (sender, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(CONSOLE_BACKLOG);
    let writer = std::thread::spawn(move || {
        let mut console = std::io::stdout();
        for chunk in chunks {
            let _ = console.write_all(&chunk);
        }
        let _ = console.flush();
    });
    (sender, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn redact_in_chunks(secrets: &[&str], text: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut redactor = Redactor::new(secrets);
        let mut out = Vec::new();
        let mut rest = text;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            out.extend(redactor.feed(chunk));
            rest = tail;
        }
        out.extend(redactor.finish());
        out
    }

    #[test]
    fn values_are_masked_also_across_chunks() {
        let text = b"token=hunter2; again hunter2\nand a hunter, not a secret\n";
        let whole = redact_in_chunks(&["hunter2"], text, &[text.len()]);
        assert_eq!(
            whole,
            b"token=***; again ***\nand a hunter, not a secret\n".to_vec()
        );
        for size in 1..10 {
            assert_eq!(
                redact_in_chunks(&["hunter2"], text, &[size]),
                whole,
                "{size}"
            );
        }
        // The longer of two overlapping secrets wins; empty values are ignored.
        assert_eq!(
            redact_in_chunks(&["abc", "abcdef", ""], b"xabcdefx abcx", &[3]),
            b"x***x ***x".to_vec()
        );
        // Without secrets the stream passes as it is, non-UTF-8 included.
        assert_eq!(redact_in_chunks(&[], b"\xff\xfe ok", &[1]), b"\xff\xfe ok");
    }

    proptest! {
        /// However the output is chunked, no secret survives and what is not a secret
        /// is kept: redacting in chunks equals redacting the whole at once.
        #[test]
        fn chunking_never_lets_a_secret_through(
            secret in "[a-z]{3,12}",
            parts in proptest::collection::vec(("[a-z ]{0,20}", any::<bool>()), 0..12),
            sizes in proptest::collection::vec(1usize..16, 1..6),
        ) {
            let mut text = Vec::new();
            for (filler, with_secret) in &parts {
                text.extend_from_slice(filler.as_bytes());
                if *with_secret {
                    text.extend_from_slice(secret.as_bytes());
                }
            }
            let chunked = redact_in_chunks(&[&secret], &text, &sizes);
            let whole = redact_in_chunks(&[&secret], &text, &[text.len().max(1)]);
            prop_assert_eq!(&chunked, &whole);
            let found = chunked.windows(secret.len()).any(|w| w == secret.as_bytes());
            prop_assert!(!found, "{:?}", String::from_utf8_lossy(&chunked));
        }
    }
}
