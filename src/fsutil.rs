//! Small filesystem helpers shared by records, state and snapshots.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// Whether a write must reach the disk before it returns (it survives a crash of the
/// machine) or only be whole for every reader (temp file and rename, no fsync). A run
/// syncs its records when they are final; what is written on the way (a running job's
/// phases, caches that are checked before use) need not wait for the disk each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Synced,
    Atomic,
}

/// Writes `bytes` to `path` so that readers see either the old or the new content, never
/// a torn file: temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, bytes, Durability::Synced)
}

/// [`write_atomic`] without the fsyncs when `durability` is [`Durability::Atomic`].
pub fn write_with(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Synced {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Makes what was written to `paths` (files, or directories for the renames in them)
/// reach the disk, all at once: one thread each, so the filesystem commits them in one
/// journal transaction instead of one after the other (six fsyncs in a row cost 30 ms
/// here, together about one). A path that does not exist is skipped.
pub fn sync_paths(paths: &[&Path]) -> io::Result<()> {
    let sync = |path: &Path| match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    std::thread::scope(|scope| {
        let synced: Vec<_> = paths
            .iter()
            .map(|path| scope.spawn(move || sync(path)))
            .collect();
        synced
            .into_iter()
            .map(|t| t.join().expect("an fsync thread does not panic"))
            .collect()
    })
}

/// Serialises `value` as pretty JSON (with a trailing newline) and writes it atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_json_with(path, value, Durability::Synced)
}

/// [`write_json_atomic`] with the given durability.
pub fn write_json_with<T: Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_with(path, &bytes, durability)
}

/// Creates `path` and its parents, naming the path in the error.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// Below this many paths, [`stat_all`] stays on one thread: starting threads costs more.
const PARALLEL_STAT_FROM: usize = 2048;

/// What `read` makes of the `lstat` of each of `paths` (relative to `base`), in order.
/// Many paths are spread over a few threads: on a warm cache a stat is all kernel time,
/// which one core cannot go faster through, and git spreads its own stats the same way
/// (`core.preloadIndex`). `read` keeps what the caller needs, not the whole `Metadata`
/// (100,000 of those are 20 MB).
pub fn stat_all<P, T, F>(base: &Path, paths: &[P], read: F) -> Vec<T>
where
    P: AsRef<Path> + Sync,
    T: Send,
    F: Fn(io::Result<fs::Metadata>) -> T + Sync,
{
    let stat = |p: &P| read(fs::symlink_metadata(base.join(p)));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads == 1 || paths.len() < PARALLEL_STAT_FROM {
        return paths.iter().map(stat).collect();
    }
    let chunk = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = paths
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(stat).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("a stat thread does not panic"))
            .collect()
    })
}

/// The current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The last `max_lines` lines of `text`, for error messages quoting a tool's stderr.
pub fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_json_atomic(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&path, &serde_json::json!({"a": 2})).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\n  \"a\": 2\n}\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["x.json"]);
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
