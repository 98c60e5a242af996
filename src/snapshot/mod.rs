//! Workspace snapshots: content-addressed trees named by a digest of their file list,
//! with unchanged files never read or copied twice, and a changed file costing one link
//! in a patched tree ([`patch`]).
//!
//! A snapshot is not named by its NAR hash: pikaci never hands Nix a hash of it. Nix
//! reads the tree itself where it uses it (a relative installable, a `path:` flake) and
//! hashes what it copies, so a NAR hash here would read every byte of the workspace on
//! each change for nothing. The tree is exactly the listed files (the tests compare its
//! `nix hash path` with the workspace's).

mod clock;
mod complete;
mod files;
mod gc;
mod index;
mod lock;
mod nar;
mod patch;
mod store;
mod tree;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use files::{Entry, Kind};
use index::Index;
use store::Store;

pub use gc::{GcStats, VerifyStats, gc, lock_for_gc, verify};
pub use lock::{CacheLock, Lease};
pub use nar::nar_hash;
pub use store::{hex, sri_to_hex};
pub use tree::{TreeEntry, TreeKind};

/// How the store's records are written: whole for every reader, not synced to disk. Its
/// objects are not synced either; after a crash, what did not reach the disk fails the
/// size checks every reuse makes and is taken again from the workspace.
const CACHE_WRITE: crate::fsutil::Durability = crate::fsutil::Durability::Atomic;

#[derive(Debug)]
pub struct Snapshot {
    /// The sha256 of its file list (paths, kinds, content hashes), in hex: the name of
    /// its tree.
    pub id: String,
    /// The published, read-only tree.
    pub dir: PathBuf,
    /// Regular files and symlinks.
    pub files: u64,
    /// True when this exact snapshot existed already and nothing was copied.
    pub reused: bool,
    /// What the user should know: files that vanished while listed, submodules not
    /// checked out.
    pub notes: Vec<String>,
    /// Held for as long as the snapshot is used: no take patches a tree in use.
    pub lease: Lease,
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
    #[error(
        "no snapshot {id} in {} (removed by `pikaci gc`, or patched into a later one)",
        cache.display()
    )]
    Missing { id: String, cache: PathBuf },
    #[error("{} kept changing while it was read ({attempts} attempts)", path.display())]
    KeptChanging { path: PathBuf, attempts: u32 },
    #[error(
        "snapshot {id} at {} is incomplete or damaged (a file missing or of the \
         wrong size); `pikaci run` takes it again from the workspace",
        dir.display()
    )]
    Incomplete { id: String, dir: PathBuf },
    #[error("cancelled")]
    Cancelled,
}

/// Snapshots `workspace` into the store at `cache`, leaving out `exclude` (absolute paths,
/// such as a state dir inside the workspace).
pub fn take(
    workspace: &Path,
    cache: &Path,
    exclude: &[PathBuf],
) -> Result<Snapshot, SnapshotError> {
    take_cancellable(workspace, cache, exclude, &Cancel::new())
}

/// One file of the snapshot: its listing (with the stat data of what was read), its
/// content hash (of the target, for a symlink) and, for a symlink, its target as read.
struct Taken {
    entry: Entry,
    hash: String,
    target: Option<PathBuf>,
}

/// [`take`], stopping with [`SnapshotError::Cancelled`] soon after `cancel` is set. Holds
/// the cache lock shared, so `pikaci gc` waits for it or skips the snapshots.
pub fn take_cancellable(
    workspace: &Path,
    cache: &Path,
    exclude: &[PathBuf],
    cancel: &Cancel,
) -> Result<Snapshot, SnapshotError> {
    let _lock = lock::shared(cache, cancel)?;
    let racy_from_ns = clock::racy_from_ns(cache, workspace);
    // git lists the workspace while the index is read and its paths are stat'ed.
    let listing = files::spawn_paths(workspace, exclude);
    let old_index = Index::load(&index_path(cache, workspace));
    let known = files::Known::stat(workspace, old_index.paths());
    let listed = listing.join().expect("the listing thread does not panic")?;
    if let Some(unchanged) = unchanged_since_index(cache, &old_index, &listed, &known, cancel)? {
        return Ok(unchanged);
    }
    let listing = files::list(workspace, &listed, &known)?;
    drop(known);
    take_listed(workspace, cache, listing, old_index, racy_from_ns, cancel)
}

