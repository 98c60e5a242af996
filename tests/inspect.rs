//! runs, status and logs read the records: they need no valid pikaci.toml, and `logs`
//! answers an unknown job with the run's jobs.

use crate::harness::{Repo, redact};

fn repo_with_a_run() -> Repo {
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n[jobs.ok]\ncommand = \"echo fine\"\n\
         [jobs.bad]\ncommand = \"echo broken; exit 3\"\n",
    );
    repo.pikaci(&["run", "ok", "bad"]).expect(1);
    repo
}

#[test]
fn records_are_read_without_a_valid_config() {
    let repo = repo_with_a_run();
    for config in [
        Some("[jobs.a\n"),
        Some("[jobs.a]\nbackend = \"nope\"\n"),
        None,
    ] {
        match config {
            Some(text) => repo.write("pikaci.toml", text),
            None => std::fs::remove_file(repo.path().join("pikaci.toml")).unwrap(),
        }
        let runs = repo.pikaci(&["runs"]);
        runs.expect(0);
        assert!(
            runs.stdout().contains("failed"),
            "{config:?}: {}",
            runs.stdout()
        );
        let status = repo.pikaci(&["status", "latest", "--json"]);
        status.expect(0);
        assert_eq!(status.json()["run"]["status"], "failed", "{config:?}");
        let logs = repo.pikaci(&["logs", "latest", "--job", "ok"]);
        logs.expect(0);
        assert_eq!(logs.stdout(), "fine\n", "{config:?}");
        // From a subdirectory too, and by --config naming the missing or broken file.
        repo.write("src/deep/x", "");
        let mut from_below = repo.command(&["status", "latest"]);
        from_below.current_dir(repo.path().join("src/deep"));
        crate::harness::Run::of(&mut from_below).expect(0);
        let named = repo.pikaci(&["--config", "pikaci.toml", "runs"]);
        named.expect(0);
    }
    // What needs the config still says what is wrong with it.
    repo.write("pikaci.toml", "[jobs.a\n");
    repo.pikaci(&["targets"]).expect(2);
}

#[test]
fn an_unknown_job_is_answered_with_the_runs_jobs() {
    let repo = repo_with_a_run();
    let logs = repo.pikaci(&["logs", "latest", "--job", "nope"]);
    logs.expect(2);
    insta::assert_snapshot!(redact(&logs.stderr(), &repo), @"error: run [RUN] has no job `nope`; its jobs: bad, ok");
    let follow = repo.pikaci(&["logs", "latest", "--job", "nope", "--follow"]);
    follow.expect(2);
    assert_eq!(follow.stderr(), logs.stderr());
}

#[test]
fn host_log_is_shown_on_request() {
    let repo = repo_with_a_run();
    let run = repo.latest_run();
    std::fs::write(run.join("jobs/bad/host.log"), "the backend said this\n").unwrap();
    let logs = repo.pikaci(&["logs", "latest", "--job", "bad", "--host-log"]);
    logs.expect(0);
    assert_eq!(logs.stdout(), "the backend said this\n");
    // A job without host.log (a record of an older pikaci, or a job whose backend never
    // started): the answer says so and how the job ended.
    let _ = std::fs::remove_file(run.join("jobs/ok/host.log"));
    let missing = repo.pikaci(&["logs", "latest", "--job", "ok", "--host-log"]);
    missing.expect(2);
    insta::assert_snapshot!(redact(&missing.stderr(), &repo), @"error: job `ok` of run [RUN] has no host.log (it passed)");
    // Without --job: every job's host.log that exists, under its header.
    let all = repo.pikaci(&["logs", "latest", "--host-log"]);
    all.expect(0);
    assert_eq!(all.stdout(), "==> bad <==\nthe backend said this\n");
}

#[test]
fn logs_of_a_job_that_never_started_say_why_and_status_says_the_same() {
    // A microVM job whose runner does not exist fails in setup, before any guest starts.
    let repo = Repo::new(
        "[backends.microvm]\nrunner = \"path:/nonexistent#runner\"\n\
         [jobs.vm]\nbackend = \"microvm\"\ncommand = \"echo never\"\n\
         [jobs.after]\nbackend = \"host\"\ncommand = \"echo never\"\nneeds = [\"vm\"]\n",
    );
    repo.pikaci(&["run", "vm", "after"]).expect(3);
    let (record, _) = repo.job("vm");
    assert_eq!(record["status"], "error", "{record:#}");
    assert_eq!(record["failed_in"], "setup", "{record:#}");
    let logs = repo.pikaci(&["logs", "latest", "--job", "vm"]);
    logs.expect(0);
    let shown = logs.stdout();
    let (head, message) = shown.trim_end().split_once(": ").unwrap();
    assert_eq!(head, "job `vm` never started (error)", "{shown}");
    assert!(message.starts_with("in setup: "), "{shown}");
    assert!(
        message.contains("/nonexistent"),
        "the recorded error: {shown}"
    );
    assert_eq!(shown.lines().count(), 1, "one line: {shown}");
    // Its host.log is missing for the same reason.
    let host_log = repo.pikaci(&["logs", "latest", "--job", "vm", "--host-log"]);
    host_log.expect(0);
    assert_eq!(host_log.stdout(), shown);
    // `status` shows the same one-line message beside the job.
    let status = repo.pikaci(&["status", "latest"]);
    status.expect(0);
    let line = status
        .stdout()
        .lines()
        .find(|l| l.trim_start().starts_with("vm "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no line for the job:\n{}", status.stdout()));
    assert!(line.ends_with(&format!("  {message}")), "{line}\n{shown}");
    // A job that never ran because of it: its reason, the same way.
    let after = repo.pikaci(&["logs", "latest", "--job", "after"]);
    after.expect(0);
    insta::assert_snapshot!(redact(&after.stdout(), &repo), @"job `after` never started (skipped): not run: needed job `vm` error");
}
