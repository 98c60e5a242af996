//! `retries`: every attempt of a job kept, a job that failed and then passed `flaky`.
//! Each job counts its attempts in a file outside the workspace (a fresh copy per
//! attempt would forget), named through `env`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::Repo;

/// Fails (or sleeps past its deadline, with `sleep`) on the attempts numbered up to
/// `fails`, passes on the ones after.
fn counting_job(name: &str, counter: &Path, fails: u32, sleep: Option<u32>) -> String {
    let fail = match sleep {
        Some(secs) => format!("sleep {secs}"),
        None => "exit 3".to_string(),
    };
    format!(
        "[jobs.{name}]\n\
         env = {{ COUNTER = \"{counter}\" }}\n\
         command = '''\n\
         n=$(( $(cat \"$COUNTER\" 2>/dev/null || echo 0) + 1 ))\n\
         echo $n > \"$COUNTER\"\n\
         echo \"attempt $n\"\n\
         if [ $n -le {fails} ]; then echo \"not yet on attempt $n\"; {fail}; fi\n\
         '''\n",
        counter = counter.display(),
    )
}

fn config(jobs: &str) -> String {
    format!("[defaults]\nbackend = \"host\"\n{jobs}")
}

fn validate_junit(path: &Path) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", schema])
        .arg(path)
        .output();
    match out {
        Ok(out) => assert!(
            out.status.success(),
            "schema validation: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => assert!(
            std::env::var_os("CI").is_none(),
            "xmllint is required in CI"
        ),
    }
}

fn attempt_dir(repo: &Repo, job: &str, n: u32) -> std::path::PathBuf {
    repo.latest_run()
        .join("jobs")
        .join(job)
        .join("attempts")
        .join(n.to_string())
}

#[test]
fn a_job_that_fails_once_then_passes_is_flaky() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("counter", &counters.path().join("counter"), 1, None)
        + "retries = 1\n[jobs.after]\ncommand = \"echo after\"\nneeds = [\"counter\"]\n";
    let repo = Repo::new(&config(&jobs));
    let junit = repo.path().join("junit.xml");
    let run = repo
        .command(&["run", "--junit", junit.to_str().unwrap()])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");

    let (status, log) = repo.job("counter");
    assert_eq!(status["status"], "flaky", "{status}");
    assert!(log.contains("attempt 2"), "{log}");
    let attempts = status["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{status}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[0]["exit_code"], 3);
    assert_eq!(attempts[0]["retried"], "failed");
    assert!(attempts[0]["duration_ms"].is_u64(), "{status}");
    // The first attempt's own files: its log and its record.
    let first = attempt_dir(&repo, "counter", 1);
    let first_log = std::fs::read_to_string(first.join("guest.log")).unwrap();
    assert!(first_log.contains("not yet on attempt 1"), "{first_log}");
    let first_status = repo.read_json(&first.join("status.json"));
    assert_eq!(first_status["status"], "failed");
    assert!(
        !log.contains("not yet"),
        "the last attempt's log is its own: {log}"
    );
    // A flaky job passed: what needs it ran.
    assert_eq!(repo.job("after").0["status"], "passed");
    let run_json = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(run_json["status"], "passed");
    assert_eq!(run_json["jobs"]["counter"], "flaky");

    // Terminal, GitHub and JUnit say so.
    assert!(stdout.contains("RETRY  counter"), "{stdout}");
    assert!(stdout.contains("FLAKY  counter"), "{stdout}");
    assert!(
        stdout.contains("::warning title=pikaci job counter (flaky)::"),
        "{stdout}"
    );
    assert!(!stdout.contains("::error"), "{stdout}");
    validate_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<flakyFailure") && xml.contains("not yet on attempt 1"),
        "{xml}"
    );
    assert!(!xml.contains("<failure"), "{xml}");

    // `status` shows it, and its attempt.
    let shown = repo.pikaci(&["status", "latest"]);
    shown.expect(0);
    assert!(shown.stdout().contains("flaky"), "{}", shown.stdout());
    assert!(
        shown.stdout().contains("attempt 1: failed"),
        "{}",
        shown.stdout()
    );
    let json = repo.pikaci(&["status", "latest", "--json"]).json();
    let text = json.to_string();
    assert!(
        text.contains("\"flaky\"") && text.contains("\"retried\":\"failed\""),
        "{text}"
    );
}

#[test]
fn fail_on_flaky_fails_the_run() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("counter", &counters.path().join("counter"), 1, None) + "retries = 1\n";
    let repo = Repo::new(&config(&jobs));
    let run = repo.pikaci(&["run", "--fail-on-flaky"]);
    run.expect(1);
    assert_eq!(repo.job("counter").0["status"], "flaky");
    let run_json = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(run_json["status"], "failed");
}

