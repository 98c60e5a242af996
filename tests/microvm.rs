//! The microVM backend end to end: the real runner fixture built by `nix build` on the
//! loopback SSH host, real virtiofsd, qemu under TCG, the static agent in the guest.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{
    MicrovmTestbed, Repo, children_of, eventually, processes_left_under, processes_under,
    testbed_microvm,
};

struct Setup {
    repo: Repo,
    /// pikaci's work dir on the host; a temp dir of its own so leftovers can be found.
    work: tempfile::TempDir,
}

fn setup(testbed: &MicrovmTestbed, jobs: &str) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(work.path(), jobs));
    Setup { repo, work }
}

fn assert_nothing_left(work: &Path) {
    let left = processes_left_under(work, Duration::from_secs(10));
    assert_eq!(left, Vec::<String>::new(), "left running");
    let jobs = work.join("jobs");
    let leftover: Vec<_> = std::fs::read_dir(&jobs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftover.is_empty(), "job dirs left: {leftover:?}");
}

#[test]
fn jobs_run_in_microvms_with_their_outcomes_and_artifacts() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let s = setup(
        &testbed,
        r#"
[jobs.pass]
command = "id -un; cat src/lib.rs; echo made in the guest > $PIKACI_ARTIFACTS/made.txt"

[jobs.fail]
command = "echo about to fail; exit 7"

[jobs.readonly]
root = true
command = "id -u; echo x > /workspace/src/lib.rs"

[jobs.writable]
writable-workspace = true
command = "echo changed > src/lib.rs && cat src/lib.rs"

[targets.all]
jobs = ["pass", "fail", "readonly", "writable"]
"#,
    );
    let run = s.repo.pikaci(&["run", "all"]);
    run.expect(1);

    let (status, log) = s.repo.job("pass");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(status["backend"], "microvm");
    assert_eq!(
        log, "pikaci\npub fn x() {}\n",
        "runs unprivileged in the workspace"
    );
    let made = s.repo.latest_run().join("jobs/pass/artifacts/made.txt");
    assert_eq!(
        std::fs::read_to_string(made).unwrap(),
        "made in the guest\n"
    );

    let (status, log) = s.repo.job("fail");
    assert_eq!(status["status"], "failed");
    assert_eq!(status["exit_code"], 7, "the job's own exit code is kept");
    assert_eq!(log, "about to fail\n");

    // Root in the guest, and still the workspace share is read-only (virtiofsd enforces
    // it, not permissions).
    let (status, log) = s.repo.job("readonly");
    assert_eq!(status["status"], "failed", "{log}");
    assert!(log.starts_with("0\n"), "{log}");
    assert!(log.contains("Read-only file system"), "{log}");

    let (status, log) = s.repo.job("writable");
    assert_eq!(status["status"], "passed", "{log}");
    assert_eq!(log, "changed\n");

    let snapshot = s.repo.read_json(&s.repo.latest_run().join("run.json"))["snapshot"]["dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&snapshot).join("src/lib.rs")).unwrap(),
        "pub fn x() {}\n",
        "no job changed the snapshot"
    );
    let host_log = std::fs::read_to_string(s.repo.latest_run().join("jobs/pass/host.log")).unwrap();
    assert!(
        host_log.contains("reboot: Power down"),
        "serial console in host.log: {host_log}"
    );
    assert_nothing_left(s.work.path());
}

#[test]
fn timeout_ends_near_the_deadline_and_leaves_nothing() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.slow]\ntimeout = \"3s\"\ncommand = \"echo started; sleep 300\"\n",
    );
    let started = Instant::now();
    s.repo.pikaci(&["run", "slow"]).expect(1);
    let took = started.elapsed();
    let (status, log) = s.repo.job("slow");
    assert_eq!(status["status"], "timed_out", "{status}");
    assert_eq!(log, "started\n");
    // 3 s of job plus boot and teardown; far below the 300 s the job wanted.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_nothing_left(s.work.path());
}

/// A runner fixture of its own (another derivation name), so the first run must build it.
fn private_runner(testbed: &MicrovmTestbed, dir: &Path) -> String {
    let source = testbed
        .runner
        .strip_prefix("path:")
        .and_then(|r| r.strip_suffix("#runner"))
        .expect("path:DIR#runner");
    for name in ["flake.nix", "vmlinuz", "initrd"] {
        std::fs::copy(Path::new(source).join(name), dir.join(name)).unwrap();
    }
    let flake = std::fs::read_to_string(dir.join("flake.nix")).unwrap();
    let unique = format!("pikaci-testbed-runner-{}", std::process::id());
    std::fs::write(
        dir.join("flake.nix"),
        flake.replace("\"pikaci-testbed-runner\"", &format!("\"{unique}\"")),
    )
    .unwrap();
    format!("path:{}#runner", dir.display())
}

