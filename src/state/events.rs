use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::records::{JobStatus, RECORD_SCHEMA, Retried, RunStatus, SnapshotRef};
use crate::config::BackendKind;

/// One line of `events.jsonl` (and of `--output jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: u32,
    pub time: String,
    pub run_id: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        jobs: Vec<String>,
        snapshot: Option<SnapshotRef>,
    },
    PrepareStarted {
        input: String,
        installable: String,
    },
    PrepareFinished {
        input: String,
        ok: bool,
        duration_ms: u64,
        message: Option<String>,
    },
    JobStarted {
        job: String,
        backend: BackendKind,
        /// The pool host it was placed on; none for `host` jobs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A job entered a phase: workspace, launch, run, stop, collect, cleanup (VM
    /// backends add their own, such as sync, build and boot). `cleanup`, the guest's
    /// teardown, comes after the job's `job_finished`.
    JobPhase {
        job: String,
        phase: String,
    },
    JobFinished {
        job: String,
        status: JobStatus,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
        message: Option<String>,
        /// The pool host it ran on; none for `host` jobs and jobs never placed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// An attempt of a job ended without passing and the job runs again (`retries`):
    /// this attempt's files move to `jobs/<job>/attempts/<attempt>/`.
    JobRetried {
        job: String,
        attempt: u32,
        status: JobStatus,
        retried: Retried,
        exit_code: Option<i32>,
        duration_ms: Option<u64>,
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A pool host is out of the run: unreachable, or its connection dropped. Jobs that
    /// had not started there go to other hosts.
    HostDown {
        host: String,
        message: String,
    },
    RunFinished {
        status: RunStatus,
        duration_ms: u64,
    },
}

impl Event {
    pub fn new(run_id: &str, kind: EventKind) -> Event {
        Event {
            schema_version: RECORD_SCHEMA,
            time: crate::fsutil::now_rfc3339(),
            run_id: run_id.to_string(),
            kind,
        }
    }
}

/// Appends events, one JSON object per line, each written with a single `write` so
/// concurrent job threads never interleave within a line.
pub struct EventLog {
    file: Mutex<File>,
}

impl EventLog {
    pub fn create(path: &Path) -> io::Result<EventLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventLog {
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
    }
}
