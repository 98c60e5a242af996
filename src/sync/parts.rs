//! The cold tree stream in parts, which the host unpacks side by side: creating 20,000
//! files is most of a cold sync's time, and a host makes them faster with several
//! `tar`s at once (docs/performance.md, sixth round).
//!
//! Two `tar`s that both make a missing parent are not safe, and a hard link needs its
//! target there first, so the parts come in an order: every directory first, alone;
//! then the parts unpacked at once; then alone the links to objects whose contents came
//! in another part.

use std::collections::{BTreeSet, HashMap};

use super::pack::Item;

/// At most this many parts unpacked at once.
const PARALLEL_PARTS: usize = 4;
/// A part unpacked alongside others has at least this many entries: below that, a
/// `tar` of its own costs more than it saves.
const PART_ENTRIES: usize = 1_000;

/// How the host unpacks a part: after every part before it is unpacked, or alongside
/// the parallel parts next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    Serial,
    Parallel,
}

impl Order {
    /// The word of the part's frame line (`ORDER LEN`), as RECEIVE reads it.
    pub(super) fn word(self) -> &'static str {
        match self {
            Order::Serial => "serial",
            Order::Parallel => "parallel",
        }
    }
}

pub(super) struct Part {
    pub order: Order,
    pub items: Vec<Item>,
}

