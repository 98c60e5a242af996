//! Which files a snapshot holds: in git, tracked + untracked-not-ignored; elsewhere every
//! file. Only regular files (with their executable bit) and symlinks; empty directories
//! are not kept, as git does not keep them either.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SnapshotError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File { executable: bool },
    Symlink,
}

/// One file of the workspace with the stat data the index compares.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Relative to the workspace.
    pub path: PathBuf,
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
}

pub fn list(workspace: &Path, exclude: &[PathBuf]) -> Result<Vec<Entry>, SnapshotError> {
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| p.strip_prefix(workspace).ok().map(Path::to_path_buf))
        .collect();
    let keep = |rel: &Path| {
        !rel.components().any(|c| c.as_os_str() == ".git")
            && !excluded.iter().any(|e| rel.starts_with(e))
    };
    let paths = match git_files(workspace)? {
        Some(paths) => paths,
        None => walk(workspace)?,
    };
    let mut entries = Vec::with_capacity(paths.len());
    for rel in paths.into_iter().filter(|p| keep(p)) {
        let full = workspace.join(&rel);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            // Tracked but deleted in the working tree: not part of what the user means.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SnapshotError::Io { path: full, source }),
        };
        let kind = if meta.file_type().is_symlink() {
            Kind::Symlink
        } else if meta.is_file() {
            Kind::File {
                executable: meta.permissions().mode() & 0o100 != 0,
            }
        } else {
            // A submodule checkout (git lists it as one path) or a socket: not snapshotted.
            continue;
        };
        entries.push(Entry {
            path: rel,
            kind,
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            ino: meta.ino(),
        });
    }
    entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(entries)
}

/// `None` when the workspace is not in a git work tree.
fn git_files(workspace: &Path) -> Result<Option<Vec<PathBuf>>, SnapshotError> {
    let args = [
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ];
    let stdout = match crate::git::git(workspace, &args) {
        Ok(stdout) => stdout,
        Err(e) if e.not_a_repository() => return Ok(None),
        Err(e) => return Err(SnapshotError::Git(e)),
    };
    Ok(Some(
        stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(OsStr::from_bytes(p)))
            .collect(),
    ))
}

fn walk(workspace: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut paths = Vec::new();
    let walker = walkdir::WalkDir::new(workspace)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for entry in walker {
        let entry = entry.map_err(|e| SnapshotError::Io {
            path: e
                .path()
                .map_or_else(|| workspace.to_path_buf(), Path::to_path_buf),
            source: e.into(),
        })?;
        if !entry.file_type().is_dir()
            && let Ok(rel) = entry.path().strip_prefix(workspace)
        {
            paths.push(rel.to_path_buf());
        }
    }
    Ok(paths)
}