/// The snapshot the index was written for, when the workspace is still exactly it and
/// it is still complete: a warm take with nothing changed makes no list, hash or tree.
fn unchanged_since_index(
    cache: &Path,
    index: &Index,
    listed: &files::Paths,
    known: &files::Known,
    cancel: &Cancel,
) -> Result<Option<Snapshot>, SnapshotError> {
    let Some(id) = index.tree() else {
        return Ok(None);
    };
    if !known.still(listed, |at, kind, stat| index.vouches(at, kind, stat)) {
        return Ok(None);
    }
    let (lease, complete) = lease_and_check(cache, id, cancel)?;
    if !complete {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        id: id.to_string(),
        dir: Store::new(cache).snapshot_dir(id),
        files: index.len() as u64,
        reused: true,
        notes: Vec::new(),
        lease,
    }))
}

/// The lease of snapshot `id`, and whether it is published and complete. A complete one
/// is marked as the most recently used, which is never patched into another.
fn lease_and_check(
    cache: &Path,
    id: &str,
    cancel: &Cancel,
) -> Result<(Lease, bool), SnapshotError> {
    let lease = lock::lease(cache, id, cancel)?;
    let complete = complete::is_complete(cache, &Store::new(cache).snapshot_dir(id), id);
    if complete {
        tree::touch(cache, id);
    }
    Ok((lease, complete))
}

fn index_path(cache: &Path, workspace: &Path) -> PathBuf {
    cache.join("index").join(workspace_key(workspace))
}

/// The part of [`take_cancellable`] after listing (separate, so a test can change the
/// workspace in between).
fn take_listed(
    workspace: &Path,
    cache: &Path,
    listing: files::Listing,
    old_index: Index,
    racy_from_ns: i128,
    cancel: &Cancel,
) -> Result<Snapshot, SnapshotError> {
    let store = Store::new(cache);
    let mut notes = listing.notes;

    // Content hashes: from the index where the stat data is unchanged and the object is
    // there with its size, else by reading the file once (which also stores it).
    let mut taken: Vec<Taken> = Vec::with_capacity(listing.entries.len());
    let mut from_index = 0;
    for mut entry in listing.entries {
        if cancel.is_cancelled() {
            return Err(SnapshotError::Cancelled);
        }
        let full = || workspace.join(&entry.path);
        let (hash, target) = match entry.kind {
            // Whether its object is still there is asked only if a new tree is built:
            // a complete snapshot that is reused holds links to all of them.
            Kind::File { executable } => match old_index.lookup(&entry) {
                Some(hash) => {
                    from_index += 1;
                    (hash.to_string(), None)
                }
                None => match store.add_file(&full(), executable, cancel)? {
                    Some(added) => {
                        entry.set_stat(added.stat);
                        (added.hash, None)
                    }
                    None => {
                        notes.push(vanished(&entry.path));
                        continue;
                    }
                },
            },
            // Read even when the index vouches for it: a tree made of this list needs
            // its target.
            Kind::Symlink => match fs::read_link(full()) {
                Ok(target) => {
                    let hash = store::hex(&Sha256::digest(target.as_os_str().as_bytes()));
                    from_index += usize::from(old_index.lookup(&entry) == Some(hash.as_str()));
                    (hash, Some(target))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    notes.push(vanished(&entry.path));
                    continue;
                }
                Err(source) => {
                    return Err(SnapshotError::Io {
                        path: full(),
                        source,
                    });
                }
            },
        };
        taken.push(Taken {
            entry,
            hash,
            target,
        });
    }
    // Gone before the tree and the new index are made: at 100,000 files it is 20 MB.
    let indexed = old_index.len();
    let indexed_tree = old_index.tree().map(str::to_string);
    drop(old_index);
    let published = publish_taken(&store, workspace, &mut taken, &mut notes, cancel)?;

    // Every path found in the index, as many as it holds, and naming this snapshot: it
    // is the same index.
    let same = from_index == taken.len()
        && taken.len() == indexed
        && published.reused
        && indexed_tree.as_ref() == Some(&published.id);
    if !same {
        let pairs: Vec<_> = taken.iter().map(|t| (&t.entry, t.hash.as_str())).collect();
        write_index(
            &index_path(cache, workspace),
            &Index::encode(racy_from_ns, &pairs, &published.id),
        )?;
    }

    Ok(Snapshot {
        dir: store.snapshot_dir(&published.id),
        id: published.id,
        files: taken.len() as u64,
        reused: published.reused,
        notes,
        lease: published.lease,
    })
}

/// A published tree for the file list taken, with its lease held.
struct Published {
    id: String,
    reused: bool,
    lease: Lease,
}

