//! A host job's process world and shell: nothing outlives it, a second Ctrl-C kills at
//! once, its workspace is its own tree, and it runs like a CI job.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Repo, eventually};

const BASE: &str = "[defaults]\nbackend = \"host\"\ntimeout = \"60s\"\n";

fn repo(jobs: &str) -> Repo {
    Repo::new(&format!("{BASE}{jobs}"))
}

/// The first run's job artifact `name`, once the job has written it.
fn wait_for_artifact(repo: &Repo, job: &str, name: &str) -> String {
    let path = || -> Option<PathBuf> {
        let run = std::fs::read_dir(repo.state().join("runs"))
            .ok()?
            .next()?
            .ok()?;
        Some(
            run.path()
                .join("jobs")
                .join(job)
                .join("artifacts")
                .join(name),
        )
    };
    let mut text = String::new();
    let found = eventually(Duration::from_secs(60), || {
        text = path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        text.ends_with('\n')
    });
    assert!(found, "{job} never wrote {name}");
    text.trim().to_string()
}

/// Whether `pid` still runs `needle` (not a zombie, not a reused pid).
fn alive(pid: &str, needle: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    cmdline.contains(needle) && !zombie
}

/// Kills what a failing test found alive, so it leaks nothing.
fn kill(pid: &str) {
    if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[test]
fn a_setsid_daemon_ends_with_its_job_and_does_not_hold_it() {
    let repo = repo(
        "[jobs.daemon]\ncommand = '''\n\
         setsid sh -c 'echo $$ > \"$PIKACI_ARTIFACTS/daemon\"; exec sleep 1001' &\n\
         while ! test -s \"$PIKACI_ARTIFACTS/daemon\"; do sleep 0.05; done\n'''\n",
    );
    let started = Instant::now();
    repo.pikaci(&["run", "daemon"]).expect(0);
    let took = started.elapsed();
    let daemon = wait_for_artifact(&repo, "daemon", "daemon");
    let survived = !eventually(Duration::from_secs(2), || !alive(&daemon, "sleep 1001"));
    kill(&daemon);
    assert!(!survived, "the setsid daemon {daemon} outlived its job");
    assert!(
        took < Duration::from_secs(4),
        "the daemon's open pipe held the job: {took:?}"
    );
}

#[test]
fn jobs_of_a_killed_pikaci_end_and_gc_finds_none_running() {
    let repo = repo(
        "[jobs.hold]\ncommand = '''\n\
         sleep 777 & echo $! > \"$PIKACI_ARTIFACTS/sleep\"\n\
         echo $$ > \"$PIKACI_ARTIFACTS/bash\"\nwait\n'''\n",
    );
    let mut child = repo
        .command(&["run", "hold"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleep = wait_for_artifact(&repo, "hold", "sleep");
    let bash = wait_for_artifact(&repo, "hold", "bash");
    let host_log = std::fs::read_to_string(repo.latest_run().join("jobs/hold/host.log")).unwrap();
    let workspace = host_log
        .lines()
        .find_map(|l| l.strip_prefix("workspace: "))
        .and_then(|l| l.split(' ').next())
        .expect("host.log names the workspace");
    let scratch = Path::new(workspace).parent().unwrap().to_path_buf();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();
    let ended = eventually(Duration::from_secs(5), || {
        !alive(&sleep, "sleep 777") && !alive(&bash, "bash")
    });
    repo.pikaci(&["gc", "--keep", "0"]).expect(0);
    let still = alive(&sleep, "sleep 777");
    kill(&sleep);
    kill(&bash);
    assert!(
        ended && !still,
        "the job of a SIGKILLed pikaci kept running"
    );
    assert!(
        eventually(Duration::from_secs(5), || !scratch.exists()),
        "the job's directory {} is left under the temp dir",
        scratch.display()
    );
}

/// Ctrl-C, and a second one 300 ms later, to a running `pikaci`: how it exited, and how
/// long after the first.
fn ctrl_c_twice(child: &mut std::process::Child) -> (std::process::ExitStatus, Duration) {
    let pikaci = rustix::process::Pid::from_child(child);
    let started = Instant::now();
    rustix::process::kill_process(pikaci, rustix::process::Signal::INT).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(pikaci, rustix::process::Signal::INT).unwrap();
    (child.wait().unwrap(), started.elapsed())
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let repo = repo(
        "[jobs.stubborn]\ncommand = \"trap '' TERM INT; echo $$ > \\\"$PIKACI_ARTIFACTS/pid\\\"; sleep 60\"\n",
    );
    let mut child = repo
        .command(&["run", "stubborn"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = wait_for_artifact(&repo, "stubborn", "pid");
    let (status, took) = ctrl_c_twice(&mut child);
    kill(&pid);
    assert_eq!(status.code(), Some(130));
    assert!(
        took < Duration::from_millis(2500),
        "the second Ctrl-C waited for the grace period: {took:?}"
    );
}

#[test]
fn the_default_shell_fails_like_ci_and_sets_the_ci_variables() {
    let repo = repo(
        "[jobs.strict]\ncommand = \"false; echo still-ran\"\n\
         [jobs.pipe]\ncommand = \"false | cat\"\n\
         [jobs.lenient]\nshell = [\"bash\", \"--noprofile\", \"--norc\", \"-c\"]\ncommand = \"false; echo still-ran\"\n\
         [jobs.vars]\ncommand = 'echo \"$CI $PIKACI_RUN_ID $PIKACI_JOB\"; test -d \"$PIKACI_ARTIFACTS\"'\n",
    );
    repo.pikaci(&["run", "strict"]).expect(1);
    assert_eq!(repo.job("strict").1, "", "the shell stopped at `false`");
    repo.pikaci(&["run", "pipe"]).expect(1);
    repo.pikaci(&["run", "lenient"]).expect(0);
    assert_eq!(repo.job("lenient").1, "still-ran\n");
    repo.pikaci(&["run", "vars"]).expect(0);
    let run_id = repo.read_json(&repo.latest_run().join("run.json"))["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(repo.job("vars").1, format!("true {run_id} vars\n"));
}

#[test]
fn git_in_a_job_does_not_find_the_users_repository() {
    let repo = repo(
        "[jobs.git]\ncommand = 'pwd > \"$PIKACI_ARTIFACTS/pwd\"; git rev-parse --show-toplevel > \"$PIKACI_ARTIFACTS/top\" 2>&1 || true'\n\
         [jobs.rw]\nwritable-workspace = true\ncommand = 'pwd > \"$PIKACI_ARTIFACTS/pwd\"; git rev-parse --show-toplevel > \"$PIKACI_ARTIFACTS/top\" 2>&1 || true'\n",
    );
    for job in ["git", "rw"] {
        repo.pikaci(&["run", job]).expect(0);
        let artifacts = repo.latest_run().join("jobs").join(job).join("artifacts");
        let top = std::fs::read_to_string(artifacts.join("top")).unwrap();
        let root = repo.path().canonicalize().unwrap();
        assert!(
            !top.contains(&*root.to_string_lossy()),
            "git in job {job} found the user's repository: {top}"
        );
        let pwd = std::fs::read_to_string(artifacts.join("pwd")).unwrap();
        assert!(
            !Path::new(pwd.trim()).starts_with(&root),
            "job {job} ran inside the worktree: {pwd}"
        );
    }
}

#[test]
fn nix_flake_check_passes_in_a_host_job() {
    if crate::harness::run_tool(std::process::Command::new("nix").arg("--version")).is_none() {
        eprintln!("skipped: no nix");
        return;
    }
    let repo = repo("[jobs.check]\ncommand = \"nix flake check\"\n");
    repo.write(
        "flake.nix",
        r#"{
  outputs = { self }: {
    checks.x86_64-linux.trivial = derivation {
      name = "trivial";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo ok > $out" ];
    };
  };
}
"#,
    );
    repo.commit("flake");
    repo.pikaci(&["run", "check"]).expect(0);
}

/// As root, runs pikaci as uid/gid 1500 (no supplementary groups) in a repository that
/// user owns: the read-only workspace holds without root's bind mount.
#[test]
fn the_workspace_is_read_only_for_an_unprivileged_user_too() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to a test user");
        return;
    }
    let repo = repo(
        "[jobs.write]\ncommand = 'id -u > \"$PIKACI_ARTIFACTS/uid\"; chmod u+w src/lib.rs || true; echo x >> src/lib.rs'\n",
    );
    // Take the snapshot as root first: a user cannot publish one yet (issue 13, being
    // fixed in src/snapshot); what is tested here is the job's isolation.
    repo.command(&["run", "write"])
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .output()
        .unwrap();
    let owner = std::process::Command::new("chown")
        .args(["-R", "1500:1500"])
        .arg(repo._tmp.path())
        .status()
        .unwrap();
    assert!(owner.success());
    let mut as_user = std::process::Command::new("setpriv");
    as_user
        .args(["--reuid=1500", "--regid=1500", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pikaci"))
        .args(["run", "write"])
        .current_dir(repo.path())
        .env("HOME", repo.path())
        .env_remove("PIKACI_STATE_DIR");
    let run = crate::harness::Run::of(&mut as_user);
    run.expect(1);
    let (status, log) = repo.job("write");
    assert_eq!(status["status"], "failed", "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
    let uid = std::fs::read_to_string(repo.latest_run().join("jobs/write/artifacts/uid")).unwrap();
    assert_eq!(
        uid, "1500\n",
        "the job runs as the user, not as root of a namespace"
    );
    let snapshot = repo.read_json(&repo.latest_run().join("run.json"))["snapshot"]["dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&snapshot).join("src/lib.rs")).unwrap(),
        "pub fn x() {}\n",
        "the snapshot was not modified"
    );
}

/// Where user namespaces are unavailable (here: an `unshare` that always fails), a
/// user's job runs in a copy outside the worktree, and the run says what is not enforced.
#[test]
fn without_user_namespaces_the_job_gets_a_copy_and_the_run_says_so() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to a test user");
        return;
    }
    let repo =
        repo("[jobs.write]\ncommand = 'pwd > \"$PIKACI_ARTIFACTS/pwd\"; echo x >> src/lib.rs'\n");
    repo.command(&["run", "write"])
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .output()
        .unwrap();
    // Outside the worktree, which must stay as snapshotted.
    let stub_dir = tempfile::tempdir().unwrap();
    let stubs = stub_dir.path();
    std::fs::set_permissions(stubs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let unshare = stubs.join("unshare");
    std::fs::write(
        &unshare,
        "#!/bin/sh\necho 'unshare: Operation not permitted' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &unshare,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let owner = std::process::Command::new("chown")
        .args(["-R", "1500:1500"])
        .arg(repo._tmp.path())
        .status()
        .unwrap();
    assert!(owner.success());
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let mut as_user = std::process::Command::new("setpriv");
    as_user
        .args(["--reuid=1500", "--regid=1500", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pikaci"))
        .args(["run", "write"])
        .current_dir(repo.path())
        .env("HOME", repo.path())
        .env("PATH", path)
        .env_remove("PIKACI_STATE_DIR");
    let run = crate::harness::Run::of(&mut as_user);
    run.expect(0);
    assert!(
        run.stderr().contains("read-only workspace is not enforced"),
        "{}",
        run.stderr()
    );
    let job = repo.latest_run().join("jobs/write");
    let host_log = std::fs::read_to_string(job.join("host.log")).unwrap();
    assert!(host_log.contains("not enforced"), "{host_log}");
    let pwd = std::fs::read_to_string(job.join("artifacts/pwd")).unwrap();
    assert!(!Path::new(pwd.trim()).starts_with(repo.path()), "{pwd}");
    let snapshot = repo.read_json(&repo.latest_run().join("run.json"))["snapshot"]["dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&snapshot).join("src/lib.rs")).unwrap(),
        "pub fn x() {}\n",
        "the job wrote its copy, not the snapshot"
    );
}

/// The shell and variables of every backend, in one run per backend: `strict` must fail
/// at `false`, `vars` prints what the job sees.
const SHELL_JOBS: &str = "[jobs.strict]\ncommand = \"false; echo still-ran\"\n\
    [jobs.vars]\ncommand = 'echo \"$CI $PIKACI_RUN_ID $PIKACI_JOB\"; test -d \"$PIKACI_ARTIFACTS\"'\n";

fn assert_shell_semantics(repo: &Repo) {
    repo.pikaci(&["run", "strict", "vars"]).expect(1);
    let (status, log) = repo.job("strict");
    assert_eq!(status["status"], "failed", "{status}");
    assert!(!log.contains("still-ran"), "{log}");
    let run_id = repo.read_json(&repo.latest_run().join("run.json"))["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, log) = repo.job("vars");
    assert_eq!(status["status"], "passed", "{status}: {log}");
    assert_eq!(log, format!("true {run_id} vars\n"));
}

#[test]
fn incus_jobs_run_under_the_ci_shell_with_the_ci_variables() {
    let Some(image) = crate::harness::testbed_incus_image() else {
        return;
    };
    let repo = Repo::new(&crate::harness::incus_config(&image, "", SHELL_JOBS));
    assert_shell_semantics(&repo);
}

#[test]
fn microvm_jobs_run_under_the_ci_shell_with_the_ci_variables() {
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(work.path(), SHELL_JOBS));
    assert_shell_semantics(&repo);
}

#[test]
fn a_second_ctrl_c_kills_an_incus_job_at_once() {
    let Some(image) = crate::harness::testbed_incus_image() else {
        return;
    };
    let repo = Repo::new(&crate::harness::incus_config(
        &image,
        "",
        "[jobs.stubborn]\ncommand = \"trap '' TERM INT; echo guest-is-up; sleep 60\"\n",
    ));
    let mut child = repo.start_until("stubborn", "guest-is-up");
    let (status, took) = ctrl_c_twice(&mut child);
    assert_eq!(status.code(), Some(130));
    assert_eq!(repo.job("stubborn").0["status"], "cancelled");
    // The instance is deleted after the kill (about 1 s here); the grace alone is 5 s.
    assert!(
        took < Duration::from_millis(4500),
        "the second Ctrl-C waited for the grace period: {took:?}"
    );
}

/// A regression guard more than a fix: the microVM supervisor stops the guest as soon as
/// its stdin closes, without waiting for the job, so this passed before the fix too.
#[test]
fn a_second_ctrl_c_stops_a_microvm_job_at_once() {
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(
        work.path(),
        "[jobs.stubborn]\ncommand = \"trap '' TERM INT; echo guest-is-up; sleep 60\"\n",
    ));
    let mut child = repo.start_until("stubborn", "guest-is-up");
    let (status, took) = ctrl_c_twice(&mut child);
    assert_eq!(status.code(), Some(130));
    assert_eq!(repo.job("stubborn").0["status"], "cancelled");
    let left = crate::harness::processes_left_under(work.path(), Duration::from_secs(10));
    assert_eq!(left, Vec::<String>::new(), "left running");
    assert!(
        took < Duration::from_millis(4500),
        "the second Ctrl-C waited for the grace period: {took:?}"
    );
}
