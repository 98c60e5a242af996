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
pub(super) struct Packed {
    pub stream: std::fs::File,
    pub objects: u64,
    pub bytes: u64,
}

/// The one stream of both kinds of sync, so what a cold sync and a patch send cannot
/// differ: the contents the host lacks under `tmp/ID/new/`, one per object name (the
/// same content executable and not is two objects), then `tmp/ID/tree.tar`, which puts
/// `entries` under `root` as hard links to those new copies or to `objects/`, then the
/// `extra` files under `tmp/ID/`.
fn pack(
    cache: &Path,
    entries: &[&TreeEntry],
    host_lacks: &dyn Fn(&str) -> bool,
    root: &Path,
    id: &str,
    extra: Vec<(&str, Vec<u8>)>,
    cancel: &Cancel,
) -> std::io::Result<Packed> {
    let base = PathBuf::from("tmp").join(id);
    let mut outer = tar::Builder::new(tempfile::tempfile()?);
    outer.mode(tar::HeaderMode::Deterministic);
    let mut links = tar::Builder::new(tempfile::tempfile()?);
    links.mode(tar::HeaderMode::Deterministic);
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut sent: HashSet<String> = HashSet::new();
    for entry in entries {
        if cancel.is_cancelled() {
            return Err(std::io::Error::other(PackCancelled));
        }
        let path = root.join(&entry.path);
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        match &entry.kind {
            TreeKind::File { hash, executable } => {
                let name = object_name(hash, *executable);
                let target = if host_lacks(&name) {
                    if sent.insert(name.clone()) {
                        let local = snapshot::object_path(cache, hash, *executable);
                        let file = std::fs::File::open(&local)?;
                        let mut h = tar::Header::new_gnu();
                        h.set_size(file.metadata()?.len());
                        h.set_mode(if *executable { 0o555 } else { 0o444 });
                        let mut reader = Cancellable {
                            inner: file,
                            cancel,
                        };
                        outer.append_data(&mut h, base.join("new").join(&name), &mut reader)?;
                        objects += 1;
                        bytes += h.size()?;
                    }
                    base.join("new").join(&name)
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
    let mut h = tar::Header::new_gnu();
    h.set_size(links_len);
    h.set_mode(0o444);
    outer.append_data(&mut h, base.join("tree.tar"), &mut links)?;
    for (name, data) in extra {
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
/// travel), and the lists of what to remove, open and close.
pub(super) fn pack_patch(
    cache: &Path,
    diff: &Diff,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<Packed> {
    let lists = vec![
        (
            "remove",
            nul_list(diff.removed.iter().map(PathBuf::as_path)),
        ),
        ("open", nul_list(diff.open.iter().map(PathBuf::as_path))),
        ("close", nul_list(diff.close.iter().map(PathBuf::as_path))),
    ];
    let root = PathBuf::from("tmp").join(format!("{id}.tree"));
    pack(cache, &diff.changed, &|_| true, &root, id, lists, cancel)
}

/// The cold stream: the whole tree under `tmp/ID/tree/`, with the objects in `missing`.
pub(super) fn pack_tree(
    cache: &Path,
    tree: &[TreeEntry],
    missing: &HashSet<String>,
    id: &str,
    cancel: &Cancel,
) -> std::io::Result<Packed> {
    let entries: Vec<&TreeEntry> = tree.iter().collect();
    let root = PathBuf::from("tmp").join(id).join("tree");
    pack(
        cache,
        &entries,
        &|name| missing.contains(name),
        &root,
        id,
        Vec::new(),
        cancel,
    )
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
