use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;
use std::time::UNIX_EPOCH;

use super::*;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "git {args:?}");
}

/// The lock gc takes, once no take holds the cache. Waits a little: while another test's
/// thread spawns a process, the child holds a copy of every descriptor until it execs,
/// the lock file's too, so a take's lock outlives the take by that moment.
fn gc_lock(cache: &Path) -> CacheLock {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(lock) = lock_for_gc(cache).unwrap() {
            return lock;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a take holds the cache"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// A tree with nested dirs, an executable, a symlink, an empty file, odd names.
fn sample_tree(root: &Path) {
    write(root, "a/b/c.txt", "nested\n");
    write(root, "run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(root, "empty", "");
    write(root, "with space/ünïcode.txt", "u\n");
    symlink("a/b/c.txt", root.join("link")).unwrap();
}

fn names(snapshot: &Snapshot) -> Vec<String> {
    let mut names: Vec<String> = walkdir::WalkDir::new(&snapshot.dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            e.path()
                .strip_prefix(&snapshot.dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn object_count(cache: &Path) -> usize {
    walkdir::WalkDir::new(cache.join("objects"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count()
}

fn age_files(root: &Path) {
    // Files and symlinks made just now are "racy" for the index; date them back like
    // real edits (a symlink's own times, not its target's).
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let secs = old.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: at,
        last_modification: at,
    };
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if !entry.file_type().is_dir() {
            utimensat(CWD, entry.path(), &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }
}

fn nix_hash_path(dir: &Path) -> Option<String> {
    let nix = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "hash",
            "path",
        ])
        .arg(dir)
        .output();
    let Ok(nix) = nix else {
        assert!(std::env::var_os("CI").is_none(), "nix is required in CI");
        eprintln!("skipped: nix is not installed");
        return None;
    };
    assert!(
        nix.status.success(),
        "{}",
        String::from_utf8_lossy(&nix.stderr)
    );
    Some(String::from_utf8_lossy(&nix.stdout).trim().to_string())
}

/// `nix hash path` of the snapshot is that of the workspace (what Nix would copy had it
/// been given the workspace), and this module's NAR serialisation, which the tests
/// compare trees with, agrees with Nix's.
#[test]
fn the_tree_hashes_as_nix_hashes_the_workspace() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let snapshot = take(ws.path(), cache.path(), &[]).unwrap();
    if let Some(nix) = nix_hash_path(&snapshot.dir) {
        assert_eq!(Some(nix.clone()), nix_hash_path(ws.path()));
        assert_eq!(nar_hash(&snapshot.dir).unwrap(), nix);
    }
    assert_eq!(
        nar_hash(ws.path()).unwrap(),
        nar_hash(&snapshot.dir).unwrap()
    );
}

#[test]
fn git_aware_listing() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path();
    git(root, &["init", "-q"]);
    write(root, ".gitignore", "*.log\n.pikaci/\n");
    write(root, "tracked.txt", "t");
    write(root, "gone.txt", "g");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "x"]);
    fs::remove_file(root.join("gone.txt")).unwrap();
    write(root, "new.txt", "n");
    write(root, "debug.log", "ignored");
    write(root, ".pikaci/runs/x", "state");
    write(root, "state-elsewhere/x", "excluded explicitly");
    let snapshot = take(root, cache.path(), &[root.join("state-elsewhere")]).unwrap();
    assert_eq!(names(&snapshot), [".gitignore", "new.txt", "tracked.txt"]);
    let spelt_otherwise = root.join("./state-elsewhere/");
    let snapshot = take(root, cache.path(), &[spelt_otherwise]).unwrap();
    assert_eq!(names(&snapshot), [".gitignore", "new.txt", "tracked.txt"]);
}

#[test]
fn modes_and_symlinks_survive() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let snapshot = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(snapshot.files, 5);
    let mode = fs::metadata(snapshot.dir.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    assert_eq!(
        fs::read_link(snapshot.dir.join("link")).unwrap(),
        Path::new("a/b/c.txt")
    );
    let dir_mode = fs::metadata(snapshot.dir.join("a"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o222, 0, "directories are read-only");
}

#[test]
fn unchanged_workspace_is_reused_without_new_objects() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(!first.reused);
    let objects = object_count(cache.path());
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(second.reused);
    let fields = |s: &Snapshot| (s.id.clone(), s.dir.clone(), s.files, s.notes.clone());
    assert_eq!(fields(&second), fields(&first));
    assert_eq!(object_count(cache.path()), objects);
}

#[test]
fn one_changed_file_shares_every_other_object() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    write(ws.path(), "empty", "now with content");
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert_ne!(first.id, second.id);
    let ino = |s: &Snapshot, rel: &str| fs::metadata(s.dir.join(rel)).unwrap().ino();
    assert_eq!(
        ino(&first, "a/b/c.txt"),
        ino(&second, "a/b/c.txt"),
        "shared, not copied"
    );
    assert_ne!(ino(&first, "empty"), ino(&second, "empty"));
    assert_eq!(
        fs::read_to_string(first.dir.join("empty")).unwrap(),
        "",
        "old snapshot intact"
    );
}

#[test]
fn concurrent_takes_agree() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let results: Vec<Snapshot> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| take(ws.path(), cache.path(), &[]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results
            .windows(2)
            .all(|w| w[0].id == w[1].id && w[0].dir == w[1].dir)
    );
    assert_eq!(
        fs::read_dir(cache.path().join("snapshots"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn corrupt_index_is_rebuilt() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    for index in fs::read_dir(cache.path().join("index")).unwrap() {
        fs::write(index.unwrap().path(), "garbage\0\0").unwrap();
    }
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(first.id, second.id);
    assert!(take(ws.path(), cache.path(), &[]).unwrap().reused);
}

#[test]
fn open_finds_published_and_rejects_unknown() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let taken = take(ws.path(), cache.path(), &[]).unwrap();
    let opened = open(cache.path(), &taken.id, &Cancel::new()).unwrap();
    assert_eq!((opened.dir, opened.files), (taken.dir, taken.files));
    for unknown in ["ab".repeat(32), "../x".into(), String::new()] {
        assert!(matches!(
            open(cache.path(), &unknown, &Cancel::new()),
            Err(SnapshotError::Missing { .. })
        ));
    }
}

#[test]
fn private_copy_is_writable_and_detached() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let snapshot = take(ws.path(), cache.path(), &[]).unwrap();
    let copy = out.path().join("copy");
    private_copy(&snapshot.dir, &copy).unwrap();
    fs::write(copy.join("a/b/c.txt"), "changed").unwrap();
    fs::write(copy.join("a/new"), "new").unwrap();
    assert_eq!(
        fs::read_to_string(snapshot.dir.join("a/b/c.txt")).unwrap(),
        "nested\n"
    );
    assert_eq!(
        nar_hash(&snapshot.dir).unwrap(),
        nar_hash(ws.path()).unwrap()
    );
}

#[test]
fn gc_removes_unreferenced_snapshots_and_objects() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let keep = take(ws.path(), cache.path(), &[]).unwrap();
    let kept_nar = nar_hash(&keep.dir).unwrap();
    write(ws.path(), "only-in-second", "unique content");
    let drop = take(ws.path(), cache.path(), &[]).unwrap();
    let stats = gc(
        cache.path(),
        &HashSet::from([keep.id.clone()]),
        &gc_lock(cache.path()),
    )
    .unwrap();
    assert_eq!(stats.snapshots_removed, 1);
    assert_eq!(
        stats.objects_removed, 1,
        "only the object unique to the dropped snapshot"
    );
    assert!(keep.dir.is_dir() && !drop.dir.exists());
    assert_eq!(nar_hash(&keep.dir).unwrap(), kept_nar);
}

