//! `pikaci gc` on an SSH host (pikaci's work dir there): leases of live syncs and runs
//! are respected, what no kept run needs is collected, and a work dir shared by several
//! state dirs keeps what the others claim.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use pikaci::argv::Argv;
use pikaci::cancel::Cancel;
use pikaci::snapshot;
use pikaci::sync::{lease, sync};
use pikaci::transport::{Local, Ssh, Transport, TransportError};

use crate::harness::{Repo, own_store_host, own_store_ssh};
use crate::sync::{host_hash, soon};

/// The guest host of a test: a loopback SSH host with a Nix store of its own
/// (scripts/testbed/hosts.sh), as a remote host is, or this machine.
#[allow(clippy::large_enum_variant)] // one per test; the SSH transport is the common case
enum Host {
    Ssh(Ssh),
    Local,
}

impl Host {
    fn ssh() -> Option<Host> {
        let ssh = Ssh::new(own_store_ssh(0)?).unwrap();
        ssh.connect(&Cancel::new()).unwrap();
        Some(Host::Ssh(ssh))
    }

    fn transport(&self) -> &dyn Transport {
        match self {
            Host::Ssh(ssh) => ssh,
            Host::Local => &Local,
        }
    }

    /// A repository whose config has a microVM job on this host (so gc visits the
    /// host) and a host job `h` that runs locally (so runs are recorded quickly).
    fn repo(&self, work: &Path) -> Repo {
        let host = match self {
            Host::Ssh(_) => {
                let options = own_store_ssh(0).unwrap();
                format!(
                    "host = \"{host}\"\n\n[ssh]\nidentity-file = \"{key}\"\n\
                     known-hosts-file = \"{known}\"\n",
                    host = own_store_host(0).unwrap(),
                    key = options.identity.as_ref().unwrap().display(),
                    known = options.known_hosts.as_ref().unwrap().display(),
                )
            }
            Host::Local => "host = \"local\"\n".to_string(),
        };
        Repo::new(&format!(
            "[defaults]\nwork-dir = \"{work}\"\n{host}\n\
             [backends.microvm]\nrunner = \"/nonexistent#runner\"\n\n\
             [jobs.h]\nbackend = \"host\"\ncommand = \"true\"\n\n\
             [jobs.m]\nbackend = \"microvm\"\ncommand = \"true\"\n",
            work = work.display(),
        ))
    }
}

fn gc(repo: &Repo, keep: &str) -> String {
    let gc = repo.pikaci(&["gc", "--keep", keep]);
    gc.expect(0);
    gc.stdout()
}

/// Syncs the snapshot of `files` taken in `cache` to `work`; returns its hex.
fn synced(ssh: &dyn Transport, cache: &Path, work: &Path, files: &[(&str, &str)]) -> String {
    let ws = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(ws.path().join(name), content).unwrap();
    }
    let snap = snapshot::take(ws.path(), cache, &[]).unwrap();
    sync(ssh, cache, &snap.id, work, soon(), &Cancel::new()).unwrap();
    snap.id.clone()
}

