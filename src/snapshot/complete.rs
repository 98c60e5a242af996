//! The completeness record `<cache>/complete/<id>`: written last when a snapshot is
//! published (after its tree, its modes and its file list), removed first when gc drops
//! it. A snapshot is used only when its record is there and every file of the tree has
//! the recorded size, so a tree cut short by a killed gc, or an object truncated since,
//! is rebuilt instead of served.
//!
//! Format: a header `pikaci-complete 1 <n>`, then the size of each of the `n` regular
//! files of `trees/<id>`, in its order, one per line.
//!
//! The whole tree is checked once per boot: `checked/<boot-id>/<id>` marks a tree
//! found whole (or published) since the machine started. What leaves objects cut short
//! is a crash before the page cache reached the disk, and that is a new boot; within a
//! boot nothing pikaci runs can write the store (jobs see it through a read-only mount
//! or get a private copy), so a second lstat of every file on every run would buy
//! nothing but time. Damage done by hand within a boot is for `pikaci gc --verify`.

use std::fs;
use std::path::{Path, PathBuf};

use super::tree::{self, TreeEntry, TreeKind};
use super::{CACHE_WRITE, SnapshotError};

const HEADER: &str = "pikaci-complete 1";

pub fn record_path(cache: &Path, id: &str) -> PathBuf {
    cache.join("complete").join(id)
}

/// Writes the file list, then the record that makes the snapshot usable.
pub fn write(
    cache: &Path,
    id: &str,
    entries: &[TreeEntry],
    sizes: &[u64],
) -> Result<(), SnapshotError> {
    tree::write_tree(&tree::tree_path(cache, id), entries)?;
    let mut text = format!("{HEADER} {}\n", sizes.len());
    for size in sizes {
        text.push_str(&format!("{size}\n"));
    }
    let path = record_path(cache, id);
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    crate::fsutil::create_dir_all(path.parent().unwrap_or(cache)).map_err(io)?;
    crate::fsutil::write_with(&path, text.as_bytes(), CACHE_WRITE).map_err(io)
}

/// Makes the snapshot unusable (the first step of removing it).
pub fn forget(cache: &Path, id: &str) -> std::io::Result<()> {
    let marker = checked_marker(cache, id);
    let paths = [record_path(cache, id)]
        .into_iter()
        .chain(marker)
        .chain([tree::tree_path(cache, id)]);
    for path in paths {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn read_sizes(cache: &Path, id: &str) -> Option<Vec<u64>> {
    let text = fs::read_to_string(record_path(cache, id)).ok()?;
    let mut lines = text.lines();
    let count: usize = lines.next()?.strip_prefix(HEADER)?.trim().parse().ok()?;
    let sizes: Vec<u64> = lines.map(|l| l.parse().ok()).collect::<Option<_>>()?;
    (sizes.len() == count).then_some(sizes)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), `None` where there is none: then
/// every use checks the whole tree.
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        valid.then(|| id.to_string())
    })
    .as_deref()
}

/// Where this boot marks a tree found whole.
fn checked_marker(cache: &Path, id: &str) -> Option<PathBuf> {
    Some(cache.join("checked").join(boot_id()?).join(id))
}

/// Marks `snapshots/<id>` whole for the rest of this boot. A marker that cannot be
/// written only means the next use checks again.
pub fn mark_checked(cache: &Path, id: &str) {
    if let Some(marker) = checked_marker(cache, id) {
        let made = marker.parent().map(fs::create_dir_all);
        if made.is_none_or(|m| m.is_ok()) {
            let _ = fs::File::create(&marker);
        }
    }
}

/// Removes the markers of earlier boots (for gc): they vouch for nothing any more.
pub fn forget_earlier_boots(cache: &Path) -> std::io::Result<usize> {
    let Ok(boots) = fs::read_dir(cache.join("checked")) else {
        return Ok(0);
    };
    let mut removed = 0;
    for boot in boots.filter_map(Result::ok) {
        if Some(boot.file_name().to_string_lossy().as_ref()) != boot_id() {
            fs::remove_dir_all(boot.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// True when `snapshots/<id>` may be used: its record is there, and it was found
/// whole in this boot or is now ([`is_whole`]).
pub fn is_complete(cache: &Path, dir: &Path, id: &str) -> bool {
    if !record_path(cache, id).is_file() {
        return false;
    }
    if checked_marker(cache, id).is_some_and(|m| m.exists()) {
        return true;
    }
    let whole = is_whole(cache, dir, id);
    if whole {
        mark_checked(cache, id);
    }
    whole
}

/// True when `snapshots/<id>` is published whole: its record is there and every
/// file of its list is in the tree with the recorded size (one `lstat` per file, spread
/// over threads).
pub fn is_whole(cache: &Path, dir: &Path, id: &str) -> bool {
    let Some(sizes) = read_sizes(cache, id) else {
        return false;
    };
    let Ok(entries) = tree::read_tree(&tree::tree_path(cache, id)) else {
        return false;
    };
    let paths: Vec<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
    // A regular file's size, or `None` for a symlink; an error for anything else.
    let stats = crate::fsutil::stat_all(dir, &paths, |meta| match meta.map(|m| (m.kind, m.size)) {
        Ok((crate::fsutil::FileKind::File, size)) => Ok(Some(size)),
        Ok((crate::fsutil::FileKind::Symlink, _)) => Ok(None),
        _ => Err(()),
    });
    let mut sizes = sizes.into_iter();
    let all_there = entries
        .iter()
        .zip(stats)
        .all(|(entry, stat)| match entry.kind {
            TreeKind::File { .. } => {
                let size = sizes.next();
                stat.is_ok_and(|len| len.is_some() && len == size)
            }
            TreeKind::Symlink { .. } => stat == Ok(None),
        });
    all_there && sizes.next().is_none()
}