#[test]
fn objects_removed_by_gc_are_added_again_when_needed() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    gc(cache.path(), &HashSet::new(), &gc_lock(cache.path())).unwrap();
    assert_eq!(object_count(cache.path()), 0);
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(again.id, first.id);
    assert!(!again.reused, "the tree was rebuilt");
    assert_eq!(nar_hash(&again.dir).unwrap(), nar_hash(ws.path()).unwrap());
}

#[test]
fn an_object_gone_under_a_kept_snapshot_is_stored_again_for_the_next_tree() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    // The index still names the object; only the store lost it (the snapshot keeps its
    // own link to the content).
    let content = fs::read(first.dir.join("a/b/c.txt")).unwrap();
    let hash = store::hex(&Sha256::digest(&content));
    let object = object_path(cache.path(), &hash, false);
    fs::remove_file(&object).unwrap();
    assert!(take(ws.path(), cache.path(), &[]).unwrap().reused);
    write(ws.path(), "empty", "now with content");
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(!second.reused);
    assert!(object.is_file(), "stored again from the workspace");
    assert_eq!(fs::read(second.dir.join("a/b/c.txt")).unwrap(), content);
    assert_eq!(nar_hash(&second.dir).unwrap(), nar_hash(ws.path()).unwrap());
}

#[test]
fn an_unchanged_take_leaves_the_index_as_it_is() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    take(ws.path(), cache.path(), &[]).unwrap();
    let index_ino = || {
        let dir = fs::read_dir(cache.path().join("index")).unwrap();
        let files: Vec<_> = dir.map(|e| e.unwrap().metadata().unwrap().ino()).collect();
        assert_eq!(files.len(), 1, "one index per workspace");
        files[0]
    };
    let written = index_ino();
    take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(index_ino(), written, "not written again");
    fs::remove_file(ws.path().join("empty")).unwrap();
    take(ws.path(), cache.path(), &[]).unwrap();
    assert_ne!(index_ino(), written, "a file less is a new index");
}

