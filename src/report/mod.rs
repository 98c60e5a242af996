//! One event stream, several reporters.

mod github;
mod human;
mod junit;
mod machine;
pub(crate) mod ran_on;
mod summary;
pub(crate) mod tail;

pub use github::GithubReporter;
pub use human::HumanReporter;
pub use junit::junit_report;
pub use machine::{JsonReporter, JsonlReporter, read_run_hosts, run_entry_json, status_json};
pub use summary::markdown_summary;

use crate::state::{Event, JobRecord, RunRecord};

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
    /// Called once with the final records.
    fn finish(&self, run: &RunRecord, jobs: &[JobRecord]);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    Human,
    Json,
    Jsonl,
}

pub fn reporter(mode: OutputMode, progress: bool) -> Box<dyn Reporter> {
    match mode {
        OutputMode::Human => Box::new(HumanReporter::new(progress)),
        OutputMode::Json => Box::new(JsonReporter),
        OutputMode::Jsonl => Box::new(JsonlReporter),
    }
}

/// `1.2s`, `340ms`, `2m03s`: short and stable for human output.
pub fn short_duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}
