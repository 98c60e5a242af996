//! The streams a sync sends: the tree with the contents the host lacks at their paths
//! and hard links to the host's `objects/` for the rest, built by one function for cold
//! and patch syncs.

use std::collections::HashSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::Diff;
use super::parts::parts;
use crate::cancel::Cancel;
use crate::snapshot::{self, TreeEntry, TreeKind};

/// Why packing stopped early: the run was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub(super) struct PackCancelled;

pub(super) fn nul_list<'p>(paths: impl Iterator<Item = &'p Path>) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for path in paths {
        out.extend_from_slice(path.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

/// A packed stream for the host, and what it carries.
pub(super) struct Packed<S> {
    pub stream: S,
    pub objects: u64,
    pub bytes: u64,
}

/// One entry of the tree stream, as decided for the whole stream at once; `path` is
/// under the tree's root.
pub(super) enum Item {
    /// The first entry of an object the host lacks: its contents at its path, then
    /// `objects/NAME`, a hard link to it.
    Content {
        path: PathBuf,
        hash: String,
        executable: bool,
        name: String,
    },
    /// A hard link to `objects/NAME`.
    Linked {
        path: PathBuf,
        name: String,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// A directory (mode 0755 until the host closes the tree), for a stream in parts.
    Dir(PathBuf),
}

impl Item {
    pub(super) fn path(&self) -> &Path {
        match self {
            Item::Content { path, .. }
            | Item::Linked { path, .. }
            | Item::Symlink { path, .. }
            | Item::Dir(path) => path,
        }
    }
}

/// The tree stream of both kinds of sync, so what a cold sync and a patch send cannot
/// differ: `entries`, unpacked on the host with `--skip-old-files`. The first entry of
/// each object the host lacks is a regular file (mode 0444, 0555 for `-x` objects)
/// followed by a hard link `objects/NAME` to it: the contents land where the tree needs
/// them and the store links them from there, so the host writes each content once and
/// links it once. Later entries of that object, and those of objects the host has, are
/// hard links to `objects/NAME`. A stream cut short leaves no partial object: the
/// `objects/` link follows the complete file. When another sync added the same object
/// first, its link is skipped and the tree keeps its own copy (same content).
pub(super) fn items(
    entries: impl IntoIterator<Item = TreeEntry>,
    host_lacks: &dyn Fn(&str) -> bool,
) -> Vec<Item> {
    let mut sent: HashSet<String> = HashSet::new();
    entries
        .into_iter()
        .map(|TreeEntry { path, kind }| match kind {
            TreeKind::File { hash, executable } => {
                let name = object_name(&hash, executable);
                if host_lacks(&name) && sent.insert(name.clone()) {
                    Item::Content {
                        path,
                        hash,
                        executable,
                        name,
                    }
                } else {
                    Item::Linked { path, name }
                }
            }
            TreeKind::Symlink { target } => Item::Symlink { path, target },
        })
        .collect()
}

/// Appends `items` under `root` to `tar`; returns the objects and bytes of contents
/// it carries.
pub(super) fn append_items<W: Write>(
    tar: &mut tar::Builder<W>,
    cache: &Path,
    items: &[Item],
    root: &Path,
    contents: Contents,
) -> std::io::Result<(u64, u64)> {
    let (mut objects, mut bytes) = (0u64, 0u64);
    for item in items {
        if let Contents::Read(cancel) = contents
            && cancel.is_cancelled()
        {
            return Err(std::io::Error::other(PackCancelled));
        }
        let path = root.join(item.path());
        match item {
            Item::Content {
                hash,
                executable,
                name,
                ..
            } => {
                let local = snapshot::object_path(cache, hash, *executable);
                bytes += append_file(tar, &local, *executable, &path, contents)?;
                objects += 1;
                let stored = Path::new("objects").join(name);
                append_link(tar, tar::EntryType::Link, &stored, &path)?;
            }
            Item::Linked { name, .. } => {
                let stored = Path::new("objects").join(name);
                append_link(tar, tar::EntryType::Link, &path, &stored)?;
            }
            Item::Symlink { target, .. } => {
                append_link(tar, tar::EntryType::Symlink, &path, target)?;
            }
            Item::Dir(_) => append_dir(tar, &path)?,
        }
    }
    Ok((objects, bytes))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    tar.append_data(&mut header, path, std::io::empty())
}

/// Where a stream's contents come from: the objects (reads that stop when the run is
/// cancelled), or for [`stream_len`] zeros of their sizes.
#[derive(Clone, Copy)]
pub(super) enum Contents<'a> {
    Read(&'a Cancel),
    Sizes,
}

/// Appends the object at `local` as a regular file at `path`; returns its size.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    local: &Path,
    executable: bool,
    path: &Path,
    contents: Contents,
) -> std::io::Result<u64> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(if executable { 0o555 } else { 0o444 });
    let size = match contents {
        Contents::Read(cancel) => {
            let file = std::fs::File::open(local)?;
            let size = file.metadata()?.len();
            h.set_size(size);
            let mut reader = Cancellable {
                inner: file,
                cancel,
            };
            tar.append_data(&mut h, path, &mut reader)?;
            size
        }
        Contents::Sizes => {
            let size = std::fs::metadata(local)?.len();
            h.set_size(size);
            tar.append_data(&mut h, path, std::io::repeat(0).take(size))?;
            size
        }
    };
    Ok(size)
}

/// A writer that only counts.
pub(super) struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends a hard link or a symlink at `path` pointing to `target`.
fn append_link<W: Write>(
    tar: &mut tar::Builder<W>,
    kind: tar::EntryType,
    path: &Path,
    target: &Path,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_entry_type(kind);
    if kind == tar::EntryType::Symlink {
        header.set_mode(0o777);
    }
    tar.append_link(&mut header, path, target)
}

pub(super) fn builder<W: Write>(out: W) -> tar::Builder<W> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar
}

