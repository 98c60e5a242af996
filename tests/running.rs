//! Running jobs on the host backend: outcomes, deadlines, parallelism, needs, signals.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Repo, Run};

const BASE: &str = "[defaults]\nbackend = \"host\"\ntimeout = \"60s\"\n";

fn repo(jobs: &str) -> Repo {
    Repo::new(&format!("{BASE}{jobs}"))
}

fn job_status(repo: &Repo, job: &str) -> serde_json::Value {
    repo.read_json(&repo.latest_run().join("jobs").join(job).join("status.json"))
}

#[test]
fn passing_job_writes_records_log_and_artifacts() {
    let repo = repo(
        "[jobs.ok]\ncommand = \"echo hello from $PIKACI_JOB; cat src/lib.rs; echo art > $PIKACI_ARTIFACTS/out.txt\"\n",
    );
    let run = repo.pikaci(&["run", "ok"]);
    run.expect(0);
    let dir = repo.latest_run().join("jobs/ok");
    let log = std::fs::read_to_string(dir.join("guest.log")).unwrap();
    assert_eq!(log, "hello from ok\npub fn x() {}\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("artifacts/out.txt")).unwrap(),
        "art\n"
    );
    let result = repo.read_json(&dir.join("result.json"));
    assert_eq!(result["status"], "passed");
    assert_eq!(result["exit_code"], 0);
    assert_eq!(job_status(&repo, "ok")["status"], "passed");
    let run_json = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(run_json["status"], "passed");
    assert!(run.stdout().contains("pass"), "{}", run.stdout());
}