/// On a host with a Nix store of its own: the runner is built there, into that store.
#[test]
fn a_job_with_another_command_builds_nothing() {
    let Some(mut testbed) = testbed_microvm().and_then(|t| t.on_own_store_host(0)) else {
        return;
    };
    let fixture = tempfile::tempdir().unwrap();
    testbed.runner = private_runner(&testbed, fixture.path());
    let s = setup(
        &testbed,
        "[jobs.first]\ncommand = \"echo one\"\n\n[jobs.second]\ncommand = \"echo two; exit 0\"\ntimeout = \"5m\"\n",
    );
    let build_log = |repo: &Repo| {
        std::fs::read_to_string(repo.latest_run().join("prepare/microvm-runner-default.log"))
            .unwrap()
    };
    s.repo.pikaci(&["run", "first"]).expect(0);
    let first = build_log(&s.repo);
    assert!(
        first.contains("building '"),
        "the first run builds the runner: {first}"
    );
    s.repo.pikaci(&["run", "second"]).expect(0);
    let second = build_log(&s.repo);
    assert!(
        !second.contains("building") && !second.contains("will be built"),
        "nix built something for a job that only changed its command: {second}"
    );
    assert_eq!(s.repo.job("second").1, "two\n");
    let gcroots: Vec<_> = std::fs::read_dir(s.work.path().join("gcroots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(gcroots.len(), 1, "one runner, one GC root");
    let runner = std::fs::read_link(gcroots[0].path()).unwrap();
    assert!(runner.starts_with("/nix/store/"), "{runner:?}");
}

#[test]
fn sigint_sigterm_and_sigkill_mid_job_leave_no_guest_behind() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    use rustix::process::Signal;
    for signal in [Signal::INT, Signal::TERM, Signal::KILL] {
        let s = setup(
            &testbed,
            "[jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
        );
        // Once the guest runs the job: its output reaches the serial console.
        let mut child = s.repo.start_until("slow", "guest-is-up");
        assert!(
            !processes_under(s.work.path()).is_empty(),
            "a guest is running"
        );
        let children = children_of(child.id());
        assert!(children.len() >= 2, "ssh master and client: {children:?}");
        rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
        let status = child.wait().unwrap();
        if signal != Signal::KILL {
            assert_eq!(status.code(), Some(130));
            assert_eq!(s.repo.job("slow").0["status"], "cancelled");
            assert_nothing_left(s.work.path());
        } else {
            // pikaci had no chance to clean up: the supervisor on the host sees its stdin
            // close and stops the guest itself. The run shows as abandoned.
            let status = s.repo.pikaci(&["status", "latest", "--json"]);
            assert_eq!(status.json()["run"]["status"], "abandoned");
            let left = processes_left_under(s.work.path(), Duration::from_secs(20));
            assert_eq!(left, Vec::<String>::new(), "left running after SIGKILL");
            // Its job dir on the host stays until gc, which knows the run is over.
            let jobs = s.work.path().join("jobs");
            assert_eq!(
                std::fs::read_dir(&jobs).unwrap().count(),
                1,
                "the killed run's job dir"
            );
            let gc = s.repo.pikaci(&["gc"]);
            gc.expect(0);
            assert!(
                gc.stdout().contains("removed 1 job dir(s)"),
                "{}",
                gc.stdout()
            );
            assert_nothing_left(s.work.path());
        }
        // Also pikaci's own children (the SSH master and clients) end with it.
        let alive = || {
            children
                .iter()
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                        !stat
                            .rsplit_once(") ")
                            .is_some_and(|(_, r)| r.starts_with('Z'))
                    })
                })
                .count()
        };
        assert!(
            eventually(Duration::from_secs(20), || alive() == 0),
            "{signal:?}: {} of pikaci's children outlived it",
            alive()
        );
    }
}

/// The SSH connection dies mid-job (pikaci's ssh master is killed, so every session on
/// it ends with ssh's connection error): the job ends as an error that says so, and the
/// host stops the guest by itself.
#[test]
fn a_dropped_ssh_connection_is_an_error_and_the_host_cleans_up() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
    );
    let mut child = s.repo.start_until("slow", "guest-is-up");
    let started = std::time::Instant::now();
    crate::harness::kill_ssh_master(child.id());
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "pikaci noticed within a minute"
    );
    assert_eq!(status.code(), Some(3), "an infrastructure error");
    let (record, _) = s.repo.job("slow");
    assert_eq!(record["status"], "error", "{record}");
    let message = record["message"].as_str().unwrap_or_default();
    insta::assert_snapshot!(crate::harness::redact(message, &s.repo), @"the connection to [SSH-HOST] was lost while the job ran; the host stopped the guest");
    // The supervisor saw its stdin close and stopped virtiofsd and qemu.
    let left = processes_left_under(s.work.path(), Duration::from_secs(20));
    assert_eq!(left, Vec::<String>::new(), "left running");
}

