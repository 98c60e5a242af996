//! Which files a snapshot holds: in git, tracked + untracked-not-ignored, and the same of
//! every checked-out submodule (recursively); elsewhere every file. Only regular files
//! (with their executable bit) and symlinks; empty directories are not kept, as git does
//! not keep them either. A submodule that is not checked out is an empty directory in
//! git's working tree, so it is absent from the snapshot, with a note.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SnapshotError;
use super::store::Stat;

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

impl Entry {
    /// Takes the stat data of the content actually read (it may differ from the listing).
    pub fn set_stat(&mut self, stat: Stat) {
        self.size = stat.size;
        self.mtime_ns = stat.mtime_ns;
        self.ctime_ns = stat.ctime_ns;
        self.ino = stat.ino;
    }
}

/// What the listing keeps of one path's `lstat`.
#[derive(Clone, Copy)]
enum Found {
    Entry(Kind, Stat),
    Dir,
    Other,
}

impl Found {
    fn of(meta: crate::fsutil::Lstat) -> Found {
        use crate::fsutil::FileKind;
        let stat = Stat {
            size: meta.size,
            mtime_ns: meta.mtime_ns,
            ctime_ns: meta.ctime_ns,
            ino: meta.ino,
        };
        match meta.kind {
            FileKind::Symlink => Found::Entry(Kind::Symlink, stat),
            FileKind::File => {
                let executable = meta.mode & 0o100 != 0;
                Found::Entry(Kind::File { executable }, stat)
            }
            FileKind::Dir => Found::Dir,
            FileKind::Other => Found::Other,
        }
    }
}

/// The workspace's files, sorted by path bytes, and notes for the user.
pub struct Listing {
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
}

/// The workspace's paths as git (or, outside git, a walk) lists them, not yet stat'ed.
pub struct Paths {
    /// NUL-separated, as `git ls-files -z` prints them: kept as printed, since a take
    /// that finds nothing changed needs no path of its own (see [`Known::still`]).
    listed: Vec<u8>,
    in_git: bool,
    /// The excluded dirs, relative to the workspace.
    excluded: Vec<PathBuf>,
}

impl Paths {
    /// Whether the snapshot may hold `rel`: not in a `.git`, not in an excluded dir.
    fn keeps(&self, rel: &[u8]) -> bool {
        !in_dot_git(rel)
            && !self.excluded.iter().any(|dir| {
                let dir = dir.as_os_str().as_bytes();
                rel.strip_prefix(dir)
                    .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
            })
    }

    /// The paths the snapshot may hold, sorted by their bytes, each once.
    fn kept(&self) -> Vec<&[u8]> {
        let mut kept: Vec<&[u8]> = each_listed(&self.listed)
            .filter(|rel| self.keeps(rel))
            .collect();
        // git prints the untracked paths, then the tracked: two sorted runs, which a
        // stable sort merges in one pass.
        kept.sort();
        kept.dedup();
        kept
    }
}

/// Each path of NUL-separated `listed`. An untracked nested repository (listed as
/// `name/`) is left out, as `git add` would leave it out.
fn each_listed(listed: &[u8]) -> impl Iterator<Item = &[u8]> {
    listed
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty() && !p.ends_with(b"/"))
}

fn path_of(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(rel))
}

pub fn paths(workspace: &Path, exclude: &[PathBuf]) -> Result<Paths, SnapshotError> {
    // As components, so that `keeps` can compare bytes (no trailing `/`, no `.`).
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| p.strip_prefix(workspace).ok())
        .map(|rel| rel.components().collect())
        .collect();
    let (listed, in_git) = match git_files(workspace, &excluded)? {
        Some(listed) => (listed, true),
        None => (walk(workspace, &excluded)?, false),
    };
    Ok(Paths {
        listed,
        in_git,
        excluded,
    })
}

/// [`paths`] on a thread of its own, so that git lists while this process does other
/// work (see [`Known`]).
pub fn spawn_paths(
    workspace: &Path,
    exclude: &[PathBuf],
) -> std::thread::JoinHandle<Result<Paths, SnapshotError>> {
    let (workspace, exclude) = (workspace.to_path_buf(), exclude.to_vec());
    std::thread::spawn(move || paths(&workspace, &exclude))
}