#[test]
fn failing_job_keeps_exit_code_and_exits_1() {
    let repo = repo("[jobs.bad]\ncommand = \"echo oops >&2; exit 7\"\n");
    repo.pikaci(&["run", "bad"]).expect(1);
    let status = job_status(&repo, "bad");
    assert_eq!(status["status"], "failed");
    assert_eq!(status["exit_code"], 7);
    let log = std::fs::read_to_string(repo.latest_run().join("jobs/bad/guest.log")).unwrap();
    assert_eq!(log, "oops\n", "stderr is captured in the log");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let repo = repo(
        "[jobs.slow]\ntimeout = \"1s\"\ncommand = \"echo $$ > $PIKACI_ARTIFACTS/pgid; sleep 300 & sleep 300; wait\"\n",
    );
    let started = Instant::now();
    repo.pikaci(&["run", "slow"]).expect(1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ended near the deadline"
    );
    let status = job_status(&repo, "slow");
    assert_eq!(status["status"], "timed_out");
    insta::assert_snapshot!(status["message"].as_str().unwrap(), @"did not finish within its timeout of 1s; its process group was killed");
    let pgid: i32 = std::fs::read_to_string(repo.latest_run().join("jobs/slow/artifacts/pgid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        pikaci::exec::live_group_members_after(pgid, Duration::from_secs(5)),
        Vec::<i32>::new(),
        "process group {pgid} survived"
    );
}

#[test]
fn independent_jobs_run_in_parallel() {
    // Each job waits until the other has started: only possible when both run at once.
    let repo = repo(
        "[jobs.a]\ncommand = \"touch /tmp/$RUN_TAG.a; for i in $(seq 100); do [ -e /tmp/$RUN_TAG.b ] && exit 0; sleep 0.1; done; exit 1\"\n\
         [jobs.b]\ncommand = \"touch /tmp/$RUN_TAG.b; for i in $(seq 100); do [ -e /tmp/$RUN_TAG.a ] && exit 0; sleep 0.1; done; exit 1\"\n",
    );
    let tag = format!("pikaci-par-{}", std::process::id());
    let run = Run::of(
        repo.command(&["run", "a", "b", "--jobs", "2"])
            .env("RUN_TAG", &tag),
    );
    let _ = std::fs::remove_file(format!("/tmp/{tag}.a"));
    let _ = std::fs::remove_file(format!("/tmp/{tag}.b"));
    run.expect(0);
}

#[test]
fn jobs_1_runs_one_at_a_time() {
    let repo = repo(
        "[jobs.a]\ncommand = \"mkdir /tmp/$RUN_TAG.lock && sleep 0.3 && rmdir /tmp/$RUN_TAG.lock\"\n\
         [jobs.b]\ncommand = \"mkdir /tmp/$RUN_TAG.lock && sleep 0.3 && rmdir /tmp/$RUN_TAG.lock\"\n",
    );
    let tag = format!("pikaci-serial-{}", std::process::id());
    let run = Run::of(
        repo.command(&["run", "a", "b", "--jobs", "1"])
            .env("RUN_TAG", &tag),
    );
    run.expect(0);
}

#[test]
fn needs_orders_jobs_and_skips_dependents_of_failures() {
    let repo = repo(
        "[jobs.build]\ncommand = \"sleep 0.3; date +%s%N > /tmp/$RUN_TAG.build\"\n\
         [jobs.test]\nneeds = [\"build\"]\ncommand = \"test -e /tmp/$RUN_TAG.build\"\n\
         [jobs.broken]\ncommand = \"exit 1\"\n\
         [jobs.after]\nneeds = [\"broken\"]\ncommand = \"true\"\n",
    );
    let tag = format!("pikaci-needs-{}", std::process::id());
    let out = repo
        .command(&["run", "test", "after"])
        .env("RUN_TAG", &tag)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(format!("/tmp/{tag}.build"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(job_status(&repo, "build")["status"], "passed");
    assert_eq!(
        job_status(&repo, "test")["status"],
        "passed",
        "test ran after build"
    );
    assert_eq!(job_status(&repo, "broken")["status"], "failed");
    let after = job_status(&repo, "after");
    assert_eq!(after["status"], "skipped");
    assert_eq!(after["message"], "not run: needed job `broken` failed");
}

#[test]
fn workspace_is_read_only_unless_asked() {
    let repo = repo(
        "[jobs.ro]\ncommand = \"echo x >> src/lib.rs\"\n\
         [jobs.rw]\nwritable-workspace = true\ncommand = \"echo x >> src/lib.rs && grep -c x src/lib.rs\"\n",
    );
    repo.pikaci(&["run", "ro"]).expect(1);
    repo.pikaci(&["run", "rw"]).expect(0);
    repo.pikaci(&["run", "ro"]).expect(1);
    let snapshot = repo.read_json(&repo.latest_run().join("run.json"))["snapshot"]["dir"]
        .as_str()
        .unwrap()
        .to_string();
    let content =
        std::fs::read_to_string(std::path::Path::new(&snapshot).join("src/lib.rs")).unwrap();
    assert_eq!(content, "pub fn x() {}\n", "the snapshot was not modified");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("src/lib.rs")).unwrap(),
        "pub fn x() {}\n"
    );
}

#[test]
fn sigint_cancels_the_run_and_kills_jobs() {
    cancel_with(rustix::process::Signal::INT);
}

#[test]
fn sigterm_cancels_the_run_and_kills_jobs() {
    cancel_with(rustix::process::Signal::TERM);
}

fn cancel_with(signal: rustix::process::Signal) {
    let repo = repo("[jobs.slow]\ncommand = \"echo $$ > $PIKACI_ARTIFACTS/pgid; sleep 300\"\n");
    let mut child = repo
        .command(&["run", "slow", "--output", "jsonl"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pgid_file = || {
        std::fs::read_dir(repo.state().join("runs"))
            .ok()?
            .next()?
            .ok()
            .map(|e| e.path().join("jobs/slow/artifacts/pgid"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let pgid_path = loop {
        if let Some(path) = pgid_file().filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        {
            break path;
        }
        assert!(Instant::now() < deadline, "job never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let pgid: i32 = std::fs::read_to_string(&pgid_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(job_status(&repo, "slow")["status"], "cancelled");
    assert_eq!(
        repo.read_json(&repo.latest_run().join("run.json"))["status"],
        "cancelled"
    );
    let live = pikaci::exec::live_group_members_after(pgid, Duration::from_secs(5));
    assert_eq!(live, Vec::<i32>::new());
}

#[test]
fn job_env_and_untracked_files_reach_the_job() {
    let repo = repo(
        "[jobs.env]\nenv = { GREETING = \"hi there\" }\ncommand = \"test \\\"$GREETING\\\" = 'hi there' && cat notes.txt\"\n",
    );
    repo.write("notes.txt", "untracked but not ignored\n");
    repo.write(".pikaci/ignored-by-git", "x");
    repo.pikaci(&["run", "env"]).expect(0);
    let log = std::fs::read_to_string(repo.latest_run().join("jobs/env/guest.log")).unwrap();
    assert_eq!(log, "untracked but not ignored\n");
}

#[test]
fn backend_setup_failure_is_an_infrastructure_error() {
    let repo = Repo::new(
        "[backends.incus]\nimage = \"pikaci/no-such-image\"\n\n[jobs.vm]\nbackend = \"incus\"\ncommand = \"true\"\n",
    );
    let run = repo.pikaci(&["run", "vm"]);
    run.expect(3);
    let status = job_status(&repo, "vm");
    assert_eq!(status["status"], "error");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("Incus setup failed"),
        "{status}"
    );
}

#[test]
fn output_jsonl_streams_versioned_events() {
    let repo = repo("[jobs.ok]\ncommand = \"true\"\n");
    let run = repo.pikaci(&["run", "ok", "--output", "jsonl"]);
    run.expect(0);
    let types: Vec<String> = run
        .stdout()
        .lines()
        .map(|l| {
            let event: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(event["schema_version"], 1);
            event["type"].as_str().unwrap().to_string()
        })
        .collect();
    let phases = types.iter().filter(|t| *t == "job_phase").count();
    assert_eq!(phases, 5, "setup, launch, run, collect, cleanup: {types:?}");
    let main: Vec<&String> = types.iter().filter(|t| *t != "job_phase").collect();
    assert_eq!(
        main,
        ["run_started", "job_started", "job_finished", "run_finished"]
    );
    let file = std::fs::read_to_string(repo.latest_run().join("events.jsonl")).unwrap();
    assert_eq!(file, run.stdout(), "events.jsonl holds the same stream");
}

#[test]
fn relative_state_dir_inside_the_workspace_is_excluded() {
    let repo = repo("[jobs.ls]\ncommand = \"ls -A\"\n");
    std::fs::write(repo.path().join(".gitignore"), "").unwrap(); // not even ignored by git
    for _ in 0..2 {
        let run = repo.pikaci(&["--state-dir", "st", "run", "ls"]);
        run.expect(0);
    }
    let mut runs: Vec<_> = std::fs::read_dir(repo.path().join("st/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    let log = std::fs::read_to_string(runs[1].join("jobs/ls/guest.log")).unwrap();
    assert!(
        !log.contains("st\n"),
        "the state dir is not in the snapshot: {log}"
    );
    assert!(log.contains("pikaci.toml"), "{log}");
}

#[test]
fn eight_concurrent_runs_on_one_state_dir_with_gc_in_between() {
    let repo = repo(
        "[jobs.a]\ncommand = \"sleep 1; echo $PIKACI_RUN_ID > $PIKACI_ARTIFACTS/run-id\"\n\n\
         [jobs.b]\nneeds = [\"a\"]\ncommand = \"cat src/lib.rs\"\n",
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            repo.command(&["run", "--output", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // While they run: gc must remove nothing that is in use.
    std::thread::sleep(Duration::from_millis(500));
    repo.pikaci(&["gc", "--keep", "0"]).expect(0);
    let mut ids = std::collections::BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = doc["run"]["run_id"].as_str().unwrap().to_string();
        let dir = repo.state().join("runs").join(&id);
        let record = repo.read_json(&dir.join("run.json"));
        assert_eq!(record["status"], "passed", "{record}");
        // Each run's job saw its own run, nobody else's.
        let seen = std::fs::read_to_string(dir.join("jobs/a/artifacts/run-id")).unwrap();
        assert_eq!(seen.trim(), id);
        let log = std::fs::read_to_string(dir.join("jobs/b/guest.log")).unwrap();
        assert_eq!(log, "pub fn x() {}\n");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 8, "eight distinct runs");
}
#[test]
fn sub_second_timeouts_are_shown_and_passed_as_written() {
    let repo = repo("[jobs.slow]\ntimeout = \"1500ms\"\ncommand = \"sleep 30\"\n");
    repo.pikaci(&["run", "slow"]).expect(1);
    let status = job_status(&repo, "slow");
    assert_eq!(status["status"], "timed_out");
    insta::assert_snapshot!(status["message"].as_str().unwrap(), @"did not finish within its timeout of 1s 500ms; its process group was killed");
    assert!(
        status["duration_ms"].as_u64().unwrap() >= 1500,
        "not cut to 1s: {status:#}"
    );
    let request = repo.read_json(&repo.latest_run().join("jobs/slow/request.json"));
    assert_eq!(request["timeout_ms"], 1500);
    assert_eq!(
        request["timeout_secs"], 2,
        "rounded up for older agents: {request:#}"
    );
}

#[test]
fn running_out_of_file_descriptors_names_the_os_error_and_leaves_nothing_pending() {
    let jobs: String = (0..120)
        .map(|i| format!("[jobs.j{i:03}]\ncommand = \"sleep 1\"\n"))
        .collect();
    let repo = repo(&jobs);
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::of(
        Command::new("bash")
            .current_dir(repo.path())
            .env("TMPDIR", tmp.path())
            .args([
                "-c",
                &format!(
                    "ulimit -n 96 && exec {} run --jobs 120 --output jsonl",
                    env!("CARGO_BIN_EXE_pikaci")
                ),
            ]),
    );
    run.expect(3);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        Vec::<std::ffi::OsString>::new(),
        "job dirs left behind"
    );
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(record["status"], "error");
    let jobs = record["jobs"].as_object().unwrap();
    assert_eq!(jobs.len(), 120);
    let unfinished: Vec<&String> = jobs
        .iter()
        .filter(|(_, s)| *s == "pending" || *s == "running")
        .map(|(j, _)| j)
        .collect();
    assert!(unfinished.is_empty(), "unfinished jobs: {unfinished:?}");
    let errors: Vec<String> = jobs
        .iter()
        .filter(|(_, s)| *s == "error")
        .map(|(j, _)| {
            job_status(&repo, j)["message"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(!errors.is_empty(), "96 descriptors cannot hold 120 jobs");
    assert!(
        errors
            .iter()
            .all(|m| m.contains("Too many open files") || m.contains("could not write its record")),
        "each error names the OS error: {errors:#?}\nrun: {record:#}"
    );
    assert!(
        errors.iter().any(|m| m.contains("Too many open files")),
        "{errors:#?}"
    );
}
