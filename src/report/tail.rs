//! The end of a job's log for reports, read in bounded memory whatever the log holds: only
//! the last `bytes` of the file are read, and a line longer than `line_bytes` is cut.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a log's end a report carries.
#[derive(Clone, Copy, Debug)]
pub struct TailLimits {
    /// At most this many lines...
    pub lines: usize,
    /// ...from the last this many bytes of the log...
    pub bytes: u64,
    /// ...each cut to this many bytes.
    pub line_bytes: usize,
}

/// A cut line's marker, for the bytes of the line that are not shown.
fn cut_marker(bytes: usize) -> String {
    format!("[pikaci: {bytes} bytes of this line cut]")
}

/// The last lines of the log at `path` (lossy UTF-8, trailing whitespace dropped, `\r\n`
/// read as `\n`), within `limits`; empty if it cannot be read.
pub fn log_tail(path: &Path, limits: TailLimits) -> String {
    read_end(path, limits.bytes)
        .map(|(end, whole)| tail_of(&end, whole, limits))
        .unwrap_or_default()
}

/// The last `bytes` of the file at most, and whether that is the file from its start or
/// from the start of a line.
fn read_end(path: &Path, bytes: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    // One byte more than the window: whether the window starts a line.
    let start = len.saturating_sub(bytes.saturating_add(1));
    file.seek(SeekFrom::Start(start))?;
    let mut end = Vec::new();
    file.take(bytes.saturating_add(1)).read_to_end(&mut end)?;
    if start == 0 {
        return Ok((end, true));
    }
    let at_line_start = end.first() == Some(&b'\n');
    end.remove(0);
    Ok((end, at_line_start))
}

/// The tail of `end`, whose first line is whole when `first_whole`.
fn tail_of(end: &[u8], first_whole: bool, limits: TailLimits) -> String {
    let end = end.trim_ascii_end();
    if end.is_empty() {
        return String::new();
    }
    let mut lines: Vec<&[u8]> = end
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect();
    let mut first_whole = first_whole;
    if !first_whole && lines[0].is_empty() {
        // The window starts at a newline: the line before it is not shown at all.
        lines.remove(0);
        first_whole = true;
    }
    let start = lines.len().saturating_sub(limits.lines);
    let shown: Vec<String> = lines[start..]
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if i + start == 0 && !first_whole {
                line_end(line, limits.line_bytes)
            } else {
                line_start(line, limits.line_bytes)
            }
        })
        .collect();
    shown.join("\n")
}

/// The start of `line`, cut after `max` bytes (at a character boundary) with a marker.
fn line_start(line: &[u8], max: usize) -> String {
    if line.len() <= max {
        return String::from_utf8_lossy(line).into_owned();
    }
    let mut cut = max;
    while cut > 0 && is_continuation(line[cut]) {
        cut -= 1;
    }
    format!(
        "{} {}",
        String::from_utf8_lossy(&line[..cut]),
        cut_marker(line.len() - cut)
    )
}

/// The end of a line whose start is not in the window: marked as cut, with its last `max`
/// bytes at most.
fn line_end(line: &[u8], max: usize) -> String {
    let mut from = line.len().saturating_sub(max);
    while from < line.len() && is_continuation(line[from]) {
        from += 1;
    }
    format!(
        "[pikaci: the start of this line is cut] {}",
        String::from_utf8_lossy(&line[from..])
    )
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// `text` cut after `max` characters with a marker, for single values shown in a report
/// (a job's message in a table cell, an annotation).
pub fn cap_text(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{} [pikaci: {} bytes cut]", &text[..cut], text.len() - cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WIDE: TailLimits = TailLimits {
        lines: 3,
        bytes: 1 << 20,
        line_bytes: 1 << 20,
    };

    fn tail_of_file(content: &[u8], limits: TailLimits) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.log");
        std::fs::write(&path, content).unwrap();
        log_tail(&path, limits)
    }

    #[test]
    fn long_lines_are_cut_with_a_marker_and_only_the_end_is_read() {
        let narrow = TailLimits {
            lines: 3,
            bytes: 20,
            line_bytes: 6,
        };
        // The window holds the end of `0123…`, then two whole lines; the long one is cut.
        let log = b"0123456789abcdef\nok\nlong line here\n\n";
        assert_eq!(
            tail_of_file(
                log,
                TailLimits {
                    bytes: 22,
                    ..narrow
                }
            ),
            "[pikaci: the start of this line is cut] ef\nok\nlong l [pikaci: 8 bytes of this line cut]"
        );
        assert_eq!(
            tail_of_file(log, narrow),
            "ok\nlong l [pikaci: 8 bytes of this line cut]"
        );
        // A window that starts just after a newline has whole lines only.
        assert_eq!(
            tail_of_file(b"skipped\nabc\r\ndef", TailLimits { bytes: 8, ..narrow }),
            "abc\ndef"
        );
        // A multi-byte character is not split.
        assert_eq!(
            tail_of_file(
                "aaaaaé€z".as_bytes(),
                TailLimits {
                    line_bytes: 6,
                    ..WIDE
                }
            ),
            "aaaaa [pikaci: 6 bytes of this line cut]"
        );
        assert_eq!(tail_of_file(b"\n \n", WIDE), "");
        assert_eq!(log_tail(Path::new("/nonexistent/guest.log"), WIDE), "");
        assert_eq!(cap_text("abcdef", 4), "abcd [pikaci: 2 bytes cut]");
        assert_eq!(cap_text("abc", 4), "abc");
    }

    proptest! {
        /// Within the limits, the tail is what the whole log's last lines are.
        #[test]
        fn within_limits_the_tail_is_the_last_lines(
            lines in proptest::collection::vec("[a-z \r]{0,8}", 0..12),
            trailing in "[\n ]{0,3}",
        ) {
            let text = format!("{}{trailing}", lines.join("\n"));
            prop_assert_eq!(
                tail_of_file(text.as_bytes(), WIDE),
                crate::fsutil::tail(&text, WIDE.lines)
            );
        }
    }
}
