//! Workspace snapshots: content-addressed, hashed exactly as `nix hash path` hashes the
//! tree, with unchanged files never read or copied twice.

mod files;
mod index;
mod store;
mod tree;

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use files::Kind;
use index::Index;
use store::Store;

pub use store::{hex, nar_hash, sri_to_hex};
pub use tree::{TreeEntry, TreeKind};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `sha256-<base64>`, the same string `nix hash path <dir>` prints.
    pub nar_hash: String,
    /// The published, read-only tree.
    pub dir: PathBuf,
    /// Regular files and symlinks.
    pub files: u64,
    /// True when this exact snapshot existed already and nothing was copied.
    pub reused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(crate::git::GitError),
    #[error("cannot serialise {} as a NAR: {detail}", path.display())]
    Nar { path: PathBuf, detail: String },
    #[error("no snapshot {nar_hash} in {} (removed by `pikaci gc`?)", cache.display())]
    Missing { nar_hash: String, cache: PathBuf },
}

/// Snapshots `workspace` into the store at `cache`, leaving out `exclude` (absolute paths,
/// such as a state dir inside the workspace).
pub fn take(
    workspace: &Path,
    cache: &Path,
    exclude: &[PathBuf],
) -> Result<Snapshot, SnapshotError> {
    let store = Store::new(cache);
    let taken_at_ns = now_ns();
    let entries = files::list(workspace, exclude)?;
    let index_path = cache.join("index").join(workspace_key(workspace));
    let old_index = Index::load(&index_path);

    // Content hashes: from the index where the stat data is unchanged, else by reading
    // the file (which also stores it).
    let mut hashes: Vec<String> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let hash = match (entry.kind, old_index.lookup(entry)) {
            (Kind::File { executable }, Some(hash))
                if store.object_path(hash, executable).exists() =>
            {
                hash.to_string()
            }
            (Kind::File { executable }, _) => {
                store.add_file(&workspace.join(&entry.path), executable)?
            }
            (Kind::Symlink, _) => {
                let target = fs::read_link(workspace.join(&entry.path)).map_err(|source| {
                    SnapshotError::Io {
                        path: workspace.join(&entry.path),
                        source,
                    }
                })?;
                store::hex(&Sha256::digest(target.as_os_str().as_bytes()))
            }
        };
        hashes.push(hash);
    }
    let pairs: Vec<_> = entries
        .iter()
        .zip(hashes.iter().map(String::as_str))
        .collect();
    let new_index = Index::build(taken_at_ns, &pairs);
    let digest = manifest_digest(&pairs);

    let existing = store
        .manifest(&digest)
        .and_then(|nar| Some((store.snapshot_dir(&store::sri_to_hex(&nar)?), nar)))
        .filter(|(dir, _)| dir.is_dir());
    let (dir, nar_hash, reused) = match existing {
        Some((dir, nar)) => (dir, nar, true),
        None => {
            let tree = store.new_tmp_dir()?;
            for (entry, hash) in &pairs {
                let dest = tree.path().join(&entry.path);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(|source| SnapshotError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                match entry.kind {
                    Kind::File { executable } => {
                        if !store.object_path(hash, executable).exists() {
                            store.add_file(&workspace.join(&entry.path), executable)?;
                        }
                        store.link_object(hash, executable, &dest)?
                    }
                    Kind::Symlink => store::copy_symlink(&workspace.join(&entry.path), &dest)?,
                }
            }
            let nar = nar_hash(tree.path())?;
            let hex = store::sri_to_hex(&nar).unwrap_or_default();
            let dir = store.publish(tree, &hex)?;
            store.set_manifest(&digest, &nar)?;
            (dir, nar, false)
        }
    };
    let tree_file = tree::tree_path(cache, &store::sri_to_hex(&nar_hash).unwrap_or_default());
    if !tree_file.exists() {
        tree::write_tree(&tree_file, &tree_entries(workspace, &pairs)?)?;
    }
    if !new_index.same_entries(&old_index) {
        write_index(&index_path, &new_index)?;
    }
    Ok(Snapshot {
        nar_hash,
        dir,
        files: entries.len() as u64,
        reused,
    })
}

fn tree_entries(
    workspace: &Path,
    pairs: &[(&files::Entry, &str)],
) -> Result<Vec<TreeEntry>, SnapshotError> {
    pairs
        .iter()
        .map(|(entry, hash)| {
            let kind = match entry.kind {
                Kind::File { executable } => TreeKind::File {
                    hash: hash.to_string(),
                    executable,
                },
                Kind::Symlink => {
                    let full = workspace.join(&entry.path);
                    let target = fs::read_link(&full)
                        .map_err(|source| SnapshotError::Io { path: full, source })?;
                    TreeKind::Symlink { target }
                }
            };
            Ok(TreeEntry {
                path: entry.path.clone(),
                kind,
            })
        })
        .collect()
}

/// The file list of a published snapshot.
pub fn tree(cache: &Path, nar_hash: &str) -> Result<Vec<TreeEntry>, SnapshotError> {
    let hex = store::sri_to_hex(nar_hash).ok_or_else(|| SnapshotError::Missing {
        nar_hash: nar_hash.to_string(),
        cache: cache.to_path_buf(),
    })?;
    tree::read_tree(&tree::tree_path(cache, &hex))
}

