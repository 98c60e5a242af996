//! Workspace sync over the real loopback sshd (and locally).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use pikaci::argv::Argv;
use pikaci::cancel::Cancel;
use pikaci::snapshot;
use pikaci::sync::sync;
use pikaci::transport::{Local, Ssh, Transport};

pub(crate) fn ssh() -> Option<Ssh> {
    let ssh = Ssh::new(crate::harness::testbed_ssh()?).unwrap();
    ssh.connect(&Cancel::new()).unwrap();
    Some(ssh)
}

/// The first host with a Nix store of its own (scripts/testbed/hosts.sh), connected.
fn own_store() -> Option<Ssh> {
    let ssh = Ssh::new(crate::harness::own_store_ssh(0)?).unwrap();
    ssh.connect(&Cancel::new()).unwrap();
    Some(ssh)
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/deep/er/x.txt", "x\n");
    write(root, "same-a", "same content\n");
    write(root, "same-b", "same content\n");
    write(root, "empty", "");
    write(root, "name with spaces/ünï 'q'.txt", "odd\n");
    write(root, "run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
    ws
}

/// `nix hash path` of `dir`, run on the host itself.
pub(crate) fn host_hash(transport: &dyn Transport, dir: &Path) -> Option<String> {
    let argv = Argv::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "hash",
            "path",
        ])
        .arg(dir);
    match transport.run(
        &argv,
        b"",
        Instant::now() + Duration::from_secs(60),
        &Cancel::new(),
    ) {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "nix is required in CI: {e}"
            );
            None
        }
    }
}

