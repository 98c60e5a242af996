//! The state directory: `runs/<run-id>/{run.json, plan.json, events.jsonl, jobs/…}` and
//! `cache/`. Every JSON write is atomic; a lock file held by the running process tells
//! a live run from an abandoned one.

mod events;
mod gc;
mod layout;
mod listing;
mod lock;
mod records;

pub use events::{Event, EventKind, EventLog};
pub use gc::{GcReport, gc, live_snapshots, remove_tree};
pub use layout::{RunDir, StateDir, new_run_id};
pub use listing::{RunEntry, job_records, list_runs, resolve_run};
pub use lock::{RunLock, create_run};
pub use records::*;