#[test]
fn non_utf8_names_hash_as_nix_does() {
    use std::os::unix::ffi::OsStrExt;
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.txt");
    fs::create_dir(ws.path().join(std::ffi::OsStr::from_bytes(b"d\xfe"))).unwrap();
    fs::write(ws.path().join(name), "latin-1\n").unwrap();
    symlink(name, ws.path().join("d\u{fe}-link")).unwrap();
    fs::write(
        ws.path()
            .join(std::ffi::OsStr::from_bytes(b"d\xfe"))
            .join(name),
        "x",
    )
    .unwrap();
    let snapshot = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(fs::read(snapshot.dir.join(name)).unwrap(), b"latin-1\n");
    if let Some(nix) = nix_hash_path(&snapshot.dir) {
        assert_eq!(nar_hash(&snapshot.dir).unwrap(), nix);
    }
    assert_eq!(
        nar_hash(ws.path()).unwrap(),
        nar_hash(&snapshot.dir).unwrap()
    );
}

#[test]
fn a_file_that_vanishes_after_listing_is_left_out_with_a_note() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let listed = files::paths(ws.path(), &[]).unwrap();
    let listing = files::list(ws.path(), &listed, &files::Known::none()).unwrap();
    fs::remove_file(ws.path().join("a/b/c.txt")).unwrap();
    fs::remove_file(ws.path().join("link")).unwrap();
    let index = Index::default();
    let snapshot = take_listed(
        ws.path(),
        cache.path(),
        listing,
        index,
        clock::now_ns(),
        &Cancel::new(),
    );
    let snapshot = snapshot.unwrap();
    assert_eq!(
        names(&snapshot),
        ["empty", "run.sh", "with space/ünïcode.txt"]
    );
    assert_eq!(snapshot.notes.len(), 2, "{:?}", snapshot.notes);
    assert!(snapshot.notes[0].contains("a/b/c.txt vanished"));
}

#[test]
fn a_cancelled_take_stops_and_publishes_nothing() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let cancel = Cancel::new();
    cancel.cancel();
    let result = take_cancellable(ws.path(), cache.path(), &[], &cancel);
    assert!(matches!(result, Err(SnapshotError::Cancelled)));
    assert!(!cache.path().join("snapshots").exists());
}

/// What a gc killed half-way leaves: a tree with files missing, its record gone first.
fn cut_short(cache: &Path, snapshot: &Snapshot, rel: &str) {
    complete::forget(cache, &snapshot.id).unwrap();
    let parent = snapshot.dir.join(rel);
    let parent = parent.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(snapshot.dir.join(rel)).unwrap();
}