/// Finds the tree for `taken` published already, or patches an older one into it, or
/// builds it. Objects the index vouched for are looked for only when the tree is made;
/// storing a missing one again can change the file list (the file changed meanwhile),
/// and with it the id, so it starts over then.
fn publish_taken(
    store: &Store,
    workspace: &Path,
    taken: &mut Vec<Taken>,
    notes: &mut Vec<String>,
    cancel: &Cancel,
) -> Result<Published, SnapshotError> {
    let cache = &store.root;
    loop {
        let id = manifest_digest(taken);
        let (lease, complete) = lease_and_check(cache, &id, cancel)?;
        if complete {
            return Ok(Published {
                id,
                reused: true,
                lease,
            });
        }
        match try_patch(store, workspace, &id, taken, notes, cancel)? {
            Patch::Done => {}
            Patch::ListChanged => continue,
            Patch::NoBase => {
                if restore_missing_objects(store, workspace, taken, None, notes, cancel)? {
                    continue;
                }
                build(store, &id, taken, cancel)?;
            }
        }
        return Ok(Published {
            id,
            reused: false,
            lease,
        });
    }
}

enum Patch {
    Done,
    /// No older tree to patch, or none worth it.
    NoBase,
    /// A missing object was stored again from a file that changed meanwhile.
    ListChanged,
}

/// Publishes `id` by patching an older tree no run uses, when one is worth it.
fn try_patch(
    store: &Store,
    workspace: &Path,
    id: &str,
    taken: &mut Vec<Taken>,
    notes: &mut Vec<String>,
    cancel: &Cancel,
) -> Result<Patch, SnapshotError> {
    let Some(base) = patch::take_base(&store.root, id)? else {
        return Ok(Patch::NoBase);
    };
    let changes = patch::diff(&base.entries, taken);
    if !patch::worth_it(&changes, taken.len()) {
        return Ok(Patch::NoBase);
    }
    if restore_missing_objects(store, workspace, taken, Some(&changes.add), notes, cancel)? {
        return Ok(Patch::ListChanged);
    }
    if cancel.is_cancelled() {
        return Err(SnapshotError::Cancelled);
    }
    let (_tmp, tree, read_only) = patch::apply(store, &base, &changes, taken)?;
    store.publish(
        &tree,
        id,
        &tree_entries(taken),
        &sizes(taken),
        Some(&read_only),
    )?;
    Ok(Patch::Done)
}

/// Stores again each file (of `only`, indexes into `taken`, or all) whose hash came from
/// the index but whose object is gone or of the wrong size (removed by gc, truncated), so
/// the tree about to be made links only objects that are there. True when that changed
/// the file list: a file read again had other content, or had vanished.
fn restore_missing_objects(
    store: &Store,
    workspace: &Path,
    taken: &mut Vec<Taken>,
    only: Option<&[usize]>,
    notes: &mut Vec<String>,
    cancel: &Cancel,
) -> Result<bool, SnapshotError> {
    let checked: Vec<usize> = match only {
        Some(only) => only.to_vec(),
        None => (0..taken.len()).collect(),
    };
    let objects: Vec<PathBuf> = checked
        .iter()
        .map(|&at| match taken[at].entry.kind {
            Kind::File { executable } => store.object_path(&taken[at].hash, executable),
            Kind::Symlink => PathBuf::new(),
        })
        .collect();
    let sizes = crate::fsutil::stat_all(Path::new(""), &objects, |meta| {
        meta.ok()
            .filter(|m| m.kind == crate::fsutil::FileKind::File)
            .map(|m| m.size)
    });
    let mut changed = false;
    let mut gone = Vec::new();
    for (at, size) in checked.into_iter().zip(sizes) {
        let t = &mut taken[at];
        let Kind::File { executable } = t.entry.kind else {
            continue;
        };
        if size == Some(t.entry.size) {
            continue;
        }
        match store.add_file(&workspace.join(&t.entry.path), executable, cancel)? {
            Some(added) => {
                changed |= added.hash != t.hash;
                t.entry.set_stat(added.stat);
                t.hash = added.hash;
            }
            None => {
                notes.push(vanished(&t.entry.path));
                gone.push(at);
            }
        }
    }
    for at in gone.iter().rev() {
        taken.remove(*at);
    }
    Ok(changed || !gone.is_empty())
}

fn vanished(path: &Path) -> String {
    format!(
        "{} vanished while the snapshot was taken: left out",
        path.display()
    )
}

/// Builds the tree of hard links in `tmp/` and publishes it as `id`.
fn build(store: &Store, id: &str, taken: &[Taken], cancel: &Cancel) -> Result<(), SnapshotError> {
    let tree = store.new_tmp_dir()?;
    make_parent_dirs(tree.path(), taken)?;
    // Each link is one syscall of kernel time: a few threads share them out.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let chunk = taken.len().div_ceil(threads).max(PARALLEL_LINKS_FROM);
    std::thread::scope(|scope| {
        let parts: Vec<_> = taken
            .chunks(chunk)
            .map(|part| scope.spawn(|| link_all(store, tree.path(), part, cancel)))
            .collect();
        parts
            .into_iter()
            .try_for_each(|part| part.join().expect("a link thread does not panic"))
    })?;
    store.publish(tree.path(), id, &tree_entries(taken), &sizes(taken), None)?;
    Ok(())
}