/// The file list of a published snapshot, by the hex form of its hash.
pub fn tree_by_hex(cache: &Path, nar_hex: &str) -> Result<Vec<TreeEntry>, SnapshotError> {
    tree::read_tree(&tree::tree_path(cache, nar_hex))
}

/// The hex hashes of the snapshots published in `cache`, newest first, at most `limit`.
pub fn recent_trees(cache: &Path, limit: usize) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cache.join("trees")) else {
        return Vec::new();
    };
    let mut trees: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let valid = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            Some((e.metadata().ok()?.modified().ok()?, name)).filter(|_| valid)
        })
        .collect();
    trees.sort_by(|a, b| b.cmp(a));
    trees
        .into_iter()
        .take(limit)
        .map(|(_, name)| name)
        .collect()
}

/// Where the store keeps the content with `hash`.
pub fn object_path(cache: &Path, hash: &str, executable: bool) -> PathBuf {
    Store::new(cache).object_path(hash, executable)
}

/// A published snapshot by its NAR hash (for `pikaci rerun`).
pub fn open(cache: &Path, nar_hash: &str) -> Result<Snapshot, SnapshotError> {
    let missing = || SnapshotError::Missing {
        nar_hash: nar_hash.to_string(),
        cache: cache.to_path_buf(),
    };
    let dir = Store::new(cache).snapshot_dir(&store::sri_to_hex(nar_hash).ok_or_else(missing)?);
    if !dir.is_dir() {
        return Err(missing());
    }
    let files = walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_dir())
        .count() as u64;
    Ok(Snapshot {
        nar_hash: nar_hash.to_string(),
        dir,
        files,
        reused: true,
    })
}

/// A writable copy of a snapshot for jobs with `writable-workspace` (real copies, so the
/// job's writes never reach the store). `dest` must not exist.
pub fn private_copy(snapshot: &Path, dest: &Path) -> Result<(), SnapshotError> {
    for entry in walkdir::WalkDir::new(snapshot) {
        let entry = entry.map_err(|e| SnapshotError::Io {
            path: snapshot.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(snapshot).unwrap_or(Path::new(""));
        let target = dest.join(rel);
        let io = |source| SnapshotError::Io {
            path: target.clone(),
            source,
        };
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir(&target).map_err(io)?;
        } else if kind.is_symlink() {
            store::copy_symlink(entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(io)?;
            let executable = entry
                .metadata()
                .map_err(|e| io(e.into()))?
                .permissions()
                .mode()
                & 0o100
                != 0;
            let mode = if executable { 0o755 } else { 0o644 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io)?;
        }
    }
    Ok(())
}

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

/// Removes snapshots whose NAR hash is not in `keep`, then objects no snapshot links,
/// then leftovers of interrupted builds. Must not run while a snapshot is being taken.
pub fn gc(cache: &Path, keep: &HashSet<String>) -> Result<GcStats, SnapshotError> {
    use std::os::unix::fs::MetadataExt;
    let keep_hex: HashSet<String> = keep.iter().filter_map(|k| store::sri_to_hex(k)).collect();
    let mut stats = GcStats::default();
    for dir in read_dir_paths(&cache.join("snapshots")) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !keep_hex.contains(&name) {
            store::remove_tree(&dir).map_err(|source| SnapshotError::Io {
                path: dir.clone(),
                source,
            })?;
            let _ = fs::remove_file(tree::tree_path(cache, &name));
            stats.snapshots_removed += 1;
        }
    }
    for object in walkdir::WalkDir::new(cache.join("objects"))
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if object.file_type().is_file() && object.metadata().is_ok_and(|m| m.nlink() == 1) {
            fs::remove_file(object.path()).map_err(|source| SnapshotError::Io {
                path: object.path().to_path_buf(),
                source,
            })?;
            stats.objects_removed += 1;
        }
    }
    for tmp in read_dir_paths(&cache.join("tmp")) {
        let _ = store::remove_tree(&tmp);
    }
    Ok(stats)
}

fn read_dir_paths(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Identifies the file list: paths, kinds and content hashes.
fn manifest_digest(pairs: &[(&files::Entry, &str)]) -> String {
    let mut hasher = Sha256::new();
    for (entry, hash) in pairs {
        let kind: &[u8] = match entry.kind {
            Kind::File { executable: true } => b"x",
            Kind::File { executable: false } => b"f",
            Kind::Symlink => b"l",
        };
        hasher.update(entry.path.as_os_str().as_bytes());
        hasher.update([0]);
        hasher.update(kind);
        hasher.update(hash.as_bytes());
        hasher.update([0]);
    }
    store::hex(&hasher.finalize())
}

fn workspace_key(workspace: &Path) -> String {
    let absolute = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    store::hex(&Sha256::digest(absolute.as_os_str().as_bytes()))[..16].to_string()
}

fn write_index(path: &Path, index: &Index) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_atomic(path, &index.to_bytes()).map_err(io)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests;
