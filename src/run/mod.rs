//! Orchestration: a run's records, its scheduler, and one job's life.

mod dag;
mod job;
mod preflight;
mod prepare;
mod recorder;
mod scheduler;
mod start;

pub use preflight::PreflightError;
pub use start::{RerunOptions, RetryOptions, RunOptions, RunOutcome, rerun, run};