/// `items` (in tree order) as the parts of the stream: one serial part for a small
/// tree; else the directories, contiguous runs of items unpacked at once, and the links
/// that must wait for another run's contents.
pub(super) fn parts(items: Vec<Item>) -> Vec<Part> {
    let count = (items.len() / PART_ENTRIES).min(PARALLEL_PARTS);
    if count <= 1 {
        return vec![Part {
            order: Order::Serial,
            items,
        }];
    }
    let dirs: BTreeSet<_> = items
        .iter()
        .flat_map(|item| item.path().ancestors().skip(1))
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.to_path_buf())
        .collect();
    let size = items.len().div_ceil(count);
    let mut runs: Vec<Vec<Item>> = (0..count).map(|_| Vec::with_capacity(size)).collect();
    let mut late = Vec::new();
    // The run that carries each object's contents.
    let mut home: HashMap<String, usize> = HashMap::new();
    for (n, item) in items.into_iter().enumerate() {
        let run = n / size;
        match &item {
            Item::Content { name, .. } => {
                home.insert(name.clone(), run);
            }
            Item::Linked { name, .. } if home.get(name).is_some_and(|&r| r != run) => {
                late.push(item);
                continue;
            }
            _ => {}
        }
        runs[run].push(item);
    }
    let mut out = vec![Part {
        order: Order::Serial,
        items: dirs.into_iter().map(Item::Dir).collect(),
    }];
    out.extend(runs.into_iter().map(|items| Part {
        order: Order::Parallel,
        items,
    }));
    if !late.is_empty() {
        out.push(Part {
            order: Order::Serial,
            items: late,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::Stdio;

    use super::*;
    use crate::cancel::Cancel;
    use crate::snapshot::{TreeEntry, TreeKind};
    use crate::sync::pack::items;
    use crate::transport::host_sh;

    /// `n` files in directories of 100, every seventh with the same contents, every
    /// fifth executable, and a symlink every hundred.
    fn entries(n: usize) -> Vec<TreeEntry> {
        (0..n)
            .map(|i| TreeEntry {
                path: PathBuf::from(format!("d{}/e{}/f{i}", i / 1000, i / 100)),
                kind: if i % 100 == 99 {
                    TreeKind::Symlink {
                        target: PathBuf::from("../f0"),
                    }
                } else {
                    TreeKind::File {
                        hash: format!("{:064}", if i % 7 == 0 { 7 } else { i }),
                        executable: i % 5 == 0,
                    }
                },
            })
            .collect()
    }

    /// What a part holds, by path.
    fn paths(part: &Part) -> Vec<PathBuf> {
        part.items.iter().map(|i| i.path().to_path_buf()).collect()
    }

    #[test]
    fn a_small_tree_is_one_serial_part() {
        let tree = entries(1_999);
        let parts = parts(items(tree, &|_| true));
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].order, Order::Serial);
        assert_eq!(parts[0].items.len(), 1_999);
    }

    /// Directories first, four parts unpacked at once, and after them the links whose
    /// contents another part carries; no part's link waits on a part beside it.
    #[test]
    fn a_large_tree_is_split_so_no_part_waits_on_another() {
        let tree = entries(4_500);
        let lacks = |name: &str| !name.starts_with(&format!("{:064}", 3));
        let parts = parts(items(tree.clone(), &lacks));
        let orders: Vec<Order> = parts.iter().map(|p| p.order).collect();
        use Order::{Parallel, Serial};
        assert_eq!(
            orders,
            [Serial, Parallel, Parallel, Parallel, Parallel, Serial]
        );
        let dirs = paths(&parts[0]);
        assert!(parts[0].items.iter().all(|i| matches!(i, Item::Dir(_))));
        assert_eq!(dirs.len(), 5 + 45, "d0..d4 and e0..e44");
        let mut sorted = dirs.clone();
        sorted.sort();
        assert_eq!(dirs, sorted, "parents before their children");
        let mut home = HashMap::new();
        for (n, part) in parts[1..5].iter().enumerate() {
            for item in &part.items {
                match item {
                    Item::Content { name, .. } => assert!(home.insert(name, n).is_none()),
                    Item::Linked { name, .. } => {
                        let from = home.get(name).copied();
                        assert!(from.is_none_or(|f| f == n), "{name} links across parts");
                    }
                    Item::Symlink { .. } => {}
                    Item::Dir(_) => panic!("a directory in a parallel part"),
                }
            }
        }
        let late = &parts[5].items;
        assert!(!late.is_empty());
        for item in late {
            let Item::Linked { name, .. } = item else {
                panic!("only links come last")
            };
            assert!(home.contains_key(name), "{name} came in a part");
        }
        let mut all: Vec<PathBuf> = parts[1..].iter().flat_map(paths).collect();
        all.sort();
        let mut want: Vec<PathBuf> = tree.iter().map(|e| e.path.clone()).collect();
        want.sort();
        assert_eq!(all, want, "every entry once");
    }

    /// A workspace of `n` small files, snapshotted; its cold stream and where each part
    /// ends in it.
    struct Stream {
        _workspace: tempfile::TempDir,
        _cache: tempfile::TempDir,
        /// The snapshot's tree here.
        dir: PathBuf,
        hex: String,
        bytes: Vec<u8>,
        ends: Vec<usize>,
    }

    fn stream(n: usize) -> Stream {
        let workspace = tempfile::tempdir().unwrap();
        for i in 0..n {
            let path = workspace.path().join(format!("d{}/f{i}", i / 500));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{}\n", i % 3000)).unwrap();
        }
        let cache = tempfile::tempdir().unwrap();
        let snap = crate::snapshot::take(workspace.path(), cache.path(), &[]).unwrap();
        let tree = crate::snapshot::tree(cache.path(), &snap.id).unwrap();
        let (mut read, len, producer) =
            super::super::pack::pack_tree(cache.path(), tree, None, "ID", &Cancel::new()).unwrap();
        let mut bytes = Vec::new();
        read.read_to_end(&mut bytes).unwrap();
        producer.join().unwrap().unwrap();
        assert_eq!(
            bytes.len() as u64,
            len,
            "the length announced is the length sent"
        );
        let mut ends = Vec::new();
        let mut at = 0;
        while let Some(newline) = bytes[at..].iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&bytes[at..at + newline]).unwrap();
            let Some((_, len)) = line.split_once(' ') else {
                assert_eq!(line, "end");
                break;
            };
            let len = len.parse::<usize>().unwrap();
            assert_eq!(
                len % 512,
                0,
                "a host without an exact head reads 512-byte blocks"
            );
            at += newline + 1 + len;
            ends.push(at);
        }
        assert_eq!(&bytes[at..], b"end\n");
        Stream {
            _workspace: workspace,
            _cache: cache,
            dir: snap.dir,
            hex: snap.id,
            bytes,
            ends,
        }
    }

    /// RECEIVE into `host`, with `path` first on PATH, given `stdin` (then closed).
    fn receive(host: &Path, hex: &str, path: Option<&Path>, stdin: &[u8]) -> std::process::Child {
        let mut command = host_sh(crate::sync::RECEIVE, "pikaci-sync")
            .arg(host)
            .arg(hex)
            .arg("ID")
            .command();
        if let Some(dir) = path {
            let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
            command.env("PATH", path);
        }
        std::fs::create_dir_all(host.join("leases")).unwrap();
        let mut child = command
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A RECEIVE that fails early stops reading: its status says so, not the pipe.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child
    }

    /// Where `tool` is on this PATH.
    fn on_path(tool: &str) -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    }

    fn left_in(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// A whole stream is the snapshot; one cut at any part's border, or before its
    /// `end`, publishes nothing and leaves nothing under `tmp/`.
    #[test]
    fn a_stream_cut_at_a_part_border_fails_and_leaves_nothing() {
        let s = stream(4_200);
        assert_eq!(s.ends.len(), 6, "directories, four parts, late links");
        let whole = s.bytes.len();
        for cut in s.ends.iter().copied().chain([whole]) {
            let host = tempfile::tempdir().unwrap();
            let child = receive(host.path(), &s.hex, None, &s.bytes[..cut]);
            let out = child.wait_with_output().unwrap();
            let published = host.path().join("snapshots").join(&s.hex);
            if cut == whole {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{stderr}");
                let want = crate::snapshot::nar_hash(&s.dir).unwrap();
                assert_eq!(crate::snapshot::nar_hash(&published).unwrap(), want);
            } else {
                assert!(!out.status.success(), "a stream cut at {cut} of {whole}");
                assert!(!published.exists(), "cut at {cut}: published");
            }
            let tmp = host.path().join("tmp");
            assert_eq!(left_in(&tmp), Vec::<PathBuf>::new(), "cut at {cut}");
        }
    }

    /// A host whose `head -c` reads ahead of its count (busybox's) takes the parts with
    /// dd, and the tree arrives whole.
    #[test]
    fn a_host_with_busybox_head_and_dd_takes_the_whole_stream() {
        let Some(busybox) = on_path("busybox") else {
            return;
        };
        let bin = tempfile::tempdir().unwrap();
        for tool in ["head", "dd"] {
            std::os::unix::fs::symlink(&busybox, bin.path().join(tool)).unwrap();
        }
        let s = stream(4_200);
        let host = tempfile::tempdir().unwrap();
        let child = receive(host.path(), &s.hex, Some(bin.path()), &s.bytes);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let published = host.path().join("snapshots").join(&s.hex);
        assert_eq!(
            crate::snapshot::nar_hash(&published).unwrap(),
            crate::snapshot::nar_hash(&s.dir).unwrap()
        );
    }

    /// A stream that fails while parts are unpacking ends their `tar`s before RECEIVE
    /// exits. The `tar` here unpacks the directories and then never ends on a part.
    #[test]
    fn a_failed_receive_leaves_no_tar_running() {
        use std::os::unix::fs::PermissionsExt;
        let s = stream(4_200);
        let real = on_path("tar").unwrap();
        let stubs = tempfile::tempdir().unwrap();
        let tar = stubs.path().join("tar");
        std::fs::write(
            &tar,
            format!(
                "#!/bin/sh\ncase $3 in */1.tar) exec {} \"$@\";; esac\n\
                 while :; do sleep 1; done\n",
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host = tempfile::tempdir().unwrap();
        // The directories and two parts, then the stream stops short.
        let cut = s.ends[2];
        let child = receive(host.path(), &s.hex, Some(stubs.path()), &s.bytes[..cut]);
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        let out = ended
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("RECEIVE still waits on its parts")
            .unwrap();
        assert!(!out.status.success());
        let marker = stubs.path().to_string_lossy().into_owned();
        let running: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .filter(|cmdline| cmdline.contains(&marker))
            .collect();
        assert_eq!(running, Vec::<String>::new(), "tars outlived RECEIVE");
        assert_eq!(left_in(&host.path().join("tmp")), Vec::<PathBuf>::new());
    }
}