#[test]
fn a_tree_cut_short_is_rebuilt_not_reused() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    cut_short(cache.path(), &first, "a/b/c.txt");
    assert!(matches!(
        open(cache.path(), &first.id, &Cancel::new()),
        Err(SnapshotError::Incomplete { .. })
    ));
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(!again.reused);
    assert_eq!(again.dir, first.dir);
    assert_eq!(nar_hash(&again.dir).unwrap(), nar_hash(ws.path()).unwrap());
    assert!(take(ws.path(), cache.path(), &[]).unwrap().reused);
}

/// Truncates (or, same size, overwrites) the object behind `rel` of `snapshot`.
fn damage_object(snapshot: &Snapshot, rel: &str, content: &[u8]) {
    let path = snapshot.dir.join(rel);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
}

/// What a reboot leaves: this boot's "found whole" markers become an earlier boot's.
fn as_after_a_reboot(cache: &Path) -> PathBuf {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let checked = cache.join("checked");
    let earlier = checked.join("an-earlier-boot");
    fs::rename(checked.join(boot.trim()), &earlier).unwrap();
    earlier
}

#[test]
fn a_truncated_object_is_found_after_a_reboot_and_its_snapshot_rebuilt() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    // A crash before the page cache reached the disk: an object cut short.
    damage_object(&first, "a/b/c.txt", b"nes");
    as_after_a_reboot(cache.path());
    assert!(
        open(cache.path(), &first.id, &Cancel::new()).is_err(),
        "not served"
    );
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(!again.reused);
    assert_eq!(fs::read(again.dir.join("a/b/c.txt")).unwrap(), b"nested\n");
    assert_eq!(nar_hash(&again.dir).unwrap(), nar_hash(ws.path()).unwrap());
}

#[test]
fn verify_drops_damaged_objects_with_their_snapshots() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    damage_object(&first, "a/b/c.txt", b"NESTED\n");
    assert!(
        take(ws.path(), cache.path(), &[]).unwrap().reused,
        "same size"
    );
    let stats = verify(cache.path(), &gc_lock(cache.path())).unwrap();
    assert_eq!((stats.objects_bad.len(), stats.snapshots_dropped), (1, 1));
    assert!(!first.dir.exists());
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(!again.reused);
    assert_eq!(fs::read(again.dir.join("a/b/c.txt")).unwrap(), b"nested\n");
    let clean = verify(cache.path(), &gc_lock(cache.path())).unwrap();
    assert_eq!((clean.objects_bad.len(), clean.snapshots_dropped), (0, 0));
}

#[test]
fn gc_waits_for_no_take_and_a_take_waits_for_gc() {
    let cache = tempfile::tempdir().unwrap();
    let taking = lock::shared(cache.path(), &Cancel::new()).unwrap();
    assert!(lock_for_gc(cache.path()).unwrap().is_none());
    drop(taking);
    let collecting = gc_lock(cache.path());
    let cancel = Cancel::new();
    cancel.cancel();
    assert!(matches!(
        lock::shared(cache.path(), &cancel),
        Err(SnapshotError::Cancelled)
    ));
    drop(collecting);
}

#[test]
fn gc_removes_what_killed_runs_and_gcs_leave() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let kept = take(ws.path(), cache.path(), &[]).unwrap();
    let c = cache.path();
    // A run killed while building, while adding a file, and just after its rename.
    write(c, "tmp/build-killed/a/file", "partial");
    write(c, "objects/.add-killed", "half a file");
    let unpublished = c.join("snapshots").join("ab".repeat(32));
    write(&unpublished, "only-part", "x");
    // A gc killed between removing a snapshot's record and its tree.
    write(c, &format!("trees/{}", "cd".repeat(32)), "");
    let stats = gc(c, &HashSet::from([kept.id.clone()]), &gc_lock(c)).unwrap();
    assert_eq!(stats.snapshots_removed, 1);
    assert!(!unpublished.exists() && !c.join("objects/.add-killed").exists());
    assert!(!c.join("tmp/build-killed").exists());
    assert!(!c.join("trees").join("cd".repeat(32)).exists());
    assert!(
        open(c, &kept.id, &Cancel::new()).is_ok(),
        "the kept snapshot is intact"
    );
}

