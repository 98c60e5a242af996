use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// An exclusive lock on a run's `lock` file, held for the run's lifetime. The kernel drops
/// it when the process dies, which is how a dead run is told from a live one.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(path: &Path) -> io::Result<RunLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is held by another pikaci process", path.display()),
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// True when a live process holds the lock at `path`.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = OpenOptions::new().write(true).open(path) else {
            return false;
        };
        matches!(file.try_lock(), Err(TryLockError::WouldBlock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_while_alive_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert!(!RunLock::is_held(&path));
        let lock = RunLock::acquire(&path).unwrap();
        assert!(RunLock::is_held(&path));
        assert_eq!(
            RunLock::acquire(&path).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(lock);
        assert!(!RunLock::is_held(&path));
    }
}
