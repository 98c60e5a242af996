use std::path::PathBuf;

use super::layout::StateDir;
use super::lock::RunLock;
use super::records::{RecordError, RunRecord, RunStatus, read_record};

/// One run as listed: its record, or why it could not be read.
#[derive(Debug)]
pub struct RunEntry {
    pub id: String,
    pub path: PathBuf,
    pub record: Result<RunRecord, RecordError>,
    /// True while a live process holds the run's lock.
    pub locked: bool,
}

impl RunEntry {
    /// The status to show: a `running` record without a live process is `abandoned`.
    pub fn status(&self) -> Option<RunStatus> {
        let record = self.record.as_ref().ok()?;
        Some(match record.status {
            RunStatus::Running if !self.locked => RunStatus::Abandoned,
            status => status,
        })
    }
}

/// All runs, oldest first (run ids sort by start time). A missing `runs/` is no runs.
pub fn list_runs(state: &StateDir) -> std::io::Result<Vec<RunEntry>> {
    let dir = match std::fs::read_dir(state.runs()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|id| {
            let run = state.run(&id);
            RunEntry {
                record: read_record(&run.run_json()),
                locked: RunLock::is_held(&run.lock_file()),
                id,
                path: run.path,
            }
        })
        .collect())
}

/// Resolves `latest` or a run id to an existing run id.
pub fn resolve_run(state: &StateDir, name: &str) -> Result<String, String> {
    let runs =
        list_runs(state).map_err(|e| format!("cannot list {}: {e}", state.runs().display()))?;
    if name == "latest" {
        return runs
            .last()
            .map(|r| r.id.clone())
            .ok_or_else(|| format!("no runs in {}", state.runs().display()));
    }
    runs.iter()
        .find(|r| r.id == name)
        .map(|r| r.id.clone())
        .ok_or_else(|| {
            format!(
                "no run `{name}` in {} (see `pikaci runs`)",
                state.runs().display()
            )
        })
}

/// The job records of a run, in job-name order; an unreadable one carries its error.
pub fn job_records(
    run: &super::RunDir,
    record: &RunRecord,
) -> Vec<(String, Result<super::JobRecord, RecordError>)> {
    record
        .jobs
        .keys()
        .map(|job| {
            let path = run.jobs().join(job).join("status.json");
            (job.clone(), read_record(&path))
        })
        .collect()
}
