//! Following a job's log as it grows: server-sent events on the request's own thread,
//! polling the file (as `pikaci logs --follow` does), so a follower costs the run nothing
//! but a few reads a second. The stream ends with an `end` event once the job is over.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::model::job_ended;
use super::paths::open_beneath;
use crate::state::StateDir;

const POLL: Duration = Duration::from_millis(250);
/// A comment every few seconds finds a follower that has gone (the write fails).
const KEEPALIVE_POLLS: u32 = 20;
/// The most sent in one event; a larger backlog goes out in several.
const PIECE: usize = 64 << 10;

/// Streams `rel` (a log under the state dir) from byte `offset` until job `job` of the
/// run in `run_dir` has ended, or the follower has gone.
pub fn follow(
    out: &mut dyn Write,
    state: &StateDir,
    run_id: &str,
    job: &str,
    rel: &Path,
    mut offset: u64,
) -> std::io::Result<()> {
    let run = state.run(run_id);
    let mut text = Utf8Pieces::default();
    let mut polls = 0u32;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
    )?;
    out.flush()?;
    loop {
        // The status before the log: output written just before the end is still sent.
        let ended = job_ended(&run, job);
        if let Ok(mut file) = open_beneath(state.root(), rel) {
            file.seek(SeekFrom::Start(offset))?;
            let mut piece = vec![0u8; PIECE];
            loop {
                let n = file.read(&mut piece)?;
                if n == 0 {
                    break;
                }
                offset += n as u64;
                let data = serde_json::json!({ "text": text.take(&piece[..n]) });
                // The id is where a reconnecting browser resumes (`Last-Event-ID`).
                writeln!(out, "id: {offset}")?;
                send(out, "log", &data)?;
            }
        }
        if let Some(status) = ended {
            let end = serde_json::json!({ "status": status, "offset": offset });
            return send(out, "end", &end);
        }
        polls += 1;
        if polls.is_multiple_of(KEEPALIVE_POLLS) {
            out.write_all(b": keepalive\n\n")?;
            out.flush()?;
        }
        std::thread::sleep(POLL);
    }
}

fn send(out: &mut dyn Write, event: &str, data: &serde_json::Value) -> std::io::Result<()> {
    // JSON on one line: a newline in the log cannot end the event early.
    write!(out, "event: {event}\ndata: {data}\n\n")?;
    out.flush()
}

/// Turns bytes read in pieces into text, holding back a character split between pieces;
/// bytes that are not UTF-8 become U+FFFD, as the page shows them.
#[derive(Default)]
struct Utf8Pieces {
    held: Vec<u8>,
}

impl Utf8Pieces {
    fn take(&mut self, bytes: &[u8]) -> String {
        self.held.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.held) {
            Ok(_) => self.held.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => incomplete_tail_start(&self.held),
        };
        let rest = self.held.split_off(complete);
        let text = String::from_utf8_lossy(&self.held).into_owned();
        self.held = rest;
        text
    }
}

/// Where a possibly split character at the end of `bytes` starts (its length if none).
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let from = bytes.len().saturating_sub(3);
    (from..bytes.len())
        .find(|&i| {
            std::str::from_utf8(&bytes[i..])
                .is_err_and(|e| e.valid_up_to() == 0 && e.error_len().is_none())
        })
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let mut pieces = Utf8Pieces::default();
        let word = "grün".as_bytes();
        assert_eq!(pieces.take(&word[..3]), "gr");
        assert_eq!(pieces.take(&word[3..]), "ün");
        assert_eq!(pieces.take(b"\xff ok \xc3"), "\u{fffd} ok ");
        assert_eq!(pieces.take(b"\xbc"), "ü");
    }
}
