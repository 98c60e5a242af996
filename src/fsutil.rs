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
            .try_for_each(|t| t.join().expect("an fsync thread does not panic"))
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
/// The share of paths a [`stat_all`] thread takes at a time.
const STAT_CHUNK: usize = 256;

/// The part of an `lstat` that pikaci uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lstat {
    pub kind: FileKind,
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Lstat {
    // The kernel's stat fields have other types on other architectures.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Lstat {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            _ => FileKind::Other,
        };
        let ns = |sec: i64, nsec: i64| sec as i128 * 1_000_000_000 + nsec as i128;
        Lstat {
            kind,
            mode: st.st_mode as u32,
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
        }
    }
}

/// lstat of paths relative to `base`, each through its open parent directory: a path
/// walk of one component per file instead of the whole path, a fifth less time per
/// stat here. Sorted paths share their parent with the one before, so each directory
/// is opened about once.
struct Lstatter<'a> {
    base: &'a Path,
    /// The open parent: its path's bytes, relative to `base`, and its fd.
    parent: Option<(Vec<u8>, rustix::fd::OwnedFd)>,
}

/// `rel` split at its last `/` (on bytes: `Path::parent` parses every component, a
/// tenth of a stat's time): the parent (`/` for a file at the root) and the name, or
/// `None` where there is no plain name.
fn split_parent(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
        Some(0) => (&rel[..1], &rel[1..]),
        Some(at) => (&rel[..at], &rel[at + 1..]),
        None => (&rel[..0], rel),
    };
    let plain = !name.is_empty() && name != b"." && name != b"..";
    plain.then_some((parent, name))
}

impl Lstatter<'_> {
    fn lstat(&mut self, rel: &Path) -> io::Result<Lstat> {
        use rustix::fs::{AtFlags, Mode, OFlags};
        use std::os::unix::ffi::OsStrExt;
        let Some((parent, name)) = split_parent(rel.as_os_str().as_bytes()) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let open = self.parent.as_ref().map(|(p, _)| p.as_slice());
        if open != Some(parent) {
            self.parent = None;
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let dir = self.base.join(std::ffi::OsStr::from_bytes(parent));
            let fd = rustix::fs::open(dir, flags, Mode::empty())?;
            self.parent = Some((parent.to_vec(), fd));
        }
        let (_, dir) = self.parent.as_ref().expect("opened above");
        let name = std::ffi::OsStr::from_bytes(name);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Lstat::of(&st))
    }
}

/// What `read` makes of the `lstat` of each of `paths` (relative to `base`), in order.
/// Many paths are spread over a few threads: on a warm cache a stat is all kernel time,
/// which one core cannot go faster through, and git spreads its own stats the same way
/// (`core.preloadIndex`). The threads take small shares in turn rather than one part
/// each, so none waits on a part whose thread another process (git, listing at the
/// same time) kept off its core. `read` keeps what the caller needs.
pub fn stat_all<P, T, F>(base: &Path, paths: &[P], read: F) -> Vec<T>
where
    P: AsRef<Path> + Sync,
    T: Send,
    F: Fn(io::Result<Lstat>) -> T + Sync,
{
    let stat_part = |part: &[P]| {
        let mut lstatter = Lstatter { base, parent: None };
        part.iter()
            .map(|p| read(lstatter.lstat(p.as_ref())))
            .collect::<Vec<_>>()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads == 1 || paths.len() < PARALLEL_STAT_FROM {
        return stat_part(paths);
    }
    let shares: Vec<&[P]> = paths.chunks(STAT_CHUNK).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let take_shares = || {
        let mut done = Vec::new();
        loop {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(share) = shares.get(at) else {
                return done;
            };
            done.push((at, stat_part(share)));
        }
    };
    let mut done = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(take_shares)).collect();
        let mut done = take_shares();
        for other in others {
            done.extend(other.join().expect("a stat thread does not panic"));
        }
        done
    });
    done.sort_unstable_by_key(|(at, _)| *at);
    done.into_iter().flat_map(|(_, share)| share).collect()
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
    fn stat_all_agrees_with_std_lstat_through_parent_dirs() {
        use std::os::unix::fs::{MetadataExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("top"), "1").unwrap();
        fs::write(dir.path().join("a/b/deep"), "22").unwrap();
        fs::write(dir.path().join("a/x"), "333").unwrap();
        symlink("b/deep", dir.path().join("a/link")).unwrap();
        let rel = [
            "a/b", "a/b/deep", "a/link", "a/x", "missing", "a/gone", "top", "a/x/no",
        ];
        // Enough paths for threads, in the order a sorted listing has them.
        let many: Vec<&str> = rel
            .iter()
            .cycle()
            .take(3 * PARALLEL_STAT_FROM)
            .copied()
            .collect();
        let ours = stat_all(dir.path(), &many, |m| {
            m.map(|m| (m.kind, m.size, m.ino, m.mode))
        });
        for (path, ours) in many.iter().zip(ours) {
            let theirs = fs::symlink_metadata(dir.path().join(path)).map(|m| {
                let t = m.file_type();
                let kind = match () {
                    _ if t.is_symlink() => FileKind::Symlink,
                    _ if t.is_dir() => FileKind::Dir,
                    _ if t.is_file() => FileKind::File,
                    _ => FileKind::Other,
                };
                (kind, m.size(), m.ino(), m.mode())
            });
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{path}"),
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{path}"),
                (a, b) => panic!("{path}: {a:?} vs {b:?}"),
            }
        }
        let absolute = dir.path().join("a/x");
        let sizes = stat_all(Path::new(""), &[absolute.as_path(), Path::new("")], |m| {
            m.ok().map(|m| m.size)
        });
        assert_eq!(sizes, [Some(3), None]);
        assert_eq!(
            split_parent(b"/x"),
            Some((b"/".as_slice(), b"x".as_slice()))
        );
        assert_eq!(
            split_parent(b"a/b/c"),
            Some((b"a/b".as_slice(), b"c".as_slice()))
        );
        assert_eq!(split_parent(b"c"), Some((b"".as_slice(), b"c".as_slice())));
        for odd in [b"".as_slice(), b"a/", b"a/..", b"."] {
            assert_eq!(split_parent(odd), None);
        }
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
