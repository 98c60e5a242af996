use super::args::{Execution, Global, RerunArgs, RunArgs};
use super::context::{default_parallelism, load_config, state_dir};
use crate::cancel::Cancel;
use crate::error::Error;
use crate::report::reporter;
use crate::run::{self, RunOptions};
use crate::state::resolve_run;

fn cancel_on_signals() -> Result<Cancel, Error> {
    let cancel = Cancel::new();
    cancel
        .install_signal_handlers()
        .map_err(|e| Error::infra("installing signal handlers", e))?;
    Ok(cancel)
}

fn parallel(execution: &Execution) -> usize {
    execution
        .parallel
        .unwrap_or_else(default_parallelism)
        .max(1)
}

pub fn run(global: &Global, args: RunArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = state_dir(global, &config);
    let cancel = cancel_on_signals()?;
    let report = reporter(args.execution.output, !args.execution.no_progress);
    let options = RunOptions {
        selection: args.names,
        parallel: parallel(&args.execution),
        base: args.base,
    };
    let outcome = run::run(&config, &state, &options, report.as_ref(), &cancel)?;
    Ok(outcome.exit_code())
}

pub fn rerun(global: &Global, args: RerunArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = state_dir(global, &config);
    let previous = resolve_run(&state, &args.run).map_err(Error::Usage)?;
    let cancel = cancel_on_signals()?;
    let report = reporter(args.execution.output, !args.execution.no_progress);
    let outcome = run::rerun(
        &config,
        &state,
        &previous,
        args.failed,
        parallel(&args.execution),
        report.as_ref(),
        &cancel,
    )?;
    Ok(outcome.exit_code())
}
