use super::args::{GcArgs, Global};
use super::context::{load_config, state_only};
use crate::error::Error;

pub fn gc(global: &Global, args: GcArgs) -> Result<u8, Error> {
    let state = state_only(global)?;
    let report =
        crate::state::gc(&state, args.keep).map_err(|e| Error::infra("collecting runs", e))?;
    println!(
        "removed {} run(s); kept {} locked",
        report.removed.len(),
        report.locked.len()
    );
    for locked in &report.locked {
        println!("  in use: {locked}");
    }
    // A run in progress may have taken a snapshot it has not recorded yet, so snapshots
    // are collected only when no run is in progress.
    if report.locked.is_empty() {
        let stats = crate::snapshot::gc(&state.cache(), &report.live_snapshots)
            .map_err(|e| Error::infra("collecting snapshots", e))?;
        println!("snapshots: {stats}");
    }
    for (path, e) in &report.errors {
        eprintln!("warning: could not remove {}: {e}", path.display());
    }
    let mut failed = !report.errors.is_empty();
    // The guest host, when a config names one that guests run on.
    let config = load_config(global).ok().filter(|c| {
        c.jobs
            .values()
            .any(|j| j.backend != crate::config::BackendKind::Host)
    });
    if let Some(config) = config {
        let finished: Vec<String> = crate::state::list_runs(&state)
            .map_err(|e| Error::infra("listing runs", e))?
            .into_iter()
            .filter(|r| !r.locked)
            .map(|r| r.id)
            .chain(report.removed.iter().cloned())
            .collect();
        let cancel = crate::cancel::Cancel::new();
        match crate::backend::collect_host(&config, state.root(), &finished, &cancel) {
            Ok(n) => println!(
                "host {}: removed {n} job dir(s) of runs that are over",
                config.defaults.host
            ),
            Err(e) => {
                eprintln!(
                    "warning: could not clean up on {}: {e}",
                    config.defaults.host
                );
                failed = true;
            }
        }
    }
    Ok(if failed { 3 } else { 0 })
}
