//! Output that goes away never stops a run: stdout or stderr a pipe whose reader has
//! exited, or a full disk (`/dev/full`). The run goes on, records everything and exits
//! with its usual code; every command stays quiet (no panic, no backtrace).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Repo, Run};

const JOBS: &str = "[defaults]\nbackend = \"host\"\ntimeout = \"60s\"\n\
    [jobs.ok]\ncommand = \"echo one; echo two\"\n\
    [jobs.also]\ncommand = \"seq 1 200\"\n\
    [jobs.after]\ncommand = \"echo after\"\nneeds = [\"ok\", \"also\"]\n\
    [jobs.bad]\ncommand = \"echo bad; exit 4\"\n";

/// Where a command's stdout or stderr goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// A pipe whose reading end is closed before the command starts.
    ClosedPipe,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
    /// Kept, to look at.
    Captured,
}

impl Sink {
    fn stdio(self) -> Stdio {
        match self {
            Sink::ClosedPipe => {
                let (reader, writer) = std::io::pipe().unwrap();
                drop(reader);
                writer.into()
            }
            Sink::Full => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
                .into(),
            Sink::Captured => Stdio::piped(),
        }
    }
}

/// Runs `command` in a process group of its own with the given sinks. A command still
/// there after `limit` (the old hang) gets SIGTERM, then SIGKILL, and the test fails.
fn run_with(mut command: Command, stdout: Sink, stderr: Sink, limit: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(stdout.stdio())
        .stderr(stderr.stdio())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
            std::thread::sleep(Duration::from_secs(5));
            let ignored_term = child.try_wait().unwrap().is_none();
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} with stdout {stdout:?}, stderr {stderr:?} still ran after {limit:?} \
                 (SIGTERM ignored: {ignored_term}); stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run {
        output: child.wait_with_output().unwrap(),
    }
}

#[track_caller]
fn assert_quiet(run: &Run, what: &str) {
    let stderr = run.stderr();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: stderr:\n{stderr}"
    );
}

/// Every job of the newest run has its final record, and the run is over.
fn assert_recorded(repo: &Repo, run_status: &str) {
    let run = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(run["status"], run_status, "{run:#}");
    let expected = [
        ("ok", "passed"),
        ("also", "passed"),
        ("after", "passed"),
        ("bad", "failed"),
    ];
    for (job, status) in expected {
        assert_eq!(run["jobs"][job], status, "{run:#}");
        let (record, _) = repo.job(job);
        assert_eq!(record["status"], status, "{record:#}");
    }
    let (_, log) = repo.job("also");
    assert_eq!(log.lines().count(), 200, "the job's own output is all kept");
}

#[test]
fn a_run_goes_on_when_its_stdout_goes_away() {
    let repo = Repo::new(JOBS);
    let outputs: [&[&str]; 3] = [&[], &["--output", "jsonl"], &["--output", "json"]];
    for stdout in [Sink::ClosedPipe, Sink::Full] {
        for output in outputs {
            let mut args = vec!["run", "--jobs", "2"];
            args.extend(output);
            let what = format!("{args:?} with stdout {stdout:?}");
            let run = run_with(
                repo.command(&args),
                stdout,
                Sink::Captured,
                Duration::from_secs(120),
            );
            run.expect(1);
            assert_quiet(&run, &what);
            assert_recorded(&repo, "failed");
        }
    }
}

#[test]
fn a_run_goes_on_when_stdout_and_stderr_both_go_away() {
    let repo = Repo::new(JOBS);
    for sink in [Sink::ClosedPipe, Sink::Full] {
        let run = run_with(repo.command(&["run"]), sink, sink, Duration::from_secs(120));
        run.expect(1);
        assert_recorded(&repo, "failed");
    }
}

#[test]
fn inspecting_commands_stay_quiet_when_their_stdout_goes_away() {
    let repo = Repo::new(JOBS);
    repo.pikaci(&["run"]).expect(1);
    let commands: &[&[&str]] = &[
        &["targets"],
        &["runs"],
        &["runs", "--json"],
        &["status", "latest"],
        &["status", "latest", "--json"],
        &["logs", "latest"],
        &["logs", "latest", "--job", "also"],
        &["logs", "latest", "--job", "also", "--follow"],
        &["gc", "--keep", "5"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in commands {
        for stdout in [Sink::ClosedPipe, Sink::Full] {
            let what = format!("{args:?} with stdout {stdout:?}");
            let run = run_with(
                repo.command(args),
                stdout,
                Sink::Captured,
                Duration::from_secs(60),
            );
            assert_eq!(run.code(), 0, "{what}: stderr:\n{}", run.stderr());
            assert_quiet(&run, &what);
            assert_eq!(run.stderr(), "", "{what}");
        }
    }
}

#[test]
fn an_error_to_a_stderr_that_is_gone_keeps_its_exit_code() {
    let repo = Repo::new(JOBS);
    for stderr in [Sink::ClosedPipe, Sink::Full] {
        for stdout in [Sink::ClosedPipe, Sink::Full] {
            let run = run_with(
                repo.command(&["status", "no-such-run"]),
                stdout,
                stderr,
                Duration::from_secs(60),
            );
            assert_eq!(run.code(), 2, "a usage error, not a panic (101)");
        }
    }
}

/// `pikaci ARGS | head -N` in bash, exiting with pikaci's own code.
fn piped_into_head(repo: &Repo, args: &str, lines: usize) -> Run {
    let mut command = Command::new("bash");
    command.current_dir(repo.path()).args([
        "-c",
        &format!(
            "{} {args} | head -{lines} >/dev/null; exit ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_pikaci")
        ),
    ]);
    command
        .env_remove("PIKACI_STATE_DIR")
        .env_remove("GITHUB_ACTIONS");
    run_with(
        command,
        Sink::Captured,
        Sink::Captured,
        Duration::from_secs(120),
    )
}

#[test]
fn a_run_piped_into_head_ends_with_its_usual_code() {
    let repo = Repo::new(JOBS);
    let run = piped_into_head(&repo, "run --jobs 2", 1);
    run.expect(1);
    assert_quiet(&run, "run | head -1");
    assert_recorded(&repo, "failed");
    for args in ["status latest", "runs", "logs latest"] {
        let run = piped_into_head(&repo, args, 1);
        run.expect(0);
        assert_quiet(&run, args);
    }
}

#[test]
fn sigterm_ends_a_run_whose_stdout_is_gone() {
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\ntimeout = \"60s\"\n[jobs.slow]\ncommand = \"echo started; sleep 60\"\n",
    );
    let mut child = repo
        .command(&["run", "slow"])
        .stdout(Sink::ClosedPipe.stdio())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host backend writes the job's output to guest.log.
    let started = crate::harness::eventually(Duration::from_secs(60), || {
        std::fs::read_dir(repo.state().join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path().join("jobs/slow/guest.log")).ok())
            .is_some_and(|log| log.contains("started"))
    });
    let pid = rustix::process::Pid::from_child(&child);
    if !started {
        let _ = child.kill();
        panic!(
            "the job never started: {:?}",
            child.wait_with_output().unwrap()
        );
    }
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let limit = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("SIGTERM did not end the run");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = Run {
        output: child.wait_with_output().unwrap(),
    };
    run.expect(130);
    assert_quiet(&run, "run after SIGTERM");
    let (record, _) = repo.job("slow");
    assert_eq!(record["status"], "cancelled", "{record:#}");
}
