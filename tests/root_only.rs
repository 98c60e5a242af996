//! The cases that need root on the machine running the tests, run as root by
//! scripts/test.sh (`root_only::`); every other test runs as an unprivileged user. Each
//! says why it needs root.

use crate::harness::{Repo, Run, require_root};

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop. Root: it mounts.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "pikaci-full"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success());
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The guest host's disk is full (issue 21, finding 14): the workspace cannot reach it,
/// and the job's error names the OS error, not only that a step failed. Root: it mounts
/// a small tmpfs as the host's work dir.
#[test]
fn a_full_disk_on_the_host_names_the_os_error() {
    if !require_root("mounting a tmpfs") {
        return;
    }
    // The tmpfs is mounted here, after the own-store hosts made their mount namespaces:
    // only the loopback sshd in this machine's namespace sees it.
    let Some(testbed) = crate::harness::testbed_microvm_shared_store() else {
        return;
    };
    let disk = SmallDisk::mount("256k");
    let repo = Repo::new(&testbed.config(disk.dir.path(), "[jobs.a]\ncommand = \"true\"\n"));
    repo.write("big", &"0123456789abcdef".repeat(64 << 10));
    repo.commit("a megabyte");
    repo.pikaci(&["run", "a"]).expect(3);
    let (status, _) = repo.job("a");
    assert_eq!(status["status"], "error", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("No space left on device"),
        "the OS error is named: {message}"
    );
}

/// The state dir's disk fills up mid-run: pikaci says so, and every record it left is
/// whole (records are written to a temporary file and renamed). Root: it mounts a small
/// tmpfs (from tests/running.rs).
#[test]
fn a_full_state_dir_leaves_no_half_written_record() {
    if !require_root("mounting a tmpfs") {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "pikaci-full"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\ntimeout = \"60s\"\n\
         [jobs.loud]\ncommand = \"yes 0123456789 | head -c 2000000\"\n\
         [jobs.after]\nneeds = [\"loud\"]\ncommand = \"true\"\n",
    );
    let run = Run::of(
        repo.command(&["run", "--output", "jsonl"])
            .env("PIKACI_STATE_DIR", mnt.path()),
    );
    assert_ne!(run.code(), 0, "a full disk is not a pass");
    // Which record hit the full disk first depends on timing; the message's shape does not.
    let said = run
        .stderr()
        .replace(&mnt.path().display().to_string(), "[STATE]");
    let said = crate::harness::redact(&said, &repo);
    let said = regex::Regex::new(r"writing \S+: ")
        .unwrap()
        .replace(&said, "writing [RECORD]: ");
    let said = regex::Regex::new(r"\[RUN\]/\S*\.tmp-")
        .unwrap()
        .replace(&said, "[RUN]/[DIR].tmp-");
    insta::assert_snapshot!(said, @r#"error: writing [RECORD]: No space left on device (os error 28) at path "[STATE]/runs/[RUN]/[DIR].tmp-[TMP]""#);
    let mut records = 0;
    for entry in walkdir::WalkDir::new(mnt.path())
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.ends_with(".json") {
            let bytes = std::fs::read(path).unwrap();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "half-written: {}",
                path.display()
            );
            records += 1;
        }
        assert!(
            !name.contains(".tmp"),
            "temporary file left: {}",
            path.display()
        );
    }
    assert!(records > 0);
}

/// As root the snapshot's read-only modes hold nothing back: only the read-only bind mount
/// its reaper makes in the job's own mount namespace does. Root: what is tested is root's
/// path (no user namespace).
#[test]
fn as_root_the_read_only_workspace_is_its_bind_mount() {
    if !require_root("running a host job as root") {
        return;
    }
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n\
         [jobs.ro]\ncommand = \"id -u; echo x >> src/lib.rs\"\n\
         [jobs.rw]\nwritable-workspace = true\ncommand = \"echo x >> src/lib.rs\"\n",
    );
    repo.pikaci(&["run", "ro"]).expect(1);
    let (_, log) = repo.job("ro");
    assert!(
        log.starts_with("0\n") && log.contains("Read-only file system"),
        "{log}"
    );
    let host_log = repo.latest_run().join("jobs/ro/host.log");
    let host_log = std::fs::read_to_string(host_log).unwrap();
    assert!(host_log.contains("(MountNamespace)"), "{host_log}");
    repo.pikaci(&["run", "rw"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("src/lib.rs")).unwrap(),
        "pub fn x() {}\n"
    );
    // The mount stayed in the job's namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("pikaci-job-"), "{mounts}");
}
