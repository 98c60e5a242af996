//! Guest protocol v1: one JSON request in, one JSON result out.
//!
//! The same types serve the host backend (which writes a result of the same shape) and
//! `pikaci-guest` inside VMs, so a result reads the same whatever ran the job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub schema_version: u32,
    pub job_id: String,
    pub command: String,
    pub timeout_secs: u64,
    pub run_as_root: bool,
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Store paths whose `bin/` go on PATH, in order.
    pub path: Vec<PathBuf>,
    pub writable_workspace: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestStatus {
    Passed,
    Failed,
    TimedOut,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestResult {
    pub schema_version: u32,
    pub status: GuestStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub message: Option<String>,
}
