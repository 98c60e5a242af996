use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::Id;

/// `$PIKACI_STATE_DIR`, by default `.pikaci/` at the repository root.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn run(&self, run_id: &str) -> RunDir {
        RunDir {
            id: run_id.to_string(),
            path: self.runs().join(run_id),
        }
    }
}

/// One run's directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

impl RunDir {
    pub fn run_json(&self) -> PathBuf {
        self.path.join("run.json")
    }
    pub fn plan_json(&self) -> PathBuf {
        self.path.join("plan.json")
    }
    pub fn events(&self) -> PathBuf {
        self.path.join("events.jsonl")
    }
    /// Also named in `lock::create_run`, which locks it before the run dir has its name.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join("lock")
    }
    /// GC roots of what this run built; removing the run releases them.
    pub fn gcroots(&self) -> PathBuf {
        self.path.join("gcroots")
    }
    pub fn prepare_log(&self, name: &str) -> PathBuf {
        self.path.join("prepare").join(format!("{name}.log"))
    }
    pub fn job(&self, job: &Id) -> PathBuf {
        self.path.join("jobs").join(job.as_str())
    }
    pub fn jobs(&self) -> PathBuf {
        self.path.join("jobs")
    }
}

/// A run id that sorts by start time, to the millisecond: `20261124T224350Z-1234a5b`
/// (seconds, then milliseconds and a salt so two runs started in the same millisecond by
/// different processes differ).
pub fn new_run_id() -> String {
    let now = SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (nanos ^ std::process::id().rotate_left(16)).wrapping_mul(2_654_435_761) >> 20;
    format!("{compact}-{:03}{:04x}", nanos / 1_000_000, salt & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_valid_ids_and_sort_by_time() {
        let id = new_run_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(new_run_id() > id, "a later run sorts after");
        assert!(Id::new(id.clone()).is_ok(), "{id}");
        assert_eq!(id.len(), "20261124T224350Z-1234a5b".len(), "{id}");
        assert!(id.ends_with(|c: char| c.is_ascii_hexdigit()));
    }
}
