//! When a take begins, on the clock that stamps the workspace's files. A file stamped
//! before then had its last change before the take read it, so the take's index may
//! vouch for it; one stamped at or after then may change again within the clock's grain,
//! unseen by its stat, and is hashed again by the next take (git's "racy clean" rule).
//!
//! File times come from the file system's clock: the kernel's coarse one, or a file
//! server's. Where the cache shares the workspace's file system (the default state dir
//! is inside the repository), a take reads that clock itself by stamping a file of the
//! cache, so a file edited before the clock's last tick (1 to 10 ms) is not racy for it;
//! an edit within that tick has the take's own stamp, and is. Elsewhere the take uses
//! the time of day less a margin, and a file edited within that margin is racy.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far the time of day may run ahead of the clock that stamps files.
const MARGIN_NS: i128 = 1_000_000_000;

/// The time from which a file's stamp makes it racy for a take beginning now.
pub fn racy_from_ns(cache: &Path, workspace: &Path) -> i128 {
    file_system_now(cache, workspace).unwrap_or_else(|| now_ns() - MARGIN_NS)
}

/// The stamp `<cache>/clock` gets now, when it is on the workspace's file system.
fn file_system_now(cache: &Path, workspace: &Path) -> Option<i128> {
    use rustix::fs::{Timespec, Timestamps, UTIME_NOW, fstat, futimens, stat};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("clock"))
        .ok()?;
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let times = Timestamps {
        last_access: now,
        last_modification: now,
    };
    futimens(&file, &times).ok()?;
    let stamped = fstat(&file).ok()?;
    if stat(workspace).ok()?.st_dev != stamped.st_dev {
        return None;
    }
    Some(i128::from(stamped.st_mtime) * 1_000_000_000 + i128::from(stamped.st_mtime_nsec))
}

pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
