use std::io::Write;
use std::path::Path;

use super::args::{Execution, Global, RerunArgs, RunArgs};
use super::context::{
    cancel_on_signals, default_parallelism, ignore_state, load_config, state_dir,
};
use crate::error::Error;
use crate::report::{
    GithubReporter, OutputMode, Reporter, junit_report, markdown_summary, reporter,
};
use crate::run::{self, RerunOptions, RetryOptions, RunOptions, RunOutcome};
use crate::state::{JobRecord, StateDir, job_records, resolve_run};

fn retry(execution: &Execution) -> RetryOptions {
    RetryOptions {
        retries: execution.retries,
        fail_on_flaky: execution.fail_on_flaky,
    }
}

fn parallel(execution: &Execution) -> usize {
    execution
        .parallel
        .unwrap_or_else(default_parallelism)
        .max(1)
}

/// The reporter for `--output`; in GitHub Actions, human output also groups each job's
/// log and annotates failures.
fn make_reporter(execution: &Execution, state: &StateDir) -> Box<dyn Reporter> {
    let base = reporter(execution.output, !execution.no_progress);
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if in_actions && execution.output == OutputMode::Human {
        return Box::new(GithubReporter {
            inner: base,
            state: state.clone(),
        });
    }
    base
}

/// `--junit`, `--summary` and `$GITHUB_STEP_SUMMARY`, written from the final records.
fn write_reports(
    execution: &Execution,
    state: &StateDir,
    outcome: &RunOutcome,
) -> Result<(), Error> {
    let step_summary = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty());
    if execution.junit.is_none() && execution.summary.is_none() && step_summary.is_none() {
        return Ok(());
    }
    let record = &outcome.record;
    let run_dir = state.run(&record.run_id);
    let jobs: Vec<JobRecord> = job_records(&run_dir, record)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect();
    if let Some(path) = &execution.junit {
        let xml = junit_report(record, &run_dir, &jobs)
            .to_string()
            .map_err(|e| Error::infra("serialising the JUnit report", e))?;
        write_file(path, xml.as_bytes(), false)?;
    }
    let summary = markdown_summary(record, &jobs);
    if let Some(path) = &execution.summary {
        write_file(path, summary.as_bytes(), false)?;
    }
    if let Some(path) = step_summary {
        write_file(Path::new(&path), summary.as_bytes(), true)?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], append: bool) -> Result<(), Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| Error::infra(&format!("writing {}", path.display()), e))
}

/// Fails early, saying what to change, when this user cannot write the state dir.
fn writable(state: &StateDir) -> Result<(), Error> {
    match crate::hint::unwritable_state_dir(state.root()) {
        Some(detail) => Err(Error::Infra {
            what: format!("cannot use the state dir {}", state.root().display()),
            detail,
        }),
        None => Ok(()),
    }
}

pub fn run(global: &Global, args: RunArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = state_dir(global, &config);
    writable(&state)?;
    ignore_state(&state)?;
    let cancel = cancel_on_signals()?;
    let report = make_reporter(&args.execution, &state);
    let options = RunOptions {
        selection: args.names,
        parallel: parallel(&args.execution),
        base: args.base,
        no_cache_skip: args.no_cache_skip,
        retry: retry(&args.execution),
    };
    let outcome = run::run(&config, &state, &options, report.as_ref(), &cancel)?;
    write_reports(&args.execution, &state, &outcome)?;
    Ok(outcome.exit_code())
}

pub fn rerun(global: &Global, args: RerunArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = state_dir(global, &config);
    let previous = resolve_run(&state, &args.run).map_err(Error::Usage)?;
    writable(&state)?;
    let cancel = cancel_on_signals()?;
    let report = make_reporter(&args.execution, &state);
    let options = RerunOptions {
        previous: &previous,
        failed_only: args.failed,
        parallel: parallel(&args.execution),
        retry: retry(&args.execution),
    };
    let outcome = run::rerun(&config, &state, &options, report.as_ref(), &cancel)?;
    write_reports(&args.execution, &state, &outcome)?;
    Ok(outcome.exit_code())
}