#[test]
fn the_gc_lock_is_had_while_other_threads_spawn_processes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let spawning = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("true").status();
            }
        }
    });
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..500 {
        drop(lock::shared(cache.path(), &Cancel::new()).unwrap());
        drop(gc_lock(cache.path()));
    }
    stop.store(true, Ordering::Relaxed);
    spawning.join().unwrap();
}

#[test]
fn a_tree_is_checked_whole_once_per_boot_and_gc_drops_earlier_boots_marks() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    let hex = first.id.clone();
    let earlier = as_after_a_reboot(cache.path());
    assert!(earlier.join(&hex).exists(), "published means found whole");
    // The first use after the reboot checks the tree and marks it for this boot.
    assert!(take(ws.path(), cache.path(), &[]).unwrap().reused);
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let now = cache.path().join("checked").join(boot.trim()).join(&hex);
    assert!(now.exists(), "marked again in this boot");
    let keep = HashSet::from([first.id.clone()]);
    gc(cache.path(), &keep, &gc_lock(cache.path())).unwrap();
    assert!(
        !earlier.exists(),
        "an earlier boot's marks vouch for nothing"
    );
    assert!(now.exists());
    // A snapshot gc removes loses its mark with its record.
    gc(cache.path(), &HashSet::new(), &gc_lock(cache.path())).unwrap();
    assert!(!now.exists());
}

fn dir_ino(dir: &Path) -> u64 {
    fs::metadata(dir).unwrap().ino()
}

/// Every directory of the tree read-only, as publishing leaves it.
fn all_dirs_read_only(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .all(|e| e.metadata().unwrap().permissions().mode() & 0o777 == 0o555)
}

#[test]
fn a_changed_workspace_patches_an_older_tree_that_no_run_uses() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    sample_tree(ws.path());
    write(ws.path(), "gone/only/file", "left alone, then removed\n");
    write(ws.path(), "becomes-dir", "a file first\n");
    // Enough unchanged files that a patch of ten entries is worth it.
    for n in 0..20 {
        write(ws.path(), &format!("kept/{n}"), &format!("{n}\n"));
    }
    age_files(ws.path());
    let first = take(ws.path(), c, &[]).unwrap();
    let (first_id, first_dir) = (first.id.clone(), first.dir.clone());
    let first_ino = dir_ino(&first_dir);
    drop(first);
    write(ws.path(), "empty", "changed once");
    // The only other tree is the most recently used one: a new tree is built.
    let second = take(ws.path(), c, &[]).unwrap();
    assert!(first_dir.is_dir(), "the last used tree is kept for rerun");
    let second_nar = nar_hash(&second.dir).unwrap();
    drop(second);

    write(ws.path(), "empty", "changed twice");
    fs::remove_dir_all(ws.path().join("gone")).unwrap();
    fs::remove_file(ws.path().join("becomes-dir")).unwrap();
    write(ws.path(), "becomes-dir/inside", "now a directory\n");
    write(ws.path(), "new/deep/dir/file", "new\n");
    fs::set_permissions(ws.path().join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(ws.path().join("link")).unwrap();
    symlink("run.sh", ws.path().join("link")).unwrap();
    let third = take(ws.path(), c, &[]).unwrap();
    assert!(!third.reused);
    assert_eq!(dir_ino(&third.dir), first_ino, "the first tree, patched");
    assert!(!first_dir.exists());
    assert!(matches!(
        open(c, &first_id, &Cancel::new()),
        Err(SnapshotError::Missing { .. })
    ));
    assert_eq!(nar_hash(&third.dir).unwrap(), nar_hash(ws.path()).unwrap());
    assert!(all_dirs_read_only(&third.dir));
    // Its records are the new tree's: reused as it is, whole after a reboot too.
    drop(third);
    let again = take(ws.path(), c, &[]).unwrap();
    assert!(again.reused);
    as_after_a_reboot(c);
    assert!(complete::is_whole(c, &again.dir, &again.id));
    let second_id = recent_trees(c, 2)[1].clone();
    let second_dir = Store::new(c).snapshot_dir(&second_id);
    assert_eq!(nar_hash(&second_dir).unwrap(), second_nar, "untouched");
}

