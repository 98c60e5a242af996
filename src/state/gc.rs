use std::collections::HashSet;
use std::path::PathBuf;

use super::layout::StateDir;
use super::listing::list_runs;

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<String>,
    /// Runs kept because a live process holds their lock.
    pub locked: Vec<String>,
    /// Snapshot hashes still referenced by the runs that remain.
    pub live_snapshots: HashSet<String>,
    pub errors: Vec<(PathBuf, std::io::Error)>,
}

/// Removes all but the newest `keep` finished runs. A run whose lock is held is never
/// touched, whatever its age.
pub fn gc(state: &StateDir, keep: usize) -> std::io::Result<GcReport> {
    let runs = list_runs(state)?;
    let mut report = GcReport::default();
    let unlocked = runs.iter().filter(|r| !r.locked).count();
    let mut to_remove = unlocked.saturating_sub(keep);
    for run in &runs {
        if run.locked {
            report.locked.push(run.id.clone());
        } else if to_remove > 0 {
            to_remove -= 1;
            match remove_tree(&run.path) {
                Ok(()) => {
                    report.removed.push(run.id.clone());
                    continue;
                }
                Err(e) => report.errors.push((run.path.clone(), e)),
            }
        }
        if let Ok(record) = &run.record
            && let Some(snapshot) = &record.snapshot
        {
            report.live_snapshots.insert(snapshot.id.clone());
        }
    }
    Ok(report)
}

/// The snapshots the runs that remain refer to, or `None` while a run is in progress (it
/// may have taken a snapshot it has not recorded yet). Asked again once gc holds the
/// cache lock, since a run may have started or ended since [`gc`] listed them.
pub fn live_snapshots(state: &StateDir) -> std::io::Result<Option<HashSet<String>>> {
    let runs = list_runs(state)?;
    if runs.iter().any(|r| r.locked) {
        return Ok(None);
    }
    Ok(Some(
        runs.iter()
            .filter_map(|r| Some(r.record.as_ref().ok()?.snapshot.as_ref()?.id.clone()))
            .collect(),
    ))
}

/// Removes a directory tree, making read-only directories writable first.
pub fn remove_tree(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    std::fs::remove_dir_all(path)
}
