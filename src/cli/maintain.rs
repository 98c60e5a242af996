use std::collections::BTreeSet;

use super::args::{GcArgs, Global};
use super::context::{load_config, state_only};
use crate::backend::descriptor;
use crate::config::BackendKind;
use crate::error::Error;

pub fn gc(global: &Global, args: GcArgs) -> Result<u8, Error> {
    let state = state_only(global)?;
    let report =
        crate::state::gc(&state, args.keep).map_err(|e| Error::infra("collecting runs", e))?;
    crate::outln!(
        "removed {} run(s); kept {} locked",
        report.removed.len(),
        report.locked.len()
    );
    for locked in &report.locked {
        crate::outln!("  in use: {locked}");
    }
    collect_snapshots(&state, args.verify)?;
    for (path, e) in &report.errors {
        crate::errln!("warning: could not remove {}: {e}", path.display());
    }
    let mut failed = !report.errors.is_empty();
    // The guest host, when a config names one that guests run on.
    let config = load_config(global).ok();
    let used: BTreeSet<BackendKind> = config
        .iter()
        .flat_map(|c| c.jobs.values().map(|j| j.backend))
        .collect();
    let on_host = used.iter().any(|kind| descriptor(*kind).on_host);
    if let Some(config) = config.as_ref().filter(|_| on_host) {
        let finished: Vec<String> = crate::state::list_runs(&state)
            .map_err(|e| Error::infra("listing runs", e))?
            .into_iter()
            .filter(|r| !r.locked)
            .map(|r| r.id)
            .chain(report.removed.iter().cloned())
            .collect();
        let keep = crate::backend::HostGc {
            finished_runs: &finished,
            keep_snapshots: &report.live_snapshots,
        };
        for host in config.hosts.values() {
            failed |= !collect_on(config, host, state.root(), &keep, &used);
        }
    }
    Ok(if failed { 3 } else { 0 })
}

/// gc on one host of the pool: pikaci's work dir, then what each backend left there.
/// Whether all of it went well; what did not is a warning.
fn collect_on(
    config: &crate::config::Config,
    host: &crate::config::PoolHost,
    state_root: &std::path::Path,
    keep: &crate::backend::HostGc,
    used: &BTreeSet<BackendKind>,
) -> bool {
    let cancel = crate::cancel::Cancel::new();
    let name = format!("{} ({})", host.name, host.spec);
    let mut ok = true;
    match crate::backend::collect_host(config, host, state_root, keep, &cancel) {
        Ok(stats) => crate::outln!("host {name}: {stats}"),
        Err(e) => {
            let e = crate::error::chain(&e);
            crate::errln!("warning: could not clean up on {name}: {e}");
            return false;
        }
    }
    for collector in used.iter().filter_map(|kind| descriptor(*kind).gc) {
        let what = collector.what;
        match (collector.collect)(config, host, state_root, keep.finished_runs, &cancel) {
            Ok(n) => crate::outln!("host {name}: removed {n} {what} of runs that are over"),
            Err(e) => {
                let e = crate::error::chain(&e);
                crate::errln!("warning: could not clean up {what} on {name}: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// Snapshots are collected only under the cache lock (no run is taking or opening one)
/// and when no run is in progress (it may have taken one it has not recorded yet).
fn collect_snapshots(state: &crate::state::StateDir, verify: bool) -> Result<(), Error> {
    let cache = state.cache();
    let snapshots = |e| Error::infra("collecting snapshots", e);
    let Some(lock) = crate::snapshot::lock_for_gc(&cache).map_err(snapshots)? else {
        crate::outln!("snapshots: kept (a run is taking a snapshot)");
        return Ok(());
    };
    let live = crate::state::live_snapshots(state).map_err(|e| Error::infra("listing runs", e))?;
    let Some(live) = live else {
        crate::outln!("snapshots: kept (a run is in progress)");
        return Ok(());
    };
    if verify {
        let stats = crate::snapshot::verify(&cache, &lock).map_err(snapshots)?;
        crate::outln!("verify: {stats}");
        for bad in &stats.objects_bad {
            crate::outln!("  damaged: {}", bad.display());
        }
    }
    let stats = crate::snapshot::gc(&cache, &live, &lock).map_err(snapshots)?;
    crate::outln!("snapshots: {stats}");
    Ok(())
}
