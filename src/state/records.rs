//! The on-disk records: `run.json` and `jobs/<job>/status.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::BackendKind;

/// Version of `run.json`, `status.json` and `events.jsonl` lines. Readers accept every
/// version up to this one; fields added later carry serde defaults.
pub const RECORD_SCHEMA: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Passed,
    Failed,
    Cancelled,
    Error,
    /// Never written: shown for a `running` record whose process is gone.
    Abandoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Passed,
    /// Passed after an earlier attempt failed, timed out or ended in an error (`retries`).
    Flaky,
    Failed,
    TimedOut,
    Skipped,
    Cancelled,
    Error,
    /// A build job whose outputs were already valid, or in the cache: not built, and as
    /// good as passed for the jobs that need it.
    Cached,
}

impl JobStatus {
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::TimedOut | JobStatus::Error | JobStatus::Cancelled
        )
    }

    /// Whether the job's command passed in the end (or, for a build job, its outputs
    /// were already there): what its dependants wait for.
    pub fn passed(self) -> bool {
        matches!(
            self,
            JobStatus::Passed | JobStatus::Flaky | JobStatus::Cached
        )
    }
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let value = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(value.as_str().unwrap_or("?"))
            }
        }
    )*};
}
display_as_serde!(RunStatus, JobStatus, Retried);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The snapshot's id (the digest of its file list, hex). Records of older pikacis
    /// have `nar_hash`, the SRI form of the NAR hash their tree is named by.
    #[serde(alias = "nar_hash", deserialize_with = "snapshot_id")]
    pub id: String,
    pub dir: PathBuf,
    pub files: u64,
    pub reused: bool,
}

/// A snapshot id as recorded: hex, or an older record's `sha256-<base64>` NAR hash, whose
/// hex names its tree.
fn snapshot_id<'de, D: serde::Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let id = String::deserialize(de)?;
    Ok(crate::snapshot::sri_to_hex(&id).unwrap_or(id))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    pub pid: u32,
    pub workspace: PathBuf,
    pub config: PathBuf,
    /// What was asked for on the command line (targets or jobs); empty = everything.
    #[serde(default)]
    pub selection: Vec<String>,
    #[serde(default)]
    pub snapshot: Option<SnapshotRef>,
    /// What path filters compared against, in words.
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub rerun_of: Option<String>,
    /// The push to `[nix] cache` after the jobs: a phase of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushRecord>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobStatus>,
    #[serde(default)]
    pub message: Option<String>,
}

/// What the push of a run's outputs to the binary cache did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    pub cache: String,
    /// The store paths pushed (their closures go with them).
    pub paths: Vec<String>,
    pub duration_ms: u64,
    /// Why it failed; none when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub schema_version: u32,
    pub job: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub backend: BackendKind,
    pub status: JobStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub message: Option<String>,
    /// Milliseconds spent per phase (workspace, launch, run, collect, cleanup); `cleanup`,
    /// the guest's teardown, is added to the final record when it ends.
    #[serde(default)]
    pub phases: BTreeMap<String, u64>,
    /// The phase a job that ended in an error (or was cancelled) was in when it ended,
    /// e.g. `setup`: whether its guest ever started, and so where to look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in: Option<String>,
    /// The pool host its guest ran on (`[hosts.NAME]`); none for `host` jobs, which run
    /// on this machine, and for jobs never placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Earlier attempts, oldest first: a job with `retries` that did not pass (or whose
    /// host failed under it) ran again. Each one's files are in `attempts/<n>/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// `runs/<run>/hosts.json`: each pool host the run considered, as its probe found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    pub url: String,
    /// Why it was out of the run from the start; none when it answered.
    #[serde(default)]
    pub down: Option<String>,
    /// Declared and detected.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub slots: Option<u32>,
}

/// One earlier attempt of a job, as its record said when it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: u32,
    #[serde(default)]
    pub host: Option<String>,
    pub status: JobStatus,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The phase it ended in, for an error: as [`JobRecord::failed_in`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_in: Option<String>,
    /// Why it was run again; none in records written before retries covered every end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<Retried>,
}

/// Why an attempt of a job was run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retried {
    /// Its command exited non-zero.
    Failed,
    TimedOut,
    /// It could not run to its end (a guest that did not start, a step that failed).
    Error,
    /// Its pool host failed while it ran: the next attempt goes to another host.
    HostLost,
}

impl Attempt {
    /// The attempt `record` holds, once it ended, run again for `retried`.
    pub fn of(record: &JobRecord, retried: Retried) -> Attempt {
        Attempt {
            attempt: record.attempts.len() as u32 + 1,
            host: record.host.clone(),
            status: record.status,
            message: record.message.clone(),
            exit_code: record.exit_code,
            duration_ms: record.duration_ms,
            failed_in: record.failed_in.clone(),
            retried: Some(retried),
        }
    }

    /// Whether it makes a job that passes later `flaky`: the job itself did not pass
    /// then. A host lost under it says nothing of the job.
    pub fn counts_as_flaky(&self) -> bool {
        self.retried != Some(Retried::HostLost) && self.status.is_failure()
    }
}

impl JobRecord {
    /// Whether the job ended without its command ever running: not run at all (skipped,
    /// cancelled before it started) or ended in a phase before `run`.
    pub fn never_started(&self) -> bool {
        !matches!(self.status, JobStatus::Pending | JobStatus::Running)
            && !self.phases.contains_key("run")
            && self.exit_code.is_none()
    }

    /// The record's message on one line, with the phase it failed in: what `status`
    /// prints beside the job and `logs` prints for a job that never started.
    pub fn one_line(&self) -> String {
        let message = self.message.as_deref().unwrap_or("");
        let message: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let message = message.join("; ");
        match &self.failed_in {
            Some(phase) if message.is_empty() => format!("in {phase}"),
            Some(phase) => format!("in {phase}: {message}"),
            None => message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid record", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has schema_version {found}; this pikaci reads up to {RECORD_SCHEMA} (upgrade pikaci)", path.display())]
    TooNew { path: PathBuf, found: u32 },
}

/// Reads a record, refusing versions newer than this build understands.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let bytes = std::fs::read(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[derive(Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let parse = |source| RecordError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let version: Version = serde_json::from_slice(&bytes).map_err(parse)?;
    if version.schema_version > RECORD_SCHEMA {
        return Err(RecordError::TooNew {
            path: path.to_path_buf(),
            found: version.schema_version,
        });
    }
    serde_json::from_slice(&bytes).map_err(parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, r#"{"schema_version": 9}"#).unwrap();
        let err = read_record::<RunRecord>(&path).unwrap_err().to_string();
        assert!(
            err.contains("schema_version 9") && err.contains("upgrade"),
            "{err}"
        );
    }

    #[test]
    fn an_older_records_nar_hash_names_its_snapshot_by_hex() {
        let old = r#"{"nar_hash": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "dir": "/s", "files": 1, "reused": true}"#;
        let snapshot: SnapshotRef = serde_json::from_str(old).unwrap();
        assert_eq!(
            snapshot.id,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let new = serde_json::to_string(&snapshot).unwrap();
        assert!(new.contains(r#""id":"e3b0c4"#), "{new}");
        let again: SnapshotRef = serde_json::from_str(&new).unwrap();
        assert_eq!(again, snapshot);
    }

    #[test]
    fn status_displays_like_its_json() {
        assert_eq!(JobStatus::TimedOut.to_string(), "timed_out");
        assert_eq!(RunStatus::Abandoned.to_string(), "abandoned");
    }
}