#[test]
fn a_tree_in_use_or_used_last_is_never_patched() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    sample_tree(ws.path());
    age_files(ws.path());
    let in_use = take(ws.path(), c, &[]).unwrap();
    let in_use_nar = nar_hash(&in_use.dir).unwrap();
    write(ws.path(), "empty", "one");
    drop(take(ws.path(), c, &[]).unwrap());
    write(ws.path(), "empty", "two");
    let third = take(ws.path(), c, &[]).unwrap();
    assert_ne!(dir_ino(&third.dir), dir_ino(&in_use.dir));
    assert_eq!(nar_hash(&in_use.dir).unwrap(), in_use_nar, "a run holds it");
    drop((third, in_use));

    // Used again (the workspace went back): now the most recent, so kept.
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    write(ws.path(), "empty", "");
    let first = take(ws.path(), c, &[]).unwrap();
    let (first_dir, first_ino) = (first.dir.clone(), dir_ino(&first.dir));
    drop(first);
    write(ws.path(), "empty", "one");
    drop(take(ws.path(), c, &[]).unwrap());
    write(ws.path(), "empty", "");
    age_files(ws.path());
    assert!(take(ws.path(), c, &[]).unwrap().reused);
    write(ws.path(), "empty", "two");
    let next = take(ws.path(), c, &[]).unwrap();
    assert!(first_dir.is_dir() && dir_ino(&first_dir) == first_ino);
    assert_eq!(nar_hash(&next.dir).unwrap(), nar_hash(ws.path()).unwrap());
}

/// What a take killed in the middle of a patch leaves: the base's records gone and its
/// tree, half changed, under `tmp/`. The next take makes the snapshot anyway; gc removes
/// the leftover.
#[test]
fn a_patch_cut_short_leaves_a_leftover_only_gc_sees() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    sample_tree(ws.path());
    age_files(ws.path());
    let base = take(ws.path(), c, &[]).unwrap();
    let (base_id, base_dir) = (base.id.clone(), base.dir.clone());
    drop(base);
    complete::forget(c, &base_id).unwrap();
    let leftover = c.join("tmp/build-killed/tree");
    fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    fs::set_permissions(&base_dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&base_dir, &leftover).unwrap();
    // Half changed: a directory removed (its modes opened first, as a patch does).
    fs::set_permissions(&leftover, fs::Permissions::from_mode(0o755)).unwrap();
    store::remove_tree(&leftover.join("a")).unwrap();

    write(ws.path(), "empty", "changed");
    let next = take(ws.path(), c, &[]).unwrap();
    assert!(!next.reused);
    assert_eq!(nar_hash(&next.dir).unwrap(), nar_hash(ws.path()).unwrap());
    assert!(recent_trees(c, 10).iter().all(|id| *id != base_id));
    let keep = HashSet::from([next.id.clone()]);
    drop(next);
    gc(c, &keep, &gc_lock(c)).unwrap();
    assert!(!c.join("tmp/build-killed").exists());
    assert!(!c.join("leases").join(&base_id).exists());
}

/// The snapshot a take finds from the index alone, with no list of its own (`None`: it
/// lists, hashes and looks for the tree as any take does).
fn from_index_alone(ws: &Path, cache: &Path) -> Option<String> {
    let listed = files::paths(ws, &[]).unwrap();
    let index = Index::load(&index_path(cache, ws));
    let known = files::Known::stat(ws, index.paths());
    let found = unchanged_since_index(cache, &index, &listed, &known, &Cancel::new()).unwrap();
    found.map(|snapshot| snapshot.id)
}

/// A repository of tracked, untracked and ignored files and a symlink, taken once.
fn taken_repo(ws: &Path, cache: &Path) -> Snapshot {
    git(ws, &["init", "-q"]);
    write(ws, ".gitignore", "*.log\n");
    write(ws, "src/lib.rs", "fn a() {}\n");
    write(ws, "run.sh", "#!/bin/sh\n");
    git(ws, &["add", "-A"]);
    git(ws, &["commit", "-qm", "x"]);
    write(ws, "notes.txt", "untracked\n");
    write(ws, "todo/last.txt", "untracked, last by path\n");
    write(ws, "debug.log", "ignored\n");
    symlink("src/lib.rs", ws.join("lib-link")).unwrap();
    age_files(ws);
    take(ws, cache, &[]).unwrap()
}