/// The `lstat` of paths the previous take had, made while git lists (git's own
/// process on one core, these on the others): most of them are listed again.
pub struct Known<'a> {
    /// Sorted by path bytes; `None` where the lstat failed (it is made again, for the
    /// error).
    found: Vec<(&'a [u8], Option<Found>)>,
    /// Where the next lookup most likely is.
    next: std::cell::Cell<usize>,
}

impl<'a> Known<'a> {
    /// `paths` sorted by their bytes, as the index holds them.
    pub fn stat(workspace: &Path, paths: Vec<&'a [u8]>) -> Known<'a> {
        let rel: Vec<&Path> = paths
            .iter()
            .map(|p| Path::new(OsStr::from_bytes(p)))
            .collect();
        let found = crate::fsutil::stat_all(workspace, &rel, |meta| meta.ok().map(Found::of));
        Known {
            found: paths.into_iter().zip(found).collect(),
            next: Default::default(),
        }
    }

    #[cfg(test)]
    pub fn none() -> Known<'static> {
        Known {
            found: Vec::new(),
            next: Default::default(),
        }
    }

    /// Whether the workspace is still exactly the known paths: the listing holds them
    /// and nothing else, and `unchanged` (given each one's place among them, and what
    /// its lstat found) vouches for each.
    pub fn still(&self, listed: &Paths, unchanged: impl Fn(usize, Kind, &Stat) -> bool) -> bool {
        let kept = listed.kept();
        let same = |at: usize, rel: &[u8], (path, found): &(&[u8], Option<Found>)| {
            rel == *path
                && match found {
                    Some(Found::Entry(kind, stat)) => unchanged(at, *kind, stat),
                    _ => false,
                }
        };
        kept.len() == self.found.len()
            && (kept.iter().zip(&self.found).enumerate())
                .all(|(at, (rel, known))| same(at, rel, known))
    }

    fn get(&self, rel: &Path) -> Option<Found> {
        let rel = rel.as_os_str().as_bytes();
        let at = super::index::find_sorted(&self.found, &self.next, |(p, _)| p, rel)?;
        self.found[at].1
    }

    /// The lstat of each of `batch`: known, or made now.
    fn stat_all(&self, workspace: &Path, batch: &[PathBuf]) -> Vec<std::io::Result<Found>> {
        let known: Vec<Option<Found>> = batch.iter().map(|p| self.get(p)).collect();
        let unknown: Vec<&PathBuf> = batch
            .iter()
            .zip(&known)
            .filter_map(|(p, k)| k.is_none().then_some(p))
            .collect();
        let mut fresh =
            crate::fsutil::stat_all(workspace, &unknown, |meta| meta.map(Found::of)).into_iter();
        known
            .into_iter()
            .map(|k| match k {
                Some(found) => Ok(found),
                None => fresh.next().expect("one fresh lstat per unknown path"),
            })
            .collect()
    }
}

