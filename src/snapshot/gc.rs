//! Collecting and checking the store. Every step leaves the store usable if it is cut
//! short (SIGKILL included): a snapshot's completeness record goes first, so a half
//! removed tree is never used again, and the next gc removes what is left.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::lock::{self, CacheLock};
use super::tree::{self, TreeKind};
use super::{SnapshotError, complete, store};

#[derive(Debug, Default)]
pub struct GcStats {
    pub snapshots_removed: usize,
    pub objects_removed: usize,
}

impl fmt::Display for GcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removed {} snapshot(s), {} unused object(s)",
            self.snapshots_removed, self.objects_removed
        )
    }
}

/// The cache lock gc needs, `None` while a run is taking or opening a snapshot. Whoever
/// holds it must then check that no run is in progress before collecting.
pub fn lock_for_gc(cache: &Path) -> Result<Option<CacheLock>, SnapshotError> {
    lock::try_exclusive(cache)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes snapshots whose id is not in `keep`, then objects no snapshot links, then
/// leftovers of interrupted builds, patches and gcs.
pub fn gc(
    cache: &Path,
    keep: &HashSet<String>,
    _lock: &CacheLock,
) -> Result<GcStats, SnapshotError> {
    let mut stats = GcStats::default();
    for name in dir_names(&cache.join("snapshots")) {
        if !keep.contains(&name) {
            drop_snapshot(cache, &name)?;
            stats.snapshots_removed += 1;
        }
    }
    // Records of snapshots that are gone (a gc killed between the two steps, a patch
    // killed before it published).
    for dir in ["complete", "trees"] {
        for name in dir_names(&cache.join(dir)) {
            if !cache.join("snapshots").join(&name).exists() {
                complete::forget(cache, &name).map_err(io_err(&cache.join(dir)))?;
            }
        }
    }
    for name in dir_names(&cache.join("leases")) {
        if !cache.join("snapshots").join(&name).exists() {
            let lease = cache.join("leases").join(name);
            fs::remove_file(&lease).map_err(io_err(&lease))?;
        }
    }
    // Objects with one link are in no snapshot; `.add-*` files are adds cut short.
    for object in walkdir::WalkDir::new(cache.join("objects"))
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if object.file_type().is_file() && object.metadata().is_ok_and(|m| m.nlink() == 1) {
            fs::remove_file(object.path()).map_err(io_err(object.path()))?;
            stats.objects_removed += 1;
        }
    }
    // The fan-out directories of older pikacis, once no snapshot links their objects.
    for entry in fs::read_dir(cache.join("objects"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir(entry.path());
        }
    }
    for tmp in dir_names(&cache.join("tmp")) {
        let _ = store::remove_tree(&cache.join("tmp").join(tmp));
    }
    // Older pikacis mapped file lists to NAR hashes there.
    let _ = store::remove_tree(&cache.join("manifests"));
    complete::forget_earlier_boots(cache).map_err(io_err(&cache.join("checked")))?;
    Ok(stats)
}

/// Unusable first, then removed.
fn drop_snapshot(cache: &Path, id: &str) -> Result<(), SnapshotError> {
    let dir = cache.join("snapshots").join(id);
    complete::forget(cache, id).map_err(io_err(&dir))?;
    store::remove_tree(&dir).map_err(io_err(&dir))
}

fn dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Default)]
pub struct VerifyStats {
    pub objects_checked: usize,
    pub objects_bad: Vec<PathBuf>,
    pub snapshots_dropped: usize,
}

impl fmt::Display for VerifyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checked {} object(s): {} damaged, removed with the {} snapshot(s) using them",
            self.objects_checked,
            self.objects_bad.len(),
            self.snapshots_dropped
        )
    }
}

/// `pikaci gc --verify`: hashes every object and drops each one whose content does not
/// match its name, with every snapshot that links it or is incomplete. The next run
/// stores the right content again from the workspace (which is what repairs it).
pub fn verify(cache: &Path, _lock: &CacheLock) -> Result<VerifyStats, SnapshotError> {
    let mut stats = VerifyStats::default();
    let mut bad: HashSet<String> = HashSet::new();
    for entry in walkdir::WalkDir::new(cache.join("objects"))
        .min_depth(1)
        .max_depth(2)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
    {
        let Some(name) = object_name_of(entry.path(), entry.depth()) else {
            continue;
        };
        stats.objects_checked += 1;
        if sha256_hex(entry.path())? != name.trim_end_matches("-x") {
            bad.insert(name);
            stats.objects_bad.push(entry.path().to_path_buf());
        }
    }
    for name in dir_names(&cache.join("snapshots")) {
        let dir = cache.join("snapshots").join(&name);
        let links_bad = tree::read_tree(&tree::tree_path(cache, &name)).map_or(true, |t| {
            t.iter().any(|e| match &e.kind {
                TreeKind::File { hash, executable } => {
                    let suffix = if *executable { "-x" } else { "" };
                    bad.contains(&format!("{hash}{suffix}"))
                }
                TreeKind::Symlink { .. } => false,
            })
        });
        if links_bad || !complete::is_whole(cache, &dir, &name) {
            drop_snapshot(cache, &name)?;
            stats.snapshots_dropped += 1;
        }
    }
    for path in &stats.objects_bad {
        fs::remove_file(path).map_err(io_err(path))?;
    }
    Ok(stats)
}

/// An object's hash and suffix, from `objects/<hash>[-x]` (depth 1) or the older
/// `objects/<hh>/<rest>[-x]` (depth 2); `None` for an add cut short (`.add-*`).
fn object_name_of(path: &Path, depth: usize) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    match depth {
        1 => Some(name.to_string()),
        _ => Some(format!("{}{name}", path.parent()?.file_name()?.to_str()?)),
    }
}

fn sha256_hex(path: &Path) -> Result<String, SnapshotError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(store::hex(&hasher.finalize()))
}