/// A file read that stops when the run is cancelled (a large object takes long to
/// pack).
struct Cancellable<'a> {
    inner: std::fs::File,
    cancel: &'a Cancel,
}

impl std::io::Read for Cancellable<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other(PackCancelled));
        }
        self.inner.read(buf)
    }
}

/// The patch stream: a tar of `tmp/ID/tree.tar`, the changed entries under
/// `tmp/ID.tree/` (all their contents travel), and the lists of what to remove, open
/// and close, which the host applies before it unpacks the tree; in a file (it is small
/// and goes over the host's command channel, which needs its length).
pub(super) fn pack_patch(
    cache: &Path,
    diff: &Diff,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<Packed<std::fs::File>> {
    let root = PathBuf::from("tmp").join(format!("{id}.tree"));
    let mut tree = builder(tempfile::tempfile()?);
    let items = items(diff.changed.iter().map(|&entry| entry.clone()), &|_| true);
    let (objects, bytes) = append_items(&mut tree, cache, &items, &root, Contents::Read(cancel))?;
    let mut tree = tree.into_inner()?;
    let tree_len = tree.stream_position()?;
    tree.rewind()?;
    let base = PathBuf::from("tmp").join(id);
    let mut outer = builder(tempfile::tempfile()?);
    let mut h = tar::Header::new_gnu();
    h.set_size(tree_len);
    h.set_mode(0o444);
    outer.append_data(&mut h, base.join("tree.tar"), &mut tree)?;
    let lists = [
        (
            "remove",
            nul_list(diff.removed.iter().map(PathBuf::as_path)),
        ),
        ("open", nul_list(diff.open.iter().map(PathBuf::as_path))),
        ("close", nul_list(diff.close.iter().map(PathBuf::as_path))),
    ];
    for (name, data) in lists {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        outer.append_data(&mut h, base.join(name), data.as_slice())?;
    }
    let mut stream = outer.into_inner()?;
    stream.flush()?;
    stream.rewind()?;
    Ok(Packed {
        stream,
        objects,
        bytes,
    })
}

/// What a cold stream's producer reports when it is done.
pub(super) type Producer = std::thread::JoinHandle<std::io::Result<Packed<()>>>;

/// The cold stream: the whole tree under `tmp/ID/tree/`, with the contents of the
/// objects in `missing` (all of them when it is None: the host has none), in framed
/// parts ([`super::parts`]): each a line `ORDER LEN` and a tar of LEN bytes, and a line
/// `end` after the last, so a stream cut short at a part's border fails too. Returned
/// with its length (from the objects' sizes: a stream of known length can go over the
/// host's command channel). Written by a thread into a pipe, whose read end is
/// returned: the host unpacks while this machine still reads objects (a file first
/// would be a second full pass, with no overlap).
pub(super) fn pack_tree(
    cache: &Path,
    tree: Vec<TreeEntry>,
    missing: Option<HashSet<String>>,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<(std::fs::File, u64, Producer)> {
    let root = PathBuf::from("tmp").join(id).join("tree");
    let lacks = |name: &str| missing.as_ref().is_none_or(|m| m.contains(name));
    let parts = parts(items(tree, &lacks));
    // Each part's frame line, from its tar's length counted first.
    let mut lines = Vec::with_capacity(parts.len());
    let mut len = END.len() as u64;
    for part in &parts {
        let mut count = builder(Count(0));
        append_items(&mut count, cache, &part.items, &root, Contents::Sizes)?;
        let tar_len = count.into_inner()?.0;
        let line = format!("{} {tar_len}\n", part.order.word());
        len += line.len() as u64 + tar_len;
        lines.push(line);
    }
    let (reader, writer) = std::io::pipe()?;
    let (cache, cancel) = (cache.to_path_buf(), cancel.clone());
    let producer = std::thread::Builder::new()
        .name("pikaci-pack".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, writer);
            let (mut objects, mut bytes) = (0, 0);
            for (part, line) in parts.iter().zip(lines) {
                out.write_all(line.as_bytes())?;
                let mut tar = builder(&mut out);
                let read = Contents::Read(&cancel);
                let (o, b) = append_items(&mut tar, &cache, &part.items, &root, read)?;
                tar.into_inner()?;
                (objects, bytes) = (objects + o, bytes + b);
            }
            out.write_all(END.as_bytes())?;
            out.flush()?;
            Ok(Packed {
                stream: (),
                objects,
                bytes,
            })
        })?;
    Ok((
        std::fs::File::from(std::os::fd::OwnedFd::from(reader)),
        len,
        producer,
    ))
}

/// The line after the last part.
const END: &str = "end\n";

/// `HASH[-x]`: an object's name under `objects/`, as in the local store.
pub(super) fn object_name(hash: &str, executable: bool) -> String {
    format!("{hash}{}", if executable { "-x" } else { "" })
}

pub(super) fn unique_objects(tree: &[TreeEntry]) -> std::collections::BTreeSet<String> {
    tree.iter()
        .filter_map(|e| match &e.kind {
            TreeKind::File { hash, executable } => Some(object_name(hash, *executable)),
            TreeKind::Symlink { .. } => None,
        })
        .collect()
}