#[test]
fn runner_build_failures_and_bad_runners_are_reported() {
    let Some(mut testbed) = testbed_microvm() else {
        return;
    };
    let fixture = tempfile::tempdir().unwrap();
    let flake = |body: &str| {
        format!(
            "{{ outputs = {{ self }}: {{ packages.x86_64-linux.runner = derivation {{ \
             name = \"bad-runner\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" \"{body}\" ]; }}; }}; }}\n"
        )
    };
    std::fs::write(
        fixture.path().join("flake.nix"),
        flake("echo the fixture build broke >&2; exit 1"),
    )
    .unwrap();
    testbed.runner = format!("path:{}#runner", fixture.path().display());
    let s = setup(
        &testbed,
        "[jobs.a]\ncommand = \"true\"\n\n[jobs.b]\ncommand = \"true\"\n",
    );
    s.repo.pikaci(&["run"]).expect(3);
    for name in ["a", "b"] {
        let message = s.repo.job(name).0["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("cannot build the microVM runner"),
            "{message}"
        );
        assert!(
            message.contains("the fixture build broke"),
            "log tail: {message}"
        );
    }

    // Builds, but is no runner.
    std::fs::write(
        fixture.path().join("flake.nix"),
        flake("/bin/mkdir -p $out/bin"),
    )
    .unwrap();
    s.repo.pikaci(&["run", "a"]).expect(3);
    let message = s.repo.job("a").0["message"].as_str().unwrap().to_string();
    assert!(message.contains("has no bin/microvm-run"), "{message}");
    assert_nothing_left(s.work.path());
}

#[test]
fn a_local_host_runs_microvms_on_the_local_snapshot() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let s = setup(
        &testbed,
        r#"
[jobs.read]
command = "cat src/lib.rs > $PIKACI_ARTIFACTS/copy.txt"

[jobs.write]
writable-workspace = true
command = "echo local > src/lib.rs && cat src/lib.rs"

[targets.both]
jobs = ["read", "write"]
"#,
    );
    s.repo.pikaci(&["run", "both", "--host", "local"]).expect(0);
    let copy = s.repo.latest_run().join("jobs/read/artifacts/copy.txt");
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "pub fn x() {}\n");
    assert_eq!(s.repo.job("write").1, "local\n");
    assert!(
        !s.work.path().join("snapshots").exists(),
        "nothing synced: the guest shares the local snapshot"
    );
    assert_nothing_left(s.work.path());
}

/// A runner that follows the contract but whose `microvm-run` is `script`.
fn scripted_runner(dir: &Path, script: &str) -> String {
    let flake = format!(
        r#"{{ outputs = {{ self }}: {{ packages.x86_64-linux.runner = derivation {{
  name = "scripted-runner"; system = "x86_64-linux"; builder = "/bin/sh";
  run = ''{script}'';
  args = [ "-c" "/bin/mkdir -p $out/bin $out/share/microvm/virtiofs/artifacts && echo a.sock > $out/share/microvm/virtiofs/artifacts/socket && echo \"$run\" > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run" ];
}}; }}; }}
"#
    );
    std::fs::write(dir.join("flake.nix"), flake).unwrap();
    format!("path:{}#runner", dir.display())
}

#[test]
fn a_guest_that_never_boots_or_writes_no_result_is_reported() {
    let Some(mut testbed) = testbed_microvm() else {
        return;
    };
    let fixture = tempfile::tempdir().unwrap();

    // Never boots: the host stops it after the job's timeout plus the boot allowance.
    testbed.runner = scripted_runner(
        fixture.path(),
        "#!/bin/sh\necho hanging at boot\nexec sleep 300\n",
    );
    let s = setup(
        &testbed,
        "[jobs.hang]\ntimeout = \"2s\"\ncommand = \"true\"\n",
    );
    let config = std::fs::read_to_string(s.repo.path().join("pikaci.toml")).unwrap();
    s.repo.write(
        "pikaci.toml",
        &config.replace("boot-timeout = \"60s\"", "boot-timeout = \"3s\""),
    );
    let started = Instant::now();
    s.repo.pikaci(&["run", "hang"]).expect(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let (status, _) = s.repo.job("hang");
    assert_eq!(status["status"], "timed_out", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("plus 3s for booting"), "{message}");
    let host_log = std::fs::read_to_string(s.repo.latest_run().join("jobs/hang/host.log")).unwrap();
    assert!(
        host_log.contains("hanging at boot"),
        "serial log kept: {host_log}"
    );
    assert_nothing_left(s.work.path());

    // Ends without a result (as when the agent crashes): an error that says so.
    testbed.runner = scripted_runner(
        fixture.path(),
        "#!/bin/sh\necho kernel panic, say\nexit 1\n",
    );
    let s = setup(&testbed, "[jobs.crash]\ncommand = \"true\"\n");
    s.repo.pikaci(&["run", "crash"]).expect(3);
    let (status, _) = s.repo.job("crash");
    assert_eq!(status["status"], "error");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("the guest produced no result"),
        "{message}"
    );
    assert!(
        message.contains("kernel panic, say"),
        "host.log tail: {message}"
    );
    assert_nothing_left(s.work.path());
}
