use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;

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
    // Files written just now are "racy" for the index; date them back like real edits.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if entry.file_type().is_file() {
            let file = fs::File::options().write(true).open(entry.path()).unwrap();
            file.set_modified(old).unwrap();
        }
    }
}

#[test]
fn hash_equals_nix_hash_path() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let snapshot = take(ws.path(), cache.path(), &[]).unwrap();
    let nix = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "hash",
            "path",
        ])
        .arg(&snapshot.dir)
        .output();
    let Ok(nix) = nix else {
        assert!(std::env::var_os("CI").is_none(), "nix is required in CI");
        eprintln!("skipped: nix is not installed");
        return;
    };
    assert!(
        nix.status.success(),
        "{}",
        String::from_utf8_lossy(&nix.stderr)
    );
    assert_eq!(
        snapshot.nar_hash,
        String::from_utf8_lossy(&nix.stdout).trim()
    );
    // The workspace itself hashes the same: the snapshot is faithful.
    assert_eq!(nar_hash(ws.path()).unwrap(), snapshot.nar_hash);
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
    assert_eq!(
        second,
        Snapshot {
            reused: true,
            ..first
        }
    );
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
    assert_ne!(first.nar_hash, second.nar_hash);
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
            .all(|w| w[0].nar_hash == w[1].nar_hash && w[0].dir == w[1].dir)
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
    for index in read_dir_paths(&cache.path().join("index")) {
        fs::write(index, "garbage\0\0").unwrap();
    }
    let second = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(first.nar_hash, second.nar_hash);
    assert!(take(ws.path(), cache.path(), &[]).unwrap().reused);
}

#[test]
fn open_finds_published_and_rejects_unknown() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let taken = take(ws.path(), cache.path(), &[]).unwrap();
    let opened = open(cache.path(), &taken.nar_hash).unwrap();
    assert_eq!((opened.dir, opened.files), (taken.dir, taken.files));
    let unknown = format!("sha256-{}", "A".repeat(43) + "=");
    assert!(matches!(
        open(cache.path(), &unknown),
        Err(SnapshotError::Missing { .. })
    ));
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
    assert_eq!(nar_hash(&snapshot.dir).unwrap(), snapshot.nar_hash);
}

#[test]
fn gc_removes_unreferenced_snapshots_and_objects() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    let keep = take(ws.path(), cache.path(), &[]).unwrap();
    write(ws.path(), "only-in-second", "unique content");
    let drop = take(ws.path(), cache.path(), &[]).unwrap();
    let stats = gc(cache.path(), &HashSet::from([keep.nar_hash.clone()])).unwrap();
    assert_eq!(stats.snapshots_removed, 1);
    assert_eq!(
        stats.objects_removed, 1,
        "only the object unique to the dropped snapshot"
    );
    assert!(keep.dir.is_dir() && !drop.dir.exists());
    assert_eq!(nar_hash(&keep.dir).unwrap(), keep.nar_hash);
}

#[test]
fn objects_removed_by_gc_are_added_again_when_needed() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    sample_tree(ws.path());
    age_files(ws.path());
    let first = take(ws.path(), cache.path(), &[]).unwrap();
    gc(cache.path(), &HashSet::new()).unwrap();
    assert_eq!(object_count(cache.path()), 0);
    let again = take(ws.path(), cache.path(), &[]).unwrap();
    assert_eq!(again.nar_hash, first.nar_hash);
    assert!(!again.reused, "the tree was rebuilt");
    assert_eq!(nar_hash(&again.dir).unwrap(), first.nar_hash);
}