#[test]
fn a_job_that_always_fails_is_failed_after_every_attempt_is_kept() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("never", &counters.path().join("never"), 99, None) + "retries = 2\n";
    let repo = Repo::new(&config(&jobs));
    let run = repo.pikaci(&["run"]);
    run.expect(1);
    assert_eq!(
        std::fs::read_to_string(counters.path().join("never"))
            .unwrap()
            .trim(),
        "3"
    );
    let (status, log) = repo.job("never");
    assert_eq!(status["status"], "failed", "{status}");
    assert!(log.contains("not yet on attempt 3"), "{log}");
    let attempts = status["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{status}");
    for (i, attempt) in attempts.iter().enumerate() {
        let n = i as u32 + 1;
        assert_eq!(attempt["attempt"], n);
        assert_eq!(attempt["status"], "failed");
        assert_eq!(attempt["retried"], "failed");
        let kept = std::fs::read_to_string(attempt_dir(&repo, "never", n).join("guest.log"));
        assert!(
            kept.unwrap().contains(&format!("not yet on attempt {n}")),
            "attempt {n}"
        );
    }
    assert!(!attempt_dir(&repo, "never", 3).exists());
    // Only the job's end is its failure: one logs line, for the job.
    assert_eq!(run.stdout().matches("FAIL ").count(), 1, "{}", run.stdout());
    assert_eq!(
        run.stdout().matches("RETRY ").count(),
        2,
        "{}",
        run.stdout()
    );
}

#[test]
fn a_timed_out_attempt_is_retried_and_recorded_as_timed_out() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("slow", &counters.path().join("slow"), 1, Some(30))
        + "retries = 1\ntimeout = \"2s\"\n";
    let repo = Repo::new(&config(&jobs));
    repo.pikaci(&["run"]).expect(0);
    let (status, log) = repo.job("slow");
    assert_eq!(status["status"], "flaky", "{status}");
    assert!(log.contains("attempt 2"), "{log}");
    let attempts = status["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{status}");
    assert_eq!(attempts[0]["status"], "timed_out");
    assert_eq!(attempts[0]["retried"], "timed_out");
}

/// An infrastructure error: on its first attempt the job puts a directory where pikaci
/// writes its `result.json`, so collecting its result fails.
#[test]
fn an_error_is_retried_and_recorded_with_its_phase() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = format!(
        "[jobs.breaks]\nenv = {{ COUNTER = \"{}\" }}\nretries = 1\ncommand = '''\n\
         n=$(( $(cat \"$COUNTER\" 2>/dev/null || echo 0) + 1 ))\n\
         echo $n > \"$COUNTER\"\n\
         if [ $n -eq 1 ]; then mkdir \"$PIKACI_ARTIFACTS/../result.json\"; fi\n\
         '''\n",
        counters.path().join("breaks").display()
    );
    let repo = Repo::new(&config(&jobs));
    repo.pikaci(&["run"]).expect(0);
    let (status, _) = repo.job("breaks");
    assert_eq!(status["status"], "flaky", "{status}");
    let attempt = &status["attempts"][0];
    assert_eq!(attempt["status"], "error", "{status}");
    assert_eq!(attempt["retried"], "error");
    assert_eq!(attempt["failed_in"], "collect");
    let message = attempt["message"].as_str().unwrap();
    assert!(message.contains("result.json"), "{message}");
}

#[test]
fn the_retries_flag_overrides_the_config() {
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("counter", &counters.path().join("counter"), 1, None) + "retries = 2\n";
    let repo = Repo::new(&config(&jobs));
    repo.pikaci(&["run", "--retries", "0"]).expect(1);
    let (status, _) = repo.job("counter");
    assert_eq!(status["status"], "failed", "{status}");
    assert!(status.get("attempts").is_none(), "{status}");
    // And the other way: a job with no `retries` of its own gets the flag's.
    let counters = tempfile::tempdir().unwrap();
    let jobs = counting_job("counter", &counters.path().join("counter"), 1, None);
    let repo = Repo::new(&config(&jobs));
    repo.pikaci(&["run", "--retries", "1"]).expect(0);
    assert_eq!(repo.job("counter").0["status"], "flaky");
}

#[test]
fn a_cancelled_job_is_not_retried() {
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("started");
    let jobs = format!(
        "[jobs.long]\nenv = {{ MARK = \"{}\" }}\ncommand = \"echo x >> \\\"$MARK\\\"; sleep 60\"\nretries = 2\n",
        started.display()
    );
    let repo = Repo::new(&config(&jobs));
    let child = repo
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The shell creates the file before it writes the line: wait for the line, or the
    // signal may come in between and the run is seen as never started.
    let running = crate::harness::eventually(Duration::from_secs(60), || {
        std::fs::read_to_string(&started).is_ok_and(|s| s.ends_with('\n'))
    });
    assert!(running, "the job never started");
    // SIGINT, as Ctrl-C sends.
    let pikaci = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pikaci, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let (status, _) = repo.job("long");
    assert_eq!(status["status"], "cancelled", "{status}");
    assert!(status.get("attempts").is_none(), "{status}");
    let runs = std::fs::read_to_string(&started).unwrap();
    assert_eq!(runs.lines().count(), 1, "it ran once");
}
