//! Turning an older published tree into the new snapshot in place, as sync does on hosts:
//! a take that finds one changed file unlinks and links that one file instead of building
//! a tree of links for every file, so its cost grows with the change, not the workspace.
//!
//! Only a tree no run uses is taken (its lease held exclusive, [`super::lock`]), and
//! never the most recently used one, so `pikaci rerun` of the last run still finds its
//! snapshot. The tree is made unusable first (its records removed), moved under `tmp/`,
//! changed there and published under its new id, so no half-patched tree is ever used
//! and a take cut short leaves only a `tmp/` leftover for gc.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::files::Kind;
use super::lock::{self, Lease};
use super::store::Store;
use super::tree::{self, TreeEntry, TreeKind};
use super::{SnapshotError, Taken, complete};

/// How many of the most recently used trees are looked at as bases.
const CANDIDATES: usize = 4;

/// An older tree taken for patching: unusable under its old id, held until published.
pub struct Base {
    pub id: String,
    pub entries: Vec<TreeEntry>,
    _lease: Lease,
}

/// The newest tree, after the most recently used one, that no run uses and that is
/// complete; `None` when there is none (then a new tree is built).
pub fn take_base(cache: &Path, new_id: &str) -> Result<Option<Base>, SnapshotError> {
    let recent = super::recent_trees(cache, CANDIDATES + 1);
    for id in recent.iter().skip(1).filter(|id| *id != new_id) {
        let Some(lease) = lock::try_lease_exclusive(cache, id)? else {
            continue;
        };
        let dir = Store::new(cache).snapshot_dir(id);
        if !complete::is_complete(cache, &dir, id) {
            continue;
        }
        let entries = tree::read_tree(&tree::tree_path(cache, id))?;
        return Ok(Some(Base {
            id: id.clone(),
            entries,
            _lease: lease,
        }));
    }
    Ok(None)
}

/// What turns the base into the new tree: the old entries to remove (gone or changed)
/// and the new ones to add, both in path order.
pub struct Changes<'a> {
    pub remove: Vec<&'a Path>,
    pub add: Vec<usize>,
}

/// Both lists are sorted by path bytes (as listings and trees are).
pub fn diff<'a>(old: &'a [TreeEntry], new: &[Taken]) -> Changes<'a> {
    use std::cmp::Ordering::*;
    use std::os::unix::ffi::OsStrExt;
    let (mut i, mut j) = (0, 0);
    let mut changes = Changes {
        remove: Vec::new(),
        add: Vec::new(),
    };
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => o
                .path
                .as_os_str()
                .as_bytes()
                .cmp(n.entry.path.as_os_str().as_bytes()),
            (Some(_), None) => Less,
            (None, _) => Greater,
        };
        match order {
            Less => {
                changes.remove.push(&old[i].path);
                i += 1;
            }
            Greater => {
                changes.add.push(j);
                j += 1;
            }
            Equal => {
                if !same(&old[i], &new[j]) {
                    changes.remove.push(&old[i].path);
                    changes.add.push(j);
                }
                i += 1;
                j += 1;
            }
        }
    }
    changes
}

fn same(old: &TreeEntry, new: &Taken) -> bool {
    match (&old.kind, new.entry.kind) {
        (TreeKind::File { hash, executable }, Kind::File { executable: x }) => {
            *executable == x && *hash == new.hash
        }
        (TreeKind::Symlink { target }, Kind::Symlink) => new.target.as_ref() == Some(target),
        _ => false,
    }
}

/// Worth it when it touches at most half the tree: past that, linking a new tree is as
/// cheap and leaves the base for another take.
pub fn worth_it(changes: &Changes, files: usize) -> bool {
    changes.remove.len() + changes.add.len() <= files.max(1)
}

/// Makes the base unusable, moves it to `tmp/` and applies `changes` there. Returns the
/// patched tree and the directories to make read-only again once it is published.
pub fn apply(
    store: &Store,
    base: &Base,
    changes: &Changes,
    taken: &[Taken],
) -> Result<(tempfile::TempDir, PathBuf, Vec<PathBuf>), SnapshotError> {
    let cache = &store.root;
    let from = store.snapshot_dir(&base.id);
    complete::forget(cache, &base.id).map_err(io_err(&from))?;
    let tmp = store.new_tmp_dir()?;
    let root = tmp.path().join("tree");
    // Moving a directory rewrites its `..`: it needs write permission on it.
    set_mode(&from, 0o755)?;
    fs::rename(&from, &root).map_err(io_err(&from))?;
    let mut dirs = Opened::new(&root);
    for path in &changes.remove {
        let parent = path.parent().unwrap_or(Path::new(""));
        dirs.open(parent)?;
        let full = root.join(path);
        fs::remove_file(&full).map_err(io_err(&full))?;
    }
    dirs.remove_empty(&changes.remove)?;
    for &at in &changes.add {
        let t = &taken[at];
        let parent = t.entry.path.parent().unwrap_or(Path::new(""));
        dirs.make(parent)?;
        super::link_one(store, &root, t)?;
    }
    let close = dirs.into_closing();
    Ok((tmp, root, close))
}

/// The tree's directories opened for writing (made since or read-only before), by path
/// relative to the root ("" is the root itself).
struct Opened<'a> {
    root: &'a Path,
    open: BTreeSet<PathBuf>,
}

impl<'a> Opened<'a> {
    fn new(root: &'a Path) -> Opened<'a> {
        // The root was opened to move it.
        let open = BTreeSet::from([PathBuf::new()]);
        Opened { root, open }
    }

    fn open(&mut self, dir: &Path) -> Result<(), SnapshotError> {
        if !self.open.contains(dir) {
            set_mode(&self.root.join(dir), 0o755)?;
            self.open.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Makes `dir` and its missing parents, each opened.
    fn make(&mut self, dir: &Path) -> Result<(), SnapshotError> {
        if self.open.contains(dir) {
            return Ok(());
        }
        let full = self.root.join(dir);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_dir() => return self.open(dir),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SnapshotError::Io { path: full, source }),
        }
        self.make(dir.parent().unwrap_or(Path::new("")))?;
        fs::create_dir(&full).map_err(io_err(&full))?;
        self.open.insert(dir.to_path_buf());
        Ok(())
    }

    /// Removes the directories that removing `paths` left empty (a tree keeps none),
    /// deepest first.
    fn remove_empty(&mut self, paths: &[&Path]) -> Result<(), SnapshotError> {
        let mut parents: BTreeSet<&Path> = BTreeSet::new();
        for path in paths {
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                parents.insert(d);
                dir = d.parent();
            }
        }
        // Reverse path order visits a directory after everything inside it.
        for dir in parents.into_iter().rev() {
            let full = self.root.join(dir);
            let empty = fs::read_dir(&full).map_err(io_err(&full))?.next().is_none();
            if empty {
                self.open(dir.parent().unwrap_or(Path::new("")))?;
                fs::remove_dir(&full).map_err(io_err(&full))?;
                self.open.remove(dir);
            }
        }
        Ok(())
    }

    /// The opened directories but the root, whose mode publishing sets after its move.
    fn into_closing(self) -> Vec<PathBuf> {
        self.open
            .into_iter()
            .filter(|d| !d.as_os_str().is_empty())
            .collect()
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}