/// The size of each regular file, in order: the completeness record's content.
fn sizes(taken: &[Taken]) -> Vec<u64> {
    taken
        .iter()
        .filter(|t| matches!(t.entry.kind, Kind::File { .. }))
        .map(|t| t.entry.size)
        .collect()
}

/// Below this many files a tree is linked on one thread.
const PARALLEL_LINKS_FROM: usize = 2048;

/// Every directory the tree's files are in, each made once (the files are sorted, so a
/// file's directory is most often the one before's).
fn make_parent_dirs(root: &Path, taken: &[Taken]) -> Result<(), SnapshotError> {
    let mut last: Option<&Path> = None;
    for parent in taken.iter().filter_map(|t| t.entry.path.parent()) {
        if parent.as_os_str().is_empty() || last == Some(parent) {
            continue;
        }
        let dir = root.join(parent);
        fs::create_dir_all(&dir).map_err(|source| SnapshotError::Io { path: dir, source })?;
        last = Some(parent);
    }
    Ok(())
}

/// Links each file of `part` to its object in the tree at `root`, and makes its symlinks.
fn link_all(
    store: &Store,
    root: &Path,
    part: &[Taken],
    cancel: &Cancel,
) -> Result<(), SnapshotError> {
    for t in part {
        if cancel.is_cancelled() {
            return Err(SnapshotError::Cancelled);
        }
        link_one(store, root, t)?;
    }
    Ok(())
}

/// Places one file of the tree at `root`: a link to its object, or its symlink.
fn link_one(store: &Store, root: &Path, t: &Taken) -> Result<(), SnapshotError> {
    let dest = root.join(&t.entry.path);
    match (t.entry.kind, &t.target) {
        (Kind::File { executable }, _) => store.link_object(&t.hash, executable, &dest),
        (Kind::Symlink, Some(target)) => std::os::unix::fs::symlink(target, &dest)
            .map_err(|source| SnapshotError::Io { path: dest, source }),
        (Kind::Symlink, None) => unreachable!("a symlink is taken with its target"),
    }
}

fn tree_entries(taken: &[Taken]) -> Vec<TreeEntry> {
    taken
        .iter()
        .map(|t| TreeEntry {
            path: t.entry.path.clone(),
            kind: match (t.entry.kind, &t.target) {
                (Kind::File { executable }, _) => TreeKind::File {
                    hash: t.hash.clone(),
                    executable,
                },
                (Kind::Symlink, target) => TreeKind::Symlink {
                    target: target.clone().unwrap_or_default(),
                },
            },
        })
        .collect()
}

/// The file list of the published snapshot `id`.
pub fn tree(cache: &Path, id: &str) -> Result<Vec<TreeEntry>, SnapshotError> {
    tree::read_tree(&tree::tree_path(cache, id))
}

/// The ids of the snapshots published in `cache`, most recently used first, at most
/// `limit`.
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

/// The published snapshot `id` (for `pikaci rerun`), if it is complete: every file
/// there with its recorded size. Its lease is held first, so it is not patched away.
pub fn open(cache: &Path, id: &str, cancel: &Cancel) -> Result<Snapshot, SnapshotError> {
    let valid = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let missing = || SnapshotError::Missing {
        id: id.to_string(),
        cache: cache.to_path_buf(),
    };
    if !valid {
        return Err(missing());
    }
    let _lock = lock::shared(cache, cancel)?;
    let (lease, complete) = lease_and_check(cache, id, cancel)?;
    let dir = Store::new(cache).snapshot_dir(id);
    if !dir.is_dir() {
        return Err(missing());
    }
    if !complete {
        return Err(SnapshotError::Incomplete {
            id: id.to_string(),
            dir,
        });
    }
    let files = tree::read_tree(&tree::tree_path(cache, id))?.len() as u64;
    Ok(Snapshot {
        id: id.to_string(),
        dir,
        files,
        reused: true,
        notes: Vec::new(),
        lease,
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

/// Identifies the file list: paths, kinds and content hashes.
fn manifest_digest(taken: &[Taken]) -> String {
    let mut hasher = Sha256::new();
    for Taken { entry, hash, .. } in taken {
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

fn write_index(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_with(path, bytes, CACHE_WRITE).map_err(io)
}

#[cfg(test)]
mod tests;
