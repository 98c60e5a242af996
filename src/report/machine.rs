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
