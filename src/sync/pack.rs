//! The streams a sync sends: contents the host lacks and the tree as hard links to
//! them or to the host's `objects/`, built by one function for cold and patch syncs.

use std::collections::HashSet;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use super::Diff;
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

/// The one stream of both kinds of sync, so what a cold sync and a patch send cannot
/// differ, written to `out`: `tmp/ID/tree.tar`, which puts `entries` under `root` as hard
/// links to new copies or to `objects/`, then the contents the host lacks under
/// `tmp/ID/new/`, one per object name (the same content executable and not is two
/// objects), then the `extra` files under `tmp/ID/`. The links come first: the host
/// unpacks the contents as they arrive and needs the links only at the end.
#[allow(clippy::too_many_arguments)]
fn pack<W: Write>(
    out: W,
    cache: &Path,
    entries: &[&TreeEntry],
    host_lacks: &dyn Fn(&str) -> bool,
    root: &Path,
    id: &str,
    extra: Vec<(&str, Vec<u8>)>,
    cancel: &Cancel,
) -> std::io::Result<Packed<W>> {
    let base = PathBuf::from("tmp").join(id);
    let mut links = tar::Builder::new(tempfile::tempfile()?);
    links.mode(tar::HeaderMode::Deterministic);
    // Object name, local path, executable: in the order the tree first links them.
    let mut to_send: Vec<(String, PathBuf, bool)> = Vec::new();
    let mut sent: HashSet<String> = HashSet::new();
    for entry in entries {
        let path = root.join(&entry.path);
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        match &entry.kind {
            TreeKind::File { hash, executable } => {
                let name = object_name(hash, *executable);
                let target = if host_lacks(&name) {
                    let target = base.join("new").join(&name);
                    if sent.insert(name.clone()) {
                        let local = snapshot::object_path(cache, hash, *executable);
                        to_send.push((name, local, *executable));
                    }
                    target
                } else {
                    Path::new("objects").join(&name)
                };
                header.set_entry_type(tar::EntryType::Link);
                links.append_link(&mut header, &path, &target)?;
            }
            TreeKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                links.append_link(&mut header, &path, target)?;
            }
        }
    }
    let mut links = links.into_inner()?;
    links.flush()?;
    let links_len = links.stream_position()?;
    links.rewind()?;
    let mut outer = tar::Builder::new(out);
    outer.mode(tar::HeaderMode::Deterministic);
    let mut h = tar::Header::new_gnu();
    h.set_size(links_len);
    h.set_mode(0o444);
    outer.append_data(&mut h, base.join("tree.tar"), &mut links)?;
    let (mut objects, mut bytes) = (0u64, 0u64);
    for (name, local, executable) in to_send {
        if cancel.is_cancelled() {
            return Err(std::io::Error::other(PackCancelled));
        }
        let file = std::fs::File::open(&local)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(file.metadata()?.len());
        h.set_mode(if executable { 0o555 } else { 0o444 });
        let mut reader = Cancellable {
            inner: file,
            cancel,
        };
        outer.append_data(&mut h, base.join("new").join(&name), &mut reader)?;
        objects += 1;
        bytes += h.size()?;
    }
    for (name, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        outer.append_data(&mut h, base.join(name), data.as_slice())?;
    }
    let mut stream = outer.into_inner()?;
    stream.flush()?;
    Ok(Packed {
        stream,
        objects,
        bytes,
    })
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

/// The patch stream: the changed entries under `tmp/ID.tree/` (all their contents
/// travel), and the lists of what to remove, open and close; in a file (it is small and
/// goes over the host's command channel, which needs its length).
pub(super) fn pack_patch(
    cache: &Path,
    diff: &Diff,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<Packed<std::fs::File>> {
    let lists = vec![
        (
            "remove",
            nul_list(diff.removed.iter().map(PathBuf::as_path)),
        ),
        ("open", nul_list(diff.open.iter().map(PathBuf::as_path))),
        ("close", nul_list(diff.close.iter().map(PathBuf::as_path))),
    ];
    let root = PathBuf::from("tmp").join(format!("{id}.tree"));
    let file = tempfile::tempfile()?;
    let mut packed = pack(
        file,
        cache,
        &diff.changed,
        &|_| true,
        &root,
        id,
        lists,
        cancel,
    )?;
    packed.stream.rewind()?;
    Ok(packed)
}

/// What a cold stream's producer reports when it is done.
pub(super) type Producer = std::thread::JoinHandle<std::io::Result<Packed<()>>>;

/// The cold stream: the whole tree under `tmp/ID/tree/`, with the objects in `missing`.
/// Written by a thread into a pipe, whose read end is returned: the host unpacks while
/// this machine still reads objects (a file first would be a second full pass, with no
/// overlap).
pub(super) fn pack_tree(
    cache: &Path,
    tree: Vec<TreeEntry>,
    missing: HashSet<String>,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<(std::fs::File, Producer)> {
    let (reader, writer) = std::io::pipe()?;
    let (cache, id, cancel) = (cache.to_path_buf(), id.to_string(), cancel.clone());
    let producer = std::thread::Builder::new()
        .name("pikaci-pack".into())
        .spawn(move || {
            let entries: Vec<&TreeEntry> = tree.iter().collect();
            let root = PathBuf::from("tmp").join(&id).join("tree");
            let lacks = |name: &str| missing.contains(name);
            let out = std::io::BufWriter::with_capacity(1 << 20, writer);
            let packed = pack(
                out,
                &cache,
                &entries,
                &lacks,
                &root,
                &id,
                Vec::new(),
                &cancel,
            )?;
            Ok(Packed {
                stream: (),
                objects: packed.objects,
                bytes: packed.bytes,
            })
        })?;
    Ok((
        std::fs::File::from(std::os::fd::OwnedFd::from(reader)),
        producer,
    ))
}

/// `xx/rest[-x]`: an object's name under `objects/`, as in the local store.
pub(super) fn object_name(hash: &str, executable: bool) -> String {
    format!(
        "{}/{}{}",
        &hash[..2],
        &hash[2..],
        if executable { "-x" } else { "" }
    )
}

pub(super) fn unique_objects(tree: &[TreeEntry]) -> std::collections::BTreeSet<String> {
    tree.iter()
        .filter_map(|e| match &e.kind {
            TreeKind::File { hash, executable } => Some(object_name(hash, *executable)),
            TreeKind::Symlink { .. } => None,
        })
        .collect()
}
