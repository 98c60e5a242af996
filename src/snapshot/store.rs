//! The content-addressed store under `<cache>`:
//! `objects/<hash>[-x]` hold file contents once (read-only; `-x` for executables,
//! because hard links share their mode), `snapshots/<id>/` are published trees of hard
//! links to objects, named by the digest of their file list, and `tmp/` holds trees being
//! built or patched. Publishing is a rename, so no half-built tree is seen.
//!
//! The objects share one directory: spread over the 256 `objects/<hh>/` of older
//! pikacis, the links a cold tree makes cost as much again as its files in a slow phase
//! of the disk, and one directory costs next to nothing more. gc removes what is left of
//! the older layout as its snapshots go.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::SnapshotError;
use crate::cancel::Cancel;

/// How often a file that changes while it is read is read again before the run fails.
const READ_ATTEMPTS: u32 = 3;

/// The stat data of a file as it was read: what the index records for its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
}

impl Stat {
    pub fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

/// A file read into the store: its content hash and the stat data of what was read.
#[derive(Clone, Debug)]
pub struct Added {
    pub hash: String,
    pub stat: Stat,
}

/// How often a link whose object is being replaced is tried.
const LINK_ATTEMPTS: u32 = 5;

pub struct Store {
    pub root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    pub fn object_path(&self, hash: &str, executable: bool) -> PathBuf {
        let suffix = if executable { "-x" } else { "" };
        self.root.join("objects").join(format!("{hash}{suffix}"))
    }