pub(crate) fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn check_sync(transport: &dyn Transport) {
    let ws = workspace();
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().join("work dir");
    let cancel = Cancel::new();
    let snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let sync_now =
        |id: &str| sync(transport, cache.path(), id, &host_dir, soon(), &cancel).unwrap();

    let cold = sync_now(&snap.id);
    assert_eq!(
        cold.round_trips, 2,
        "query, stream: a new host dir has no objects to ask about"
    );
    assert_eq!(
        cold.objects_sent, 6,
        "7 files, two with the same content (the symlink is no object)"
    );
    if let Some(hash) = host_hash(transport, &cold.dir) {
        assert_eq!(
            hash,
            snapshot::nar_hash(&snap.dir).unwrap(),
            "the host's tree hashes like the local snapshot"
        );
    }

    let unchanged = sync_now(&snap.id);
    assert_eq!(
        (unchanged.round_trips, unchanged.objects_sent),
        (1, 0),
        "one round trip, nothing sent"
    );

    write(
        ws.path(),
        "src/main.rs",
        "fn main() { println!(\"changed\"); }\n",
    );
    let changed_snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let changed = sync_now(&changed_snap.id);
    assert_eq!(
        (changed.round_trips, changed.objects_sent),
        (2, 1),
        "only the changed content travels"
    );
    let cold_hex = snap.id.clone();
    assert_eq!(changed.patched_from.as_deref(), Some(cold_hex.as_str()));
    assert!(
        !cold.dir.exists(),
        "the unleased older tree became the new one"
    );
    if let Some(hash) = host_hash(transport, &changed.dir) {
        assert_eq!(hash, snapshot::nar_hash(&changed_snap.dir).unwrap());
    }

    // Every kind of change a patch must handle: removed files and directories, a file
    // that becomes a directory and a directory that becomes a file, new directories,
    // symlinks retargeted, the executable bit, content shared with another file.
    std::fs::remove_file(ws.path().join("src/deep/er/x.txt")).unwrap();
    std::fs::remove_file(ws.path().join("empty")).unwrap();
    write(ws.path(), "empty/now/a/dir.txt", "was a file\n");
    std::fs::remove_file(ws.path().join("same-b")).unwrap();
    std::fs::remove_dir_all(ws.path().join("name with spaces")).unwrap();
    write(ws.path(), "name with spaces", "now a file\n");
    write(ws.path(), "brand/new/tree/f.txt", "same content\n");
    std::fs::remove_file(ws.path().join("link")).unwrap();
    std::os::unix::fs::symlink("run.sh", ws.path().join("link")).unwrap();
    std::fs::set_permissions(
        ws.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let many_snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let many = sync_now(&many_snap.id);
    assert!(many.patched_from.is_some(), "{many:?}");
    if let Some(hash) = host_hash(transport, &many.dir) {
        assert_eq!(
            hash,
            snapshot::nar_hash(&many_snap.dir).unwrap(),
            "the patched tree is exactly the new snapshot"
        );
    }
    let mode = std::fs::metadata(many.dir.join("brand/new"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o555, "new directories are closed again");

    // A leased tree is never taken: the next sync must build a fresh tree.
    let hex = many_snap.id.clone();
    let lease = pikaci::sync::lease(transport, &host_dir, &hex, soon(), &cancel).unwrap();
    write(
        ws.path(),
        "src/main.rs",
        "fn main() { println!(\"third\"); }\n",
    );
    let third_snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let third = sync_now(&third_snap.id);
    assert_eq!(third.patched_from, None, "{third:?}");
    assert!(many.dir.is_dir(), "the leased tree is still there");
    if let Some(hash) = host_hash(transport, &third.dir) {
        assert_eq!(hash, snapshot::nar_hash(&third_snap.dir).unwrap());
    }
    drop(lease);
    // A cold sync removes its staged copies after it has answered.
    let tmp = host_dir.join("tmp");
    let empty = || std::fs::read_dir(&tmp).unwrap().count() == 0;
    let emptied = crate::harness::eventually(Duration::from_secs(30), empty);
    assert!(emptied, "no temporary trees left behind");
}

/// The object an entry of the host's tree is, by the local snapshot's manifest.
fn object_of(entry: &snapshot::TreeEntry) -> Option<String> {
    match &entry.kind {
        snapshot::TreeKind::File { hash, executable } => {
            Some(format!("{hash}{}", if *executable { "-x" } else { "" }))
        }
        snapshot::TreeKind::Symlink { .. } => None,
    }
}

/// A cold sync writes each content once on the host, straight into the tree, and stores
/// it in `objects/` as the same file: every tree file is its object (one inode), with
/// mode 0555 for `-x` objects and 0444 for the others, and directories are read-only.
/// A second cold sync into that host dir (the first tree leased) asks which objects it
/// has and sends only the others.
fn check_cold_sync_stores_each_content_once(transport: &dyn Transport) {
    use std::os::unix::fs::MetadataExt;
    let ws = workspace();
    write(
        ws.path(),
        "dup/same-c",
        "same content
",
    );
    write(ws.path(), "dup/run2.sh", "#!/bin/sh\n");
    write(ws.path(), "run-copy.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        ws.path().join("run-copy.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../same-a", ws.path().join("dup/link")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let cancel = Cancel::new();
    let snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let sync_now = |id: &str| {
        sync(transport, cache.path(), id, host.path(), soon(), &cancel)
            .unwrap_or_else(|e| panic!("{}", pikaci::error::chain(&e)))
    };
    let cold = sync_now(&snap.id);
    assert_eq!(cold.round_trips, 2, "{cold:?}");
    // run.sh and run-copy.sh share `-x`, dup/run2.sh is the same content without it.
    assert_eq!(cold.objects_sent, 7, "an object per content and mode, once");
    if let Some(hash) = host_hash(transport, &cold.dir) {
        assert_eq!(hash, snapshot::nar_hash(&snap.dir).unwrap());
    }
    let tree = snapshot::tree(cache.path(), &snap.id).unwrap();
    assert_files_are_their_objects(&tree, &cold.dir, host.path());
    let objects = walk_files(&host.path().join("objects"));
    assert_eq!(objects.len(), 7, "{objects:?}");
    for dir in ["", "dup", "src/deep"] {
        let mode = std::fs::metadata(cold.dir.join(dir)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o555, "{dir:?} is read-only");
    }

    let _lease = pikaci::sync::lease(transport, host.path(), &snap.id, soon(), &cancel).unwrap();
    write(ws.path(), "dup/new.txt", "new\n");
    let second = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let warm = sync_now(&second.id);
    assert_eq!(warm.patched_from, None, "the only tree is leased");
    assert_eq!(
        (warm.round_trips, warm.objects_sent),
        (3, 1),
        "query, missing objects, stream of the one new content"
    );
    if let Some(hash) = host_hash(transport, &warm.dir) {
        assert_eq!(hash, snapshot::nar_hash(&second.dir).unwrap());
    }
    let tmp = host.path().join("tmp");
    let empty = || std::fs::read_dir(&tmp).unwrap().count() == 0;
    let emptied = crate::harness::eventually(Duration::from_secs(30), empty);
    assert!(emptied, "no temporary trees left behind");
}

/// A workspace snapshotted into a new cache and synced to a new host dir.
struct Synced {
    cache: tempfile::TempDir,
    host: tempfile::TempDir,
    snap: snapshot::Snapshot,
    stats: pikaci::sync::SyncStats,
}

fn cold_sync(transport: &dyn Transport, ws: &Path) -> Synced {
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let snap = snapshot::take(ws, cache.path(), &[]).unwrap();
    let stats = sync(
        transport,
        cache.path(),
        &snap.id,
        host.path(),
        soon(),
        &Cancel::new(),
    )
    .unwrap_or_else(|e| panic!("cold sync: {}", pikaci::error::chain(&e)));
    Synced {
        cache,
        host,
        snap,
        stats,
    }
}

/// Every file of the synced `tree` at `dir` is its object under `host`'s `objects/`
/// (one inode) with the object's mode, 0555 for `-x` objects and 0444 for the others;
/// symlinks are symlinks.
fn assert_files_are_their_objects(tree: &[snapshot::TreeEntry], dir: &Path, host: &Path) {
    use std::os::unix::fs::MetadataExt;
    for entry in tree {
        let path = dir.join(&entry.path);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let Some(name) = object_of(entry) else {
            assert!(meta.file_type().is_symlink(), "{path:?}");
            continue;
        };
        let object = std::fs::metadata(host.join("objects").join(&name)).unwrap();
        assert_eq!(meta.ino(), object.ino(), "{path:?} is its object {name}");
        let mode = if name.ends_with("-x") { 0o555 } else { 0o444 };
        assert_eq!(meta.mode() & 0o777, mode, "{path:?}");
    }
}

/// A tree large enough to travel in parts the host unpacks side by side, with the same
/// contents in different parts, executables and symlinks: it arrives whole (the NAR
/// hash), each content once, every directory read-only, nothing left in `tmp/`.
fn check_a_cold_sync_in_parts(transport: &dyn Transport) {
    let ws = tempfile::tempdir().unwrap();
    for i in 0..4_500 {
        let rel = format!("d{}/e{}/f{i}", i / 1_000, i / 100);
        write(ws.path(), &rel, &format!("{}\n", i % 1_500));
        if i % 9 == 0 {
            let path = ws.path().join(&rel);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if i % 200 == 0 {
            let link = ws.path().join(format!("d{}/l{i}", i / 1_000));
            std::os::unix::fs::symlink(format!("e{}/f{i}", i / 100), link).unwrap();
        }
    }
    let Synced {
        cache,
        host,
        snap,
        stats: cold,
    } = cold_sync(transport, ws.path());
    let tree = snapshot::tree(cache.path(), &snap.id).unwrap();
    let objects: std::collections::BTreeSet<String> = tree.iter().filter_map(object_of).collect();
    assert_eq!(cold.objects_sent, objects.len() as u64);
    if let Some(hash) = host_hash(transport, &cold.dir) {
        assert_eq!(hash, snapshot::nar_hash(&snap.dir).unwrap());
    }
    assert_files_are_their_objects(&tree, &cold.dir, host.path());
    assert_eq!(
        walk_files(&host.path().join("objects")).len(),
        objects.len()
    );
    for dir in walkdir::WalkDir::new(&cold.dir)
        .into_iter()
        .map(Result::unwrap)
    {
        if dir.file_type().is_dir() {
            let mode = dir.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o555, "{:?} is read-only", dir.path());
        }
    }
    let tmp = std::fs::read_dir(host.path().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "nothing left in tmp/");
}

/// To a host with a Nix store of its own, as a remote one is.
#[test]
fn a_cold_sync_in_parts_over_ssh() {
    let Some(ssh) = own_store() else { return };
    check_a_cold_sync_in_parts(&ssh);
}

#[test]
fn a_cold_sync_in_parts_locally() {
    check_a_cold_sync_in_parts(&Local);
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_cold_sync_stores_each_content_once_over_ssh() {
    let Some(ssh) = ssh() else { return };
    check_cold_sync_stores_each_content_once(&ssh);
}

#[test]
fn a_cold_sync_stores_each_content_once_locally() {
    check_cold_sync_stores_each_content_once(&Local);
}

/// To a host with a Nix store of its own (scripts/testbed/hosts.sh), as a remote one is:
/// the sync must not lean on anything this machine shares with the host.
#[test]
fn sync_over_ssh() {
    let Some(ssh) = own_store() else { return };
    check_sync(&ssh);
}

#[test]
fn sync_to_a_local_host_dir() {
    check_sync(&Local);
}

/// A host dir an older pikaci filled (objects in 256 fan-out directories): its objects
/// count as missing, and the next tree comes whole and right, into the one directory.
#[test]
fn a_host_dir_of_the_older_fan_out_layout_gets_whole_trees() {
    let Some(ssh) = ssh() else { return };
    let ws = workspace();
    let (cache, host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cancel = Cancel::new();
    let snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    sync(&ssh, cache.path(), &snap.id, host.path(), soon(), &cancel).unwrap();
    let objects = host.path().join("objects");
    for object in walk_files(&objects) {
        let name = object.file_name().unwrap().to_str().unwrap().to_string();
        let dir = objects.join(&name[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::rename(&object, dir.join(&name[2..])).unwrap();
    }
    write(ws.path(), "src/main.rs", "fn main() { changed() }\n");
    let changed = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let _lease = pikaci::sync::lease(&ssh, host.path(), &snap.id, soon(), &cancel).unwrap();
    let synced = sync(
        &ssh,
        cache.path(),
        &changed.id,
        host.path(),
        soon(),
        &cancel,
    )
    .unwrap();
    let tree = snapshot::tree(cache.path(), &changed.id).unwrap();
    let contents: std::collections::BTreeSet<String> = tree.iter().filter_map(object_of).collect();
    assert_eq!(
        (synced.patched_from.as_deref(), synced.objects_sent),
        (None, contents.len() as u64),
        "every content travels"
    );
    if let Some(hash) = host_hash(&ssh, &synced.dir) {
        assert_eq!(hash, snapshot::nar_hash(&changed.dir).unwrap());
    }
    for name in contents {
        assert!(objects.join(&name).is_file(), "{name} in objects/");
    }
}

/// Syncs of one snapshot at once (two runs of one commit): each adds the same objects,
/// and none may fail because another added one first. Rounds, since the race is narrow.
#[test]
fn concurrent_syncs_of_one_snapshot_both_succeed() {
    if ssh().is_none() {
        return;
    }
    let ws = workspace();
    let cache = tempfile::tempdir().unwrap();
    let snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    for _round in 0..4 {
        let host = tempfile::tempdir().unwrap();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let ssh = ssh().unwrap();
                        sync(
                            &ssh,
                            cache.path(),
                            &snap.id,
                            host.path(),
                            soon(),
                            &Cancel::new(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in &results {
            assert!(result.is_ok(), "{result:?}");
        }
        let dir = &results[0].as_ref().unwrap().dir;
        if let Some(hash) = host_hash(&Local, dir) {
            assert_eq!(hash, snapshot::nar_hash(&snap.dir).unwrap());
        }
    }
}

/// Two files with the same content, one executable and one not: two objects on the host
/// (`HASH` and `HASH-x`), and a cold sync must send both (issue 14).
fn check_same_content_in_both_modes(transport: &dyn Transport) {
    let ws = tempfile::tempdir().unwrap();
    write(ws.path(), "a", "");
    write(ws.path(), "b", "");
    write(ws.path(), "s1", "same\n");
    write(ws.path(), "s3", "same\n");
    for exec in ["b", "s3"] {
        std::fs::set_permissions(ws.path().join(exec), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let Synced {
        cache: _cache,
        host: _host,
        snap,
        stats: cold,
    } = cold_sync(transport, ws.path());
    assert_eq!(cold.objects_sent, 4, "an object per content and mode");
    if let Some(hash) = host_hash(transport, &cold.dir) {
        assert_eq!(hash, snapshot::nar_hash(&snap.dir).unwrap());
    }
}

#[test]
fn same_content_executable_and_not_syncs_over_ssh() {
    let Some(ssh) = ssh() else { return };
    check_same_content_in_both_modes(&ssh);
}

#[test]
fn same_content_executable_and_not_syncs_locally() {
    check_same_content_in_both_modes(&Local);
}

/// Issue 21, finding 14: SIGINT or SIGTERM while the workspace is sent to an SSH host
/// stops the sync promptly and records the job and the run as `cancelled`, not `error`.
/// The local transport, with a local take patching the snapshot `gone` into a later one
/// (its file list removed) right after the host answered the query.
struct PatchedAwayAfterTheQuery<'a> {
    tree: &'a Path,
    queried: std::sync::atomic::AtomicBool,
}

impl Transport for PatchedAwayAfterTheQuery<'_> {
    fn host(&self) -> String {
        Local.host()
    }
    fn command(&self, argv: &Argv) -> std::process::Command {
        Local.command(argv)
    }
    fn run(
        &self,
        argv: &Argv,
        stdin: &[u8],
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<pikaci::transport::Output, pikaci::transport::TransportError> {
        let out = Local.run(argv, stdin, deadline, cancel);
        if !self.queried.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::fs::remove_file(self.tree).unwrap();
        }
        out
    }
}

/// The host offers to patch a tree whose file list a local take has removed since (it
/// patched that snapshot into a later one): the sync sends a fresh tree instead.
#[test]
fn a_base_patched_away_here_after_the_query_gets_a_fresh_tree() {
    let ws = workspace();
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let first = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    sync(
        &Local,
        cache.path(),
        &first.id,
        host.path(),
        soon(),
        &Cancel::new(),
    )
    .unwrap();
    write(ws.path(), "src/main.rs", "fn main() { changed() }\n");
    let next = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
    let transport = PatchedAwayAfterTheQuery {
        tree: &cache.path().join("trees").join(&first.id),
        queried: false.into(),
    };
    let stats = sync(
        &transport,
        cache.path(),
        &next.id,
        host.path(),
        soon(),
        &Cancel::new(),
    )
    .unwrap_or_else(|e| panic!("{}", pikaci::error::chain(&e)));
    assert_eq!(stats.patched_from, None, "{stats:?}");
    assert_eq!(
        snapshot::nar_hash(&stats.dir).unwrap(),
        snapshot::nar_hash(&next.dir).unwrap()
    );
}

#[test]
fn a_signal_during_the_sync_cancels_the_run() {
    use rustix::process::{Pid, Signal, kill_process};
    // A host with its own store, as a remote host is.
    let Some(options) = crate::harness::own_store_ssh(0) else {
        return;
    };
    for signal in [Signal::INT, Signal::TERM] {
        let work = tempfile::tempdir().unwrap();
        let repo = crate::harness::Repo::new(&format!(
            "[defaults]\nbackend = \"microvm\"\nhost = \"{host}\"\nwork-dir = \"{work}\"\n\n\
             [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\n\
             [backends.microvm]\nrunner = \"/nonexistent#runner\"\n\n\
             [jobs.m]\ncommand = \"true\"\n",
            host = crate::harness::own_store_host(0).unwrap(),
            work = work.path().display(),
            key = options.identity.as_ref().unwrap().display(),
            known = options.known_hosts.as_ref().unwrap().display(),
        ));
        // Big enough that sending it takes a while.
        let big = std::fs::File::create(repo.path().join("big")).unwrap();
        big.set_len(48 << 20).unwrap();
        let mut child = repo
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The run takes its lease on the host just before the sync starts.
        let leases = work.path().join("leases");
        let syncing = crate::harness::eventually(Duration::from_secs(120), || {
            std::fs::read_dir(&leases).is_ok_and(|mut d| d.next().is_some())
        });
        assert!(syncing, "the sync never started");
        kill_process(Pid::from_child(&child), signal).unwrap();
        let signalled = Instant::now();
        let status = child.wait().unwrap();
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{signal:?}: ended after {took:?}"
        );
        assert_eq!(status.code(), Some(130), "{signal:?}");
        let (job, _) = repo.job("m");
        assert_eq!(job["status"], "cancelled", "{signal:?}: {job}");
        let run = repo.read_json(&repo.latest_run().join("run.json"));
        assert_eq!(run["status"], "cancelled", "{signal:?}");
    }
}
