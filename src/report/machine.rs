use super::Reporter;
use crate::state::{Event, JobRecord, RunRecord};

/// `--output jsonl`: every event as one line on stdout, as it happens.
pub struct JsonlReporter;

impl Reporter for JsonlReporter {
    fn event(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            crate::outln!("{line}");
        }
    }
    fn finish(&self, _run: &RunRecord, _jobs: &[JobRecord]) {}
}

/// `--output json`: one document at the end: the run record and every job record.
pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn event(&self, _event: &Event) {}
    fn finish(&self, run: &RunRecord, jobs: &[JobRecord]) {
        let doc = serde_json::json!({ "run": run, "jobs": jobs });
        if let Ok(text) = serde_json::to_string_pretty(&doc) {
            crate::outln!("{text}");
        }
    }
}

/// One run as `pikaci runs --json` lists it (and `GET /api/runs` of `pikaci serve`).
pub fn run_entry_json(run: &crate::state::RunEntry) -> serde_json::Value {
    match &run.record {
        Ok(record) => serde_json::json!({"id": run.id, "status": run.status(), "record": record}),
        Err(e) => {
            serde_json::json!({"id": run.id, "status": null, "error": crate::error::chain(e)})
        }
    }
}

/// One run as `pikaci status --json` shows it (and `GET /api/runs/RUN` of `pikaci serve`):
/// the run record with its shown status, each job's record (or why it is unreadable), the
/// pool hosts it considered.
pub fn status_json(
    record: &RunRecord,
    status: Option<crate::state::RunStatus>,
    jobs: &[(String, Result<JobRecord, String>)],
    hosts: &[crate::state::HostRecord],
) -> serde_json::Value {
    let jobs: Vec<serde_json::Value> = jobs
        .iter()
        .map(|(name, r)| match r {
            Ok(job) => serde_json::to_value(job).unwrap_or_default(),
            Err(e) => serde_json::json!({"job": name, "error": e}),
        })
        .collect();
    let mut run = serde_json::to_value(record).unwrap_or_default();
    run["status"] = serde_json::to_value(status).unwrap_or_default();
    serde_json::json!({"run": run, "jobs": jobs, "hosts": hosts})
}

/// The pool hosts the run considered (`hosts.json`); none for a run that wrote none
/// (older, or before its hosts were reached), which only lacks the detail.
pub fn read_run_hosts(run: &crate::state::RunDir) -> Vec<crate::state::HostRecord> {
    std::fs::read(run.path.join("hosts.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}