#[test]
fn an_unchanged_workspace_is_the_indexed_snapshot_without_a_list() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = taken_repo(ws.path(), cache.path());
    assert_eq!(
        from_index_alone(ws.path(), cache.path()),
        Some(first.id.clone())
    );
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert!(second.reused);
    let fields = |s: &Snapshot| (s.id.clone(), s.dir.clone(), s.files, s.notes.clone());
    assert_eq!(fields(&second), fields(&first));
    // An ignored file is no change.
    write(ws.path(), "more.log", "ignored too\n");
    assert_eq!(from_index_alone(ws.path(), cache.path()), Some(first.id));
}

#[test]
fn any_change_since_the_index_is_listed_and_taken_again() {
    type Change = (&'static str, fn(&Path));
    let changes: [Change; 9] = [
        ("an edit", |ws| write(ws, "src/lib.rs", "fn b() {}\n")),
        ("a new untracked file", |ws| write(ws, "new.txt", "n\n")),
        ("a removed tracked file", |ws| {
            fs::remove_file(ws.join("run.sh")).unwrap()
        }),
        ("a removed untracked file", |ws| {
            fs::remove_file(ws.join("notes.txt")).unwrap()
        }),
        ("the last file by path removed", |ws| {
            fs::remove_file(ws.join("todo/last.txt")).unwrap()
        }),
        ("a file made executable", |ws| {
            fs::set_permissions(ws.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap()
        }),
        ("a new symlink", |ws| {
            symlink("run.sh", ws.join("link")).unwrap()
        }),
        ("a symlink retargeted", |ws| {
            fs::remove_file(ws.join("lib-link")).unwrap();
            symlink("run.sh", ws.join("lib-link")).unwrap();
        }),
        ("a file replaced by a directory", |ws| {
            fs::remove_file(ws.join("notes.txt")).unwrap();
            write(ws, "notes.txt/inside", "i\n");
        }),
    ];
    for (change, make) in changes {
        let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = taken_repo(ws.path(), cache.path());
        make(ws.path());
        assert_eq!(from_index_alone(ws.path(), cache.path()), None, "{change}");
        let again = take(ws.path(), cache.path(), &[]).unwrap();
        assert_ne!(again.id, first.id, "{change}");
        let fresh = tempfile::tempdir().unwrap();
        let cold = take(ws.path(), fresh.path(), &[]).unwrap();
        assert_eq!(again.id, cold.id, "{change}: the files a cold take finds");
    }
}

#[test]
fn a_racy_file_or_a_tree_gc_removed_is_listed_and_taken_again() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = taken_repo(ws.path(), cache.path());
    // Stamped after the take begins (by a clock ahead of this one): it may change again
    // within the clock's grain, unseen by its stat.
    let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let file = fs::File::options()
        .write(true)
        .open(ws.path().join("notes.txt"))
        .unwrap();
    file.set_modified(ahead).unwrap();
    take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(from_index_alone(ws.path(), cache.path()), None, "racy");

    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first_here = taken_repo(ws.path(), cache.path());
    assert_eq!(first_here.id, first.id);
    drop(first_here);
    let lock = gc_lock(cache.path());
    gc(cache.path(), &HashSet::new(), &lock).unwrap();
    drop(lock);
    assert_eq!(
        from_index_alone(ws.path(), cache.path()),
        None,
        "removed by gc"
    );
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(again.id, first.id);
    assert!(!again.reused, "made again");
}

#[test]
fn a_workspace_outside_git_is_its_indexed_snapshot_too() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(
        from_index_alone(ws.path(), cache.path()),
        Some(first.id.clone())
    );
    write(ws.path(), "a/new.txt", "n\n");
    assert_eq!(from_index_alone(ws.path(), cache.path()), None);
}

