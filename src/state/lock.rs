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

    /// True when a live process holds the lock at `path`. Asked read-only, with a shared
    /// lock (which the holder's exclusive one refuses), so readers such as `status` and
    /// `serve` work on a state dir they may not write.
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }
}

/// A new run's directory, already locked: it is made under a hidden name (which listings
/// skip), locked, and renamed into place, so `gc` never sees it unlocked, and a rename
/// onto another run's directory (never empty) fails instead of sharing it.
pub fn create_run(state: &super::StateDir) -> io::Result<(super::RunDir, RunLock)> {
    let runs = state.runs();
    crate::fsutil::create_dir_all(&runs)?;
    let staging = tempfile::Builder::new().prefix(".new-").tempdir_in(&runs)?;
    let lock = RunLock::acquire(&staging.path().join("lock"))?;
    let staging = staging.keep();
    loop {
        let run = state.run(&super::new_run_id());
        match std::fs::rename(&staging, &run.path) {
            Ok(()) => return Ok((run, lock)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                ) => {}
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                let why = format!("cannot create {}: {e}", run.path.display());
                return Err(io::Error::new(e.kind(), why));
            }
        }
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
        // Not at once: a child another test's thread is spawning holds a copy of the
        // descriptor until it execs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while RunLock::is_held(&path) {
            assert!(
                std::time::Instant::now() < deadline,
                "still held after drop"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
