//! Orchestration: a run's records, its scheduler, and one job's life.

mod build_job;
mod dag;
mod flake_targets;
mod job;
mod preflight;
mod prepare;
mod push;
mod recorder;
mod scheduler;
mod start;

pub use flake_targets::{FlakeTargetError, evaluate_all as evaluate_flake_targets};
pub use preflight::PreflightError;
pub use start::{RerunOptions, RetryOptions, RunOptions, RunOutcome, rerun, run};
