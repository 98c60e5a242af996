//! `<cache>/lock`: taking or opening a snapshot holds it shared, `pikaci gc` exclusive,
//! so gc never removes a tree being built, an object a take is about to link, or a
//! snapshot a run is about to use. `<cache>/publish.lock` is held exclusive for the
//! short step that replaces a stale tree and publishes a new one, so two runs taking the
//! same snapshot never remove each other's. The kernel drops a lock with its process.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Duration;

use super::SnapshotError;
use crate::cancel::Cancel;

/// Held while it lives.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

fn open(cache: &Path, name: &str) -> Result<File, SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: cache.join(name),
        source,
    };
    crate::fsutil::create_dir_all(cache).map_err(io)?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(name))
        .map_err(io)
}

/// Takes `file`'s lock shared, polling every `poll` so a cancel still ends the wait.
fn wait_shared(
    file: &File,
    path: &Path,
    poll: Duration,
    cancel: &Cancel,
) -> Result<(), SnapshotError> {
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if cancel.is_cancelled() => {
                return Err(SnapshotError::Cancelled);
            }
            Err(TryLockError::WouldBlock) => std::thread::sleep(poll),
            Err(TryLockError::Error(source)) => {
                let path = path.to_path_buf();
                return Err(SnapshotError::Io { path, source });
            }
        }
    }
}

/// Takes `file`'s lock exclusive if no one holds it: false when someone does.
fn try_exclusive_on(file: &File, path: &Path) -> Result<bool, SnapshotError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(source)) => Err(SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Waits for a running gc to finish.
pub fn shared(cache: &Path, cancel: &Cancel) -> Result<CacheLock, SnapshotError> {
    let file = open(cache, "lock")?;
    wait_shared(
        &file,
        &cache.join("lock"),
        Duration::from_millis(50),
        cancel,
    )?;
    Ok(CacheLock { _file: file })
}

/// `None` when a run holds the cache (is taking or opening a snapshot).
pub fn try_exclusive(cache: &Path) -> Result<Option<CacheLock>, SnapshotError> {
    let file = open(cache, "lock")?;
    let had = try_exclusive_on(&file, &cache.join("lock"))?;
    Ok(had.then_some(CacheLock { _file: file }))
}

/// For publishing: short, so a plain blocking wait.
pub fn publishing(cache: &Path) -> Result<CacheLock, SnapshotError> {
    let file = open(cache, "publish.lock")?;
    file.lock().map_err(|source| SnapshotError::Io {
        path: cache.join("publish.lock"),
        source,
    })?;
    Ok(CacheLock { _file: file })
}

/// `<cache>/leases/<id>`, held shared by a run for as long as it uses the snapshot `id`,
/// and exclusive by a take that turns that tree into another ([`super::patch`]): so no
/// tree in use is ever changed.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

fn lease_file(cache: &Path, id: &str) -> Result<File, SnapshotError> {
    open(&cache.join("leases"), id)
}

/// Waits while the snapshot is being patched into another (a short step). The snapshot
/// may be gone once the lease is had.
pub fn lease(cache: &Path, id: &str, cancel: &Cancel) -> Result<Lease, SnapshotError> {
    let file = lease_file(cache, id)?;
    let path = cache.join("leases").join(id);
    wait_shared(&file, &path, Duration::from_millis(5), cancel)?;
    Ok(Lease { _file: file })
}

/// `None` when a run uses the snapshot `id` (or another take is patching it).
pub fn try_lease_exclusive(cache: &Path, id: &str) -> Result<Option<Lease>, SnapshotError> {
    let file = lease_file(cache, id)?;
    let had = try_exclusive_on(&file, &cache.join("leases").join(id))?;
    Ok(had.then_some(Lease { _file: file }))
}
