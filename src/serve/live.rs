//! Following a job's log as it grows: server-sent events, each a look at the file (as
//! `pikaci logs --follow` polls it) made on the blocking pool, so a follower costs the
//! run nothing but a few small reads a second. The stream ends with an `end` event once
//! the job is over; a follower that goes away drops it.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::model::job_ended;
use super::paths::open_beneath;
use crate::state::{JobStatus, StateDir};

const POLL: Duration = Duration::from_millis(250);
/// The most sent in one event; a larger backlog goes out in several.
const PIECE: u64 = 64 << 10;
/// The most followers at once; past it a follower is turned away (503) rather than
/// letting a runaway page open streams without end.
pub const MAX_FOLLOWERS: usize = 1024;

static FOLLOWERS: AtomicUsize = AtomicUsize::new(0);

/// A place among the [`MAX_FOLLOWERS`], given back when its follower is dropped.
struct Place;

impl Place {
    fn take() -> Option<Place> {
        let taken = FOLLOWERS.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_FOLLOWERS {
            FOLLOWERS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Place)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        FOLLOWERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where one follower is in one job's log.
pub struct Follower {
    pub state: Arc<StateDir>,
    pub run: String,
    pub job: String,
    /// The log, relative to the state dir.
    pub rel: PathBuf,
    pub offset: u64,
    text: Utf8Pieces,
    _place: Place,
}

enum Look {
    Text(String),
    Ended(JobStatus),
    Nothing,
}

impl Follower {
    /// None when [`MAX_FOLLOWERS`] already follow.
    pub fn new(
        state: Arc<StateDir>,
        run: String,
        job: String,
        rel: PathBuf,
        offset: u64,
    ) -> Option<Self> {
        Some(Follower {
            state,
            run,
            job,
            rel,
            offset,
            text: Utf8Pieces::default(),
            _place: Place::take()?,
        })
    }

    /// New text if the log grew, else whether the job has ended. The status is read
    /// before the log, so output written just before the end is sent before `end`.
    fn look(&mut self) -> std::io::Result<Look> {
        let ended = job_ended(&self.state.run(&self.run), &self.job);
        if let Ok(mut file) = open_beneath(self.state.root(), &self.rel) {
            file.seek(SeekFrom::Start(self.offset))?;
            let mut bytes = Vec::new();
            file.take(PIECE).read_to_end(&mut bytes)?;
            if !bytes.is_empty() {
                self.offset += bytes.len() as u64;
                return Ok(Look::Text(self.text.take(&bytes)));
            }
        }
        Ok(ended.map_or(Look::Nothing, Look::Ended))
    }
}

pub fn stream(follower: Follower) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures_util::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        loop {
            let (back, look) = tokio::task::spawn_blocking(move || {
                let look = follower.look();
                (follower, look)
            })
            .await
            .ok()?;
            follower = back;
            match look.ok()? {
                Look::Text(text) => {
                    let data = serde_json::json!({ "text": text }).to_string();
                    // The id is where a reconnecting browser resumes (`Last-Event-ID`).
                    let event = Event::default()
                        .event("log")
                        .id(follower.offset.to_string())
                        .data(data);
                    return Some((Ok(event), Some(follower)));
                }
                Look::Ended(status) => {
                    let data = serde_json::json!({ "status": status, "offset": follower.offset });
                    let event = Event::default().event("end").data(data.to_string());
                    return Some((Ok(event), None));
                }
                Look::Nothing => tokio::time::sleep(POLL).await,
            }
        }
    });
    // A comment every few seconds finds a follower that has gone (the write fails).
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
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