    /// True when the object is there with the size its content must have. A cheap check,
    /// done on every reuse; `pikaci gc --verify` checks the content itself.
    pub fn has_object(&self, hash: &str, executable: bool, size: u64) -> bool {
        fs::symlink_metadata(self.object_path(hash, executable))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Reads `source` once, hashing the very bytes it stores, and adds them to the store
    /// unless that content is there already. A file that changes while it is read (its
    /// size or timestamps differ before and after) is read again, a few times, then
    /// reported. `None` when the file is gone (deleted since it was listed).
    pub fn add_file(
        &self,
        source: &Path,
        executable: bool,
        cancel: &Cancel,
    ) -> Result<Option<Added>, SnapshotError> {
        for _ in 0..READ_ATTEMPTS {
            let Some((tmp, added, stable)) = self.read_into_tmp(source, cancel)? else {
                return Ok(None);
            };
            if !stable {
                continue;
            }
            let object = self.object_path(&added.hash, executable);
            if self.has_object(&added.hash, executable, added.stat.size) {
                return Ok(Some(added));
            }
            let mode = if executable { 0o555 } else { 0o444 };
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
                .map_err(io_err(tmp.path()))?;
            // A rename: replaces a damaged object, and a concurrent add of the same
            // content leaves one right copy either way.
            tmp.persist(&object).map_err(|e| SnapshotError::Io {
                path: object.clone(),
                source: e.error,
            })?;
            return Ok(Some(added));
        }
        Err(SnapshotError::KeptChanging {
            path: source.to_path_buf(),
            attempts: READ_ATTEMPTS,
        })
    }

    /// Copies `source` to a temporary file in `objects/` while hashing it; `stable` is
    /// false when the file changed during the copy.
    fn read_into_tmp(
        &self,
        source: &Path,
        cancel: &Cancel,
    ) -> Result<Option<(tempfile::NamedTempFile, Added, bool)>, SnapshotError> {
        let mut file = match fs::File::open(source) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source_err) => return Err(io_err(source)(source_err)),
        };
        let before = Stat::of(&file.metadata().map_err(io_err(source))?);
        let dir = self.root.join("objects");
        crate::fsutil::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".add-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut copied = 0u64;
        loop {
            if cancel.is_cancelled() {
                return Err(SnapshotError::Cancelled);
            }
            let n = file.read(&mut buf).map_err(io_err(source))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err(tmp.path()))?;
            copied += n as u64;
        }
        tmp.flush().map_err(io_err(tmp.path()))?;
        let after = Stat::of(&file.metadata().map_err(io_err(source))?);
        let stable = before == after && copied == after.size;
        let added = Added {
            hash: hex(&hasher.finalize()),
            stat: after,
        };
        Ok(Some((tmp, added, stable)))
    }

    pub fn new_tmp_dir(&self) -> Result<tempfile::TempDir, SnapshotError> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Places a stored object at `dest` as a hard link (a copy when the object has run out
    /// of links).
    pub fn link_object(
        &self,
        hash: &str,
        executable: bool,
        dest: &Path,
    ) -> Result<(), SnapshotError> {
        let object = self.object_path(hash, executable);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match fs::hard_link(&object, dest) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {
                    return fs::copy(&object, dest).map(|_| ()).map_err(io_err(dest));
                }
                // Linux's link() fails with ENOENT when the source name is being renamed
                // over (a concurrent take storing the same content, see add_file): the
                // name is there again at once.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && attempts < LINK_ATTEMPTS
                        && fs::symlink_metadata(&object).is_ok() => {}
                Err(source) => {
                    return Err(SnapshotError::Io {
                        path: object,
                        source,
                    });
                }
            }
        }
    }

    /// Publishes the tree at `built` as `snapshots/<id>`: renames it into place (while
    /// its directories are still writable: moving a directory to another parent rewrites
    /// its `..`, which needs write permission on it unless one is root), makes it
    /// read-only (every directory, or the root and `read_only` for a patched tree whose
    /// other directories stayed so), and writes its file list and completeness record
    /// last. A complete snapshot published meanwhile by another process wins and `built`
    /// is removed; an incomplete one (left by a killed gc or run) is replaced.
    pub fn publish(
        &self,
        built: &Path,
        id: &str,
        entries: &[super::TreeEntry],
        sizes: &[u64],
        read_only: Option<&[PathBuf]>,
    ) -> Result<PathBuf, SnapshotError> {
        let target = self.snapshot_dir(id);
        let parent = target.parent().unwrap_or(&self.root);
        crate::fsutil::create_dir_all(parent).map_err(io_err(parent))?;
        let _publishing = super::lock::publishing(&self.root)?;
        if super::complete::is_complete(&self.root, &target, id) {
            let _ = remove_tree(built);
            return Ok(target);
        }
        super::complete::forget(&self.root, id).map_err(io_err(&target))?;
        if fs::symlink_metadata(&target).is_ok() {
            remove_tree(&target).map_err(io_err(&target))?;
        }
        if let Err(source) = fs::rename(built, &target) {
            let _ = remove_tree(built);
            return Err(SnapshotError::Io {
                path: target,
                source,
            });
        }
        match read_only {
            None => set_dir_modes(&target, 0o555)?,
            Some(dirs) => {
                for dir in dirs.iter().map(|d| target.join(d)).chain([target.clone()]) {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555))
                        .map_err(io_err(&dir))?;
                }
            }
        }
        super::complete::write(&self.root, id, entries, sizes)?;
        super::complete::mark_checked(&self.root, id);
        Ok(target)
    }
}

/// `sha256-<base64>` → lowercase hex (records of older pikacis name snapshots by the SRI
/// form of their NAR hash; their trees are named by its hex).
pub fn sri_to_hex(sri: &str) -> Option<String> {
    let b64 = sri.strip_prefix("sha256-")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bytes.len() == 32).then(|| hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Recreates a symlink of the workspace in the tree being built.
pub fn copy_symlink(source: &Path, dest: &Path) -> Result<(), SnapshotError> {
    let target = fs::read_link(source).map_err(io_err(source))?;
    symlink(&target, dest).map_err(io_err(dest))
}

fn set_dir_modes(root: &Path, mode: u32) -> Result<(), SnapshotError> {
    // Children first, so a read-only parent never blocks changing a child.
    let dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .contents_first(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    for dir in dirs {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err(&dir))?;
    }
    Ok(())
}

pub fn remove_tree(path: &Path) -> io::Result<()> {
    crate::state::remove_tree(path)
}
