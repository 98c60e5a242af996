//! A published snapshot's file list, `<cache>/trees/<id>`: what workspace sync sends
//! without reading or hashing file contents again, and what a patch starts from. Its
//! mtime says when the snapshot was last used.
//!
//! Records, each ending in NUL: `f<TAB>HASH<NUL>PATH`, `x<TAB>HASH<NUL>PATH` (executable),
//! `l<TAB>TARGET<NUL>PATH` (symlink).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SnapshotError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeKind {
    File { hash: String, executable: bool },
    Symlink { target: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: PathBuf,
    pub kind: TreeKind,
}

pub fn tree_path(cache: &Path, id: &str) -> PathBuf {
    cache.join("trees").join(id)
}

/// Marks the snapshot `id` used now (its file list's mtime), so it is never the tree a
/// take patches next. A mark that cannot be set only makes it an older candidate.
pub fn touch(cache: &Path, id: &str) {
    let now = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        tree_path(cache, id),
        &now,
        rustix::fs::AtFlags::empty(),
    );
}

pub fn write_tree(path: &Path, entries: &[TreeEntry]) -> Result<(), SnapshotError> {
    let mut out = Vec::new();
    for entry in entries {
        let (tag, value): (&[u8], &[u8]) = match &entry.kind {
            TreeKind::File {
                hash,
                executable: false,
            } => (b"f", hash.as_bytes()),
            TreeKind::File {
                hash,
                executable: true,
            } => (b"x", hash.as_bytes()),
            TreeKind::Symlink { target } => (b"l", target.as_os_str().as_bytes()),
        };
        out.extend_from_slice(tag);
        out.push(b'\t');
        out.extend_from_slice(value);
        out.push(0);
        out.extend_from_slice(entry.path.as_os_str().as_bytes());
        out.push(0);
    }
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_with(path, &out, super::CACHE_WRITE).map_err(io)
}

pub fn read_tree(path: &Path) -> Result<Vec<TreeEntry>, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = || SnapshotError::Nar {
        path: path.to_path_buf(),
        detail: "corrupt tree manifest".into(),
    };
    let mut fields = bytes.split(|b| *b == 0);
    let mut entries = Vec::new();
    while let Some(head) = fields.next().filter(|h| !h.is_empty()) {
        let path = PathBuf::from(OsStr::from_bytes(fields.next().ok_or_else(bad)?));
        let (tag, value) = head.split_at_checked(2).ok_or_else(bad)?;
        let text = || String::from_utf8(value.to_vec()).map_err(|_| bad());
        let kind = match tag {
            b"f\t" => TreeKind::File {
                hash: text()?,
                executable: false,
            },
            b"x\t" => TreeKind::File {
                hash: text()?,
                executable: true,
            },
            b"l\t" => TreeKind::Symlink {
                target: PathBuf::from(OsStr::from_bytes(value)),
            },
            _ => return Err(bad()),
        };
        entries.push(TreeEntry { path, kind });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let entries = vec![
            TreeEntry {
                path: "a b/\tc".into(),
                kind: TreeKind::File {
                    hash: "ab".into(),
                    executable: true,
                },
            },
            TreeEntry {
                path: "l".into(),
                kind: TreeKind::Symlink {
                    target: "../x\ny".into(),
                },
            },
            TreeEntry {
                path: "e".into(),
                kind: TreeKind::File {
                    hash: "cd".into(),
                    executable: false,
                },
            },
        ];
        write_tree(&path, &entries).unwrap();
        assert_eq!(read_tree(&path).unwrap(), entries);
        std::fs::write(&path, b"q\tzz\0p\0").unwrap();
        assert!(read_tree(&path).is_err());
    }
}
