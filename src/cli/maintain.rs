use super::args::{GcArgs, Global};
use super::context::state_only;
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
    Ok(if report.errors.is_empty() { 0 } else { 3 })
}