/// Regular files under `dir` with one link: contents no tree uses.
fn unlinked_objects(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    walk_files(dir)
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().nlink() == 1)
        .collect()
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(walk_files(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

/// Finding 8: `pikaci gc --keep N` collects the host's snapshots and objects that no
/// kept run needs, keeps those of kept runs, leased ones, and other owners' claims.
fn check_collection(host: &Host) {
    let work = tempfile::tempdir().unwrap();
    let repo = host.repo(work.path());
    let ssh = host.transport();
    let cache = repo.state().join("cache");
    // A recorded run: its snapshot is what `--keep 1` keeps.
    repo.pikaci(&["run", "h"]).expect(0);
    let run = repo.read_json(&repo.latest_run().join("run.json"));
    let kept = run["snapshot"]["id"].as_str().unwrap().to_string();
    sync(ssh, &cache, &kept, work.path(), soon(), &Cancel::new()).unwrap();
    // Leased while the next are synced, so none is taken as a base to patch.
    let hold = |hex: &str| lease(ssh, work.path(), hex, soon(), &Cancel::new()).unwrap();
    let kept_lease = hold(&kept);
    // Two snapshots no run recorded, the second leased (a run uses it).
    let old = synced(ssh, &cache, work.path(), &[("big", "version one\n")]);
    let old_lease = hold(&old);
    let newer = synced(ssh, &cache, work.path(), &[("big", "version two\n")]);
    drop((kept_lease, old_lease));
    let leased = hold(&newer);
    // Another state dir sharing the host dir.
    let elsewhere = tempfile::tempdir().unwrap();
    let theirs = synced(ssh, elsewhere.path(), work.path(), &[("theirs", "3\n")]);
    let snapshots = work.path().join("snapshots");
    for hex in [&kept, &old, &newer, &theirs] {
        assert!(snapshots.join(hex).is_dir(), "synced: {hex}");
    }

    // What an older pikaci left: a fan-out directory, with an object no tree links.
    let legacy = work.path().join("objects/ab");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("c".repeat(62)), "old\n").unwrap();

    let out = gc(&repo, "1");
    let host_line = out.lines().find(|l| l.starts_with("host ")).unwrap_or("");
    assert!(host_line.contains(", 1 snapshot(s)"), "{out}");
    assert!(
        !legacy.exists(),
        "the older layout's empty directory: {out}"
    );
    assert!(!snapshots.join(&old).exists(), "no run needs it: {out}");
    assert!(snapshots.join(&kept).is_dir(), "the kept run's snapshot");
    assert!(snapshots.join(&newer).is_dir(), "leased");
    assert!(
        snapshots.join(&theirs).is_dir(),
        "claimed by another state dir"
    );
    let objects = work.path().join("objects");
    assert_eq!(unlinked_objects(&objects), Vec::<PathBuf>::new(), "{out}");

    drop(leased);
    let out = gc(&repo, "0");
    for hex in [&kept, &newer] {
        assert!(!snapshots.join(hex).exists(), "{hex}: {out}");
    }
    assert!(
        snapshots.join(&theirs).is_dir(),
        "claimed by another state dir"
    );
    assert_eq!(unlinked_objects(&objects), Vec::<PathBuf>::new(), "{out}");
    assert_eq!(walk_files(&objects).len(), 1, "only the other's object");
    if let Some(hash) = host_hash(ssh, &snapshots.join(&theirs)) {
        assert!(hash.starts_with("sha256-"), "{hash}");
    }
}

#[test]
fn gc_collects_host_snapshots_and_objects_no_kept_run_needs_over_ssh() {
    let Some(host) = Host::ssh() else { return };
    check_collection(&host);
}

#[test]
fn gc_collects_host_snapshots_and_objects_no_kept_run_needs_locally() {
    check_collection(&Host::Local);
}

/// A transport that stops before it sends a stream (the patch), until told to go on.
struct Paused<'a> {
    inner: &'a dyn Transport,
    reached: Sender<()>,
    go: Mutex<Receiver<()>>,
}

impl Transport for Paused<'_> {
    fn host(&self) -> String {
        self.inner.host()
    }
    fn command(&self, argv: &Argv) -> std::process::Command {
        self.inner.command(argv)
    }
    fn is_connection_failure(&self, status: &std::process::ExitStatus) -> bool {
        self.inner.is_connection_failure(status)
    }
    fn run_file(
        &self,
        argv: &Argv,
        stdin: std::fs::File,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<pikaci::transport::Output, TransportError> {
        self.reached.send(()).unwrap();
        self.go.lock().unwrap().recv().unwrap();
        self.inner.run_file(argv, stdin, deadline, cancel)
    }
}

/// Finding 4: gc while a sync patches an old tree (its temporary tree is hours old, as
/// `mv` keeps the mtime) leaves that tree alone; the sync completes.
fn check_gc_during_a_patch(host: &Host) {
    let work = tempfile::tempdir().unwrap();
    let repo = host.repo(work.path());
    let ssh = host.transport();
    let cache = tempfile::tempdir().unwrap();
    synced(ssh, cache.path(), work.path(), FIRST);
    let next = changed(cache.path());
    let stats = sync_paused_before_its_stream(ssh, cache.path(), &next.id, work.path(), || {
        let trees: Vec<PathBuf> = std::fs::read_dir(work.path().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".tree"))
            .collect();
        assert_eq!(trees.len(), 1, "the tree taken for the patch: {trees:?}");
        // A patch that has run for long, or a tree that kept its old mtime.
        let aged = std::process::Command::new("touch")
            .args(["-d", "3 hours ago"])
            .arg(&trees[0])
            .status()
            .unwrap();
        assert!(aged.success());
        let out = gc(&repo, "0");
        assert!(
            trees[0].is_dir(),
            "gc removed the tree being patched: {out}"
        );
    });
    assert!(stats.patched_from.is_some(), "{stats:?}");
    if let Some(hash) = host_hash(ssh, &stats.dir) {
        assert_eq!(hash, snapshot::nar_hash(&next.dir).unwrap());
    }
    assert_tmp_empty_after_gc(&repo, work.path());
}

