//! A job's output on its way to `guest.log` (and a guest's console): copied as it comes,
//! with the values of the job's secrets replaced by `***`.

use std::io::{Read, Write};

use crate::cancel::Cancel;
use crate::exec::GroupChild;

/// What a secret's value is replaced with.
pub const MASK: &str = "***";

/// The shortest derived form (a line of a multi-line secret, a trimmed value) that is
/// masked on its own. Shorter lines carry next to nothing of a secret (a PEM's base64
/// tail, a JSON `}`), and masking them would put `***` in place of every `}` or `fi` of
/// the log. The value itself is masked whatever its length.
pub const MIN_DERIVED_LEN: usize = 4;

/// The byte strings masked for one secret `value`, like GitHub Actions does: the value,
/// the value trimmed, and for a multi-line value also each line (trimmed), the words
/// joined by single spaces (`echo $VALUE`), and the lines joined by `\r`, `\r\n`, `\n`
/// or nothing (`tr '\n' '\r'`, a terminal, `tr -d '\n'`). Derived forms shorter than
/// [`MIN_DERIVED_LEN`] are left out.
pub fn masked_forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    let trimmed = value.trim_ascii();
    forms.push(trimmed.to_vec());
    let lines: Vec<&[u8]> = trimmed
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect();
    if lines.len() > 1 || trimmed.contains(&b'\r') {
        forms.extend(
            trimmed
                .split(|&b| b == b'\n' || b == b'\r')
                .map(|line| line.trim_ascii().to_vec()),
        );
        let words: Vec<&[u8]> = trimmed
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .collect();
        forms.push(words.join(&b' '));
        for separator in [&b"\r"[..], b"\r\n", b"\n", b""] {
            forms.push(lines.join(separator));
        }
    }
    let mut forms: Vec<Vec<u8>> = forms
        .into_iter()
        .enumerate()
        .filter(|(i, form)| !form.is_empty() && (*i == 0 || form.len() >= MIN_DERIVED_LEN))
        .map(|(_, form)| form)
        .collect();
    forms.sort();
    forms.dedup();
    forms
}

/// Replaces secret values (each in all its [`masked_forms`]) in a byte stream that
/// arrives in chunks. A position is decided only once the longest form fits after it, so
/// a value split across chunks is still found and a shorter form never pre-empts a
/// longer one; at most `longest - 1` bytes wait for the next chunk, whatever the stream.
pub struct Redactor {
    /// Longest first: a form that contains another is replaced whole.
    forms: Vec<Vec<u8>>,
    /// The bytes a form starts with, to pass over the others quickly.
    starts: [bool; 256],
    held: Vec<u8>,
}

impl Redactor {
    /// Empty values are ignored (they would match everywhere).
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut forms: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .flat_map(|s| masked_forms(s.as_ref()))
            .collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        let mut starts = [false; 256];
        for form in &forms {
            starts[usize::from(form[0])] = true;
        }
        Redactor {
            forms,
            starts,
            held: Vec::new(),
        }
    }

    /// The bytes of `chunk` (after what was held back) that can be written now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(longest) = self.forms.first().map(Vec::len) else {
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
            if self.starts[usize::from(text[i])] {
                for form in &self.forms {
                    if text[i..].starts_with(form) {
                        out.extend_from_slice(MASK.as_bytes());
                        i += form.len();
                        continue 'scan;
                    }
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
/// the receiver fires at EOF, after the last write (syncing the log to disk is the
/// caller's: a host job's goes with its final records). The log gets every byte; the
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

    #[test]
    fn a_multi_line_value_is_masked_line_by_line_and_re_encoded() {
        let forms: Vec<String> = masked_forms(b"BEGIN KEY\r\n  abcdef\r\nxy\r\nEND KEY\r\n")
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        // `xy` is too short to be masked on its own; the whole value still is.
        assert_eq!(
            forms,
            [
                "BEGIN KEY",
                "BEGIN KEY\n  abcdef\nxy\nEND KEY",
                "BEGIN KEY\r\n  abcdef\r\nxy\r\nEND KEY",
                "BEGIN KEY\r\n  abcdef\r\nxy\r\nEND KEY\r\n",
                "BEGIN KEY\r  abcdef\rxy\rEND KEY",
                "BEGIN KEY  abcdefxyEND KEY",
                "BEGIN KEY abcdef xy END KEY",
                "END KEY",
                "abcdef",
            ]
        );
        let pem = "-----BEGIN K-----\nAAAAbbbb\nCCCC\nz=\n-----END K-----";
        let text = format!(
            "{pem}\n{}\n{}\n{}\nz=\n",
            pem.split_whitespace().collect::<Vec<_>>().join(" "),
            pem.replace('\n', "\r"),
            pem.lines().take(2).collect::<Vec<_>>().join("\n"),
        );
        assert_eq!(
            String::from_utf8_lossy(&redact_in_chunks(&[pem], text.as_bytes(), &[5])),
            "***\n***\n***\n***\n***\nz=\n"
        );
        // A single-line value is masked at any length, its trimmed form from 4 bytes.
        assert_eq!(masked_forms(b"ab\n"), [b"ab\n".to_vec()]);
        assert_eq!(
            masked_forms(b" abcd "),
            [b" abcd ".to_vec(), b"abcd".to_vec()]
        );
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

        /// The same for a multi-line value printed whole, line by line, joined by
        /// spaces or by `\r`: chunked equals whole, and none of its masked forms is left.
        #[test]
        fn chunking_never_lets_a_multi_line_secret_through(
            lines in proptest::collection::vec("[a-z]{1,10}", 2..5),
            crlf in any::<bool>(),
            parts in proptest::collection::vec(("[a-z \r\n]{0,20}", 0usize..64), 0..10),
            sizes in proptest::collection::vec(1usize..16, 1..6),
        ) {
            let secret = lines.join(if crlf { "\r\n" } else { "\n" });
            let mut printed = vec![
                secret.clone(),
                lines.join(" "),
                lines.join("\r"),
                lines[..2].join("\n"),
            ];
            printed.extend(lines.iter().cloned());
            let mut text = Vec::new();
            for (filler, pick) in &parts {
                text.extend_from_slice(filler.as_bytes());
                if let Some(form) = printed.get(pick % (printed.len() + 1)) {
                    text.extend_from_slice(form.as_bytes());
                }
            }
            let chunked = redact_in_chunks(&[&secret], &text, &sizes);
            let whole = redact_in_chunks(&[&secret], &text, &[text.len().max(1)]);
            prop_assert_eq!(&chunked, &whole);
            // What must be gone, named here rather than taken from `masked_forms`: the
            // value, and the joined forms and lines long enough to be masked alone (two
            // lines together are masked line by line).
            let derived = [&printed[1], &printed[2]].into_iter().chain(&lines);
            let mut gone = vec![secret.clone()];
            gone.extend(derived.filter(|f| f.len() >= MIN_DERIVED_LEN).cloned());
            for form in gone {
                let found = chunked.windows(form.len()).any(|w| w == form.as_bytes());
                prop_assert!(!found, "{:?} in {:?}", form, String::from_utf8_lossy(&chunked));
            }
        }
    }
}