pub fn list(workspace: &Path, listed: &Paths, known: &Known) -> Result<Listing, SnapshotError> {
    let mut pending: Vec<PathBuf> = each_listed(&listed.listed).map(path_of).collect();
    let keep = |rel: &Path| listed.keeps(rel.as_os_str().as_bytes());
    let mut listing = Listing {
        entries: Vec::with_capacity(pending.len()),
        notes: Vec::new(),
    };
    while !pending.is_empty() {
        let batch: Vec<PathBuf> = std::mem::take(&mut pending)
            .into_iter()
            .filter(|rel| keep(rel))
            .collect();
        let stats = known.stat_all(workspace, &batch);
        for (rel, found) in batch.into_iter().zip(stats) {
            // Joined only where needed: 20,000 joins are a few ms of a warm take.
            let full = || workspace.join(&rel);
            let (kind, stat) = match found {
                Ok(Found::Entry(kind, stat)) => (kind, stat),
                // git lists a submodule as one path, its directory: its files are the
                // next batch.
                Ok(Found::Dir) if listed.in_git => {
                    let full = full();
                    let checked_out = full.join(".git").exists();
                    match checked_out.then(|| git_files(&full, &[])).transpose()? {
                        Some(Some(inside)) => {
                            pending.extend(each_listed(&inside).map(|p| rel.join(path_of(p))))
                        }
                        _ => listing.notes.push(format!(
                            "submodule {} is not checked out: it is empty in the snapshot \
                             (run `git submodule update --init`)",
                            rel.display()
                        )),
                    }
                    continue;
                }
                // Sockets, fifos and devices are not snapshotted.
                Ok(Found::Dir | Found::Other) => continue,
                // Tracked but deleted in the working tree: not part of what the user means.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(SnapshotError::Io {
                        path: full(),
                        source,
                    });
                }
            };
            listing.entries.push(Entry {
                path: rel,
                kind,
                size: stat.size,
                mtime_ns: stat.mtime_ns,
                ctime_ns: stat.ctime_ns,
                ino: stat.ino,
            });
        }
    }
    listing.entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    listing.entries.dedup_by(|a, b| a.path == b.path);
    Ok(listing)
}

/// Whether `rel` is `.git` or inside one (on bytes: iterating components for each of
/// 20,000 paths shows in a warm take).
fn in_dot_git(rel: &[u8]) -> bool {
    rel.split(|b| *b == b'/').any(|part| part == b".git")
}

/// The paths git lists in `dir`, NUL-separated; `None` when `dir` is not in a git work
/// tree.
fn git_files(dir: &Path, excluded: &[PathBuf]) -> Result<Option<Vec<u8>>, SnapshotError> {
    let args = ls_files_args(excluded);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match crate::git::git(dir, &args) {
        Ok(stdout) => Ok(Some(stdout)),
        Err(e) if e.not_a_repository() => Ok(None),
        Err(e) => Err(SnapshotError::Git(e)),
    }
}

/// `git ls-files` of the workspace's files, tracked and untracked but not ignored. The
/// excluded dirs (the state dir, when it is inside) are pathspec exclusions, so git never
/// walks them: a state dir of kept snapshots holds many times the workspace's files.
fn ls_files_args(excluded: &[PathBuf]) -> Vec<String> {
    let mut args: Vec<String> = [
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]
    .map(String::from)
    .into();
    // A path that is not UTF-8 is left to the filter in `list`.
    let dirs = excluded
        .iter()
        .filter_map(|dir| dir.to_str())
        .filter(|dir| !dir.is_empty());
    args.extend(dirs.map(|dir| format!(":(exclude,literal){dir}")));
    args
}

/// Every file under `workspace`, NUL-separated as git lists them.
fn walk(workspace: &Path, excluded: &[PathBuf]) -> Result<Vec<u8>, SnapshotError> {
    let mut paths = Vec::new();
    let walker = walkdir::WalkDir::new(workspace)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(workspace).unwrap_or(e.path());
            e.file_name() != ".git" && !excluded.iter().any(|x| rel.starts_with(x))
        });
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
            paths.extend_from_slice(rel.as_os_str().as_bytes());
            paths.push(0);
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dot_git_itself_and_what_is_inside_it_is_left_out() {
        for inside in [".git", ".git/config", "sub/.git", "sub/.git/HEAD"] {
            assert!(in_dot_git(inside.as_bytes()), "{inside}");
        }
        for outside in [".gitignore", "a.git/x", "sub/.github/ci.yml", "x/git"] {
            assert!(!in_dot_git(outside.as_bytes()), "{outside}");
        }
    }

    #[test]
    fn ls_files_leaves_excluded_dirs_to_git() {
        let args = ls_files_args(&[".pikaci".into(), "build/state *".into(), "".into()]);
        insta::assert_snapshot!(args.join(" "), @"ls-files -z --cached --others --exclude-standard :(exclude,literal).pikaci :(exclude,literal)build/state *");
    }
}