/// A file edited just before a take is older than the take on the clock that stamps
/// files: the take's index vouches for it, and the next run makes no list. (A margin of a
/// second on the time of day made every file edited within it racy: the run after an
/// edit listed and hashed again.)
#[test]
fn a_file_edited_just_before_a_take_is_vouched_for_by_its_index() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = taken_repo(ws.path(), cache.path());
    write(ws.path(), "src/lib.rs", "fn b() {}\n");
    past_the_clock_tick();
    let edited = take(ws.path(), cache.path(), &[]).unwrap();
    assert_ne!(edited.id, first.id);
    assert_eq!(
        from_index_alone(ws.path(), cache.path()),
        Some(edited.id.clone())
    );
}

/// Past the tick of the coarse clock file times come from (1 to 10 ms): an edit within
/// the tick a take begins in has that take's own stamp, and is racy for it.
fn past_the_clock_tick() {
    std::thread::sleep(std::time::Duration::from_millis(50));
}

/// A file stamped after its take began may change again within the clock's grain,
/// unseen by its stat: the next take hashes it again, and that take's index vouches.
#[test]
fn a_file_stamped_after_its_take_began_is_hashed_again() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    taken_repo(ws.path(), cache.path());
    let racy_from = clock::racy_from_ns(cache.path(), ws.path());
    // During the take: after its clock was read, before its stat.
    write(ws.path(), "src/lib.rs", "fn c() {}\n");
    let listed = files::paths(ws.path(), &[]).unwrap();
    let listing = files::list(ws.path(), &listed, &files::Known::none()).unwrap();
    let old_index = Index::load(&index_path(cache.path(), ws.path()));
    let racy = take_listed(
        ws.path(),
        cache.path(),
        listing,
        old_index,
        racy_from,
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(from_index_alone(ws.path(), cache.path()), None, "racy");
    past_the_clock_tick();
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(again.id, racy.id);
    assert_eq!(
        from_index_alone(ws.path(), cache.path()),
        Some(again.id.clone())
    );
}

/// The file system's clock is read where the cache shares the workspace's file system;
/// elsewhere a margin on the time of day stands in for it.
#[test]
fn the_take_reads_the_clock_of_the_workspace_s_file_system() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let before = clock::now_ns();
    let racy_from = clock::racy_from_ns(cache.path(), ws.path());
    // A coarse file system clock lags the time of day by up to a tick.
    assert!(racy_from > before - 100_000_000, "{racy_from} vs {before}");
    let Ok(elsewhere) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    if dev(elsewhere.path()) == dev(ws.path()) {
        return;
    }
    let before = clock::now_ns();
    let racy_from = clock::racy_from_ns(elsewhere.path(), ws.path());
    assert!(racy_from <= before - 900_000_000, "{racy_from} vs {before}");
}

/// A cache in the layout of older pikacis (`objects/<hh>/<rest>`): its snapshot is still
/// used and verified, a change stores its content in `objects/<hash>`, and gc removes the
/// older objects and their directories once no snapshot links them.
#[test]
fn a_cache_of_the_older_fan_out_layout_is_used_verified_and_collected() {
    let (ws, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    let objects = cache.path().join("objects");
    let flat: Vec<String> = names_in(&objects);
    assert!(!flat.is_empty());
    for name in &flat {
        let dir = objects.join(&name[..2]);
        fs::create_dir_all(&dir).unwrap();
        fs::rename(objects.join(name), dir.join(&name[2..])).unwrap();
    }
    let stats = verify(cache.path(), &gc_lock(cache.path())).unwrap();
    assert_eq!(
        (stats.objects_checked, stats.objects_bad.len()),
        (flat.len(), 0)
    );
    let id = first.id.clone();
    drop(first);
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!((again.id.as_str(), again.reused), (id.as_str(), true));
    drop(again);

    write(ws.path(), "a/b/c.txt", "changed\n");
    let changed = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(
        nar_hash(&changed.dir).unwrap(),
        nar_hash(ws.path()).unwrap()
    );
    drop(changed);
    gc(cache.path(), &HashSet::new(), &gc_lock(cache.path())).unwrap();
    let left: Vec<String> = names_in(&objects)
        .into_iter()
        .filter(|name| objects.join(name).is_dir())
        .collect();
    assert_eq!(left, Vec::<String>::new(), "the older directories");
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}
