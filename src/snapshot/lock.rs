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

/// Waits for a running gc to finish (polling, so a cancel still ends the wait).
pub fn shared(cache: &Path, cancel: &Cancel) -> Result<CacheLock, SnapshotError> {
    let file = open(cache, "lock")?;
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Ok(CacheLock { _file: file }),
            Err(TryLockError::WouldBlock) if cancel.is_cancelled() => {
                return Err(SnapshotError::Cancelled);
            }
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(50)),
            Err(TryLockError::Error(source)) => {
                return Err(SnapshotError::Io {
                    path: cache.join("lock"),
                    source,
                });
            }
        }
    }
}

/// `None` when a run holds the cache (is taking or opening a snapshot).
pub fn try_exclusive(cache: &Path) -> Result<Option<CacheLock>, SnapshotError> {
    let file = open(cache, "lock")?;
    match file.try_lock() {
        Ok(()) => Ok(Some(CacheLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(SnapshotError::Io {
            path: cache.join("lock"),
            source,
        }),
    }
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

/// Waits while the snapshot is being patched into another (a short step), polling so a
/// cancel still ends the wait. The snapshot may be gone once the lease is had.
pub fn lease(cache: &Path, id: &str, cancel: &Cancel) -> Result<Lease, SnapshotError> {
    let file = lease_file(cache, id)?;
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Ok(Lease { _file: file }),
            Err(TryLockError::WouldBlock) if cancel.is_cancelled() => {
                return Err(SnapshotError::Cancelled);
            }
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(5)),
            Err(TryLockError::Error(source)) => {
                return Err(SnapshotError::Io {
                    path: cache.join("leases").join(id),
                    source,
                });
            }
        }
    }
}

/// `None` when a run uses the snapshot `id` (or another take is patching it).
pub fn try_lease_exclusive(cache: &Path, id: &str) -> Result<Option<Lease>, SnapshotError> {
    let file = lease_file(cache, id)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Lease { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(SnapshotError::Io {
            path: cache.join("leases").join(id),
            source,
        }),
    }
}