/// The first snapshot of the gc-during-a-sync tests, and the one after it: `a` changed.
const FIRST: &[(&str, &str)] = &[("a", "1\n"), ("b", "2\n")];

fn changed(cache: &Path) -> snapshot::Snapshot {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a"), "changed\n").unwrap();
    std::fs::write(ws.path().join("b"), "2\n").unwrap();
    snapshot::take(ws.path(), cache, &[]).unwrap()
}

/// Syncs `id` through [`Paused`], runs `meanwhile` while the sync waits before its
/// stream, then lets it finish.
fn sync_paused_before_its_stream(
    ssh: &dyn Transport,
    cache: &Path,
    id: &str,
    work: &Path,
    meanwhile: impl FnOnce(),
) -> pikaci::sync::SyncStats {
    let (reached_tx, reached) = channel();
    let (go, go_rx) = channel();
    let paused = Paused {
        inner: ssh,
        reached: reached_tx,
        go: Mutex::new(go_rx),
    };
    std::thread::scope(|s| {
        // Dropped if `meanwhile` fails an assertion, so the paused sync ends too.
        let go = go;
        let syncing = s.spawn(|| sync(&paused, cache, id, work, soon(), &Cancel::new()));
        reached.recv().unwrap();
        meanwhile();
        go.send(()).unwrap();
        syncing.join().unwrap().unwrap_or_else(|e| {
            panic!("the sync failed: {}", pikaci::error::chain(&e));
        })
    })
}

fn assert_tmp_empty_after_gc(repo: &Repo, work: &Path) {
    gc(repo, "0");
    let left = std::fs::read_dir(work.join("tmp")).unwrap().count();
    assert_eq!(left, 0, "nothing left in tmp/ once the sync is over");
}

#[test]
fn gc_during_a_patch_keeps_the_tree_being_patched_over_ssh() {
    let Some(host) = Host::ssh() else { return };
    check_gc_during_a_patch(&host);
}

#[test]
fn gc_during_a_patch_keeps_the_tree_being_patched_locally() {
    check_gc_during_a_patch(&Host::Local);
}

/// gc on the host between a cold sync's MISSING and its stream, after the tree that
/// linked the objects MISSING found has gone: those objects stay (the query holds the
/// shared `syncs` lease until the stream is done), and the sync completes.
fn check_gc_during_a_cold_sync(host: &Host) {
    let work = tempfile::tempdir().unwrap();
    let repo = host.repo(work.path());
    let ssh = host.transport();
    let cache = tempfile::tempdir().unwrap();
    let first = synced(ssh, cache.path(), work.path(), FIRST);
    let next = changed(cache.path());
    // Leased, so the next sync cannot patch it: a fresh tree, with MISSING.
    let first_lease = lease(ssh, work.path(), &first, soon(), &Cancel::new()).unwrap();
    let stats = sync_paused_before_its_stream(ssh, cache.path(), &next.id, work.path(), || {
        // The first tree unleased and unclaimed (its owner's state dir forgotten): gc
        // removes it, and its objects would have no tree left.
        drop(first_lease);
        for owner in std::fs::read_dir(work.path().join("owners")).unwrap() {
            let _ = std::fs::remove_file(owner.unwrap().path().join(&first));
        }
        let out = gc(&repo, "0");
        let snapshots = work.path().join("snapshots");
        assert!(!snapshots.join(&first).exists(), "the old tree went: {out}");
        assert!(out.contains("syncs in flight"), "{out}");
    });
    assert_eq!(
        (
            stats.patched_from.as_deref(),
            stats.round_trips,
            stats.objects_sent
        ),
        (None, 3, 1),
        "query, missing objects (b is there), stream of a"
    );
    if let Some(hash) = host_hash(ssh, &stats.dir) {
        assert_eq!(hash, snapshot::nar_hash(&next.dir).unwrap());
    }
    assert_tmp_empty_after_gc(&repo, work.path());
}

#[test]
fn gc_during_a_cold_sync_keeps_the_objects_it_counts_on_over_ssh() {
    let Some(host) = Host::ssh() else { return };
    check_gc_during_a_cold_sync(&host);
}

#[test]
fn gc_during_a_cold_sync_keeps_the_objects_it_counts_on_locally() {
    check_gc_during_a_cold_sync(&Host::Local);
}
