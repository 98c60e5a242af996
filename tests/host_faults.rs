//! Faults in pikaci's own steps on a remote host: the message a user sees names the step,
//! the host and the tail of the tool's stderr, never the embedded script, which goes
//! whole into the job's `host.log`.

use crate::harness::{MicrovmTestbed, Repo, redact, testbed_microvm};

/// A microVM run on the loopback SSH host whose work dir has a regular file where pikaci
/// makes the directory `in_work` (a fault even root meets); the job's message and
/// `host.log`.
fn run_with_a_file_at(testbed: &MicrovmTestbed, in_work: &str) -> (String, String) {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(in_work);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "not a directory\n").unwrap();
    let repo = Repo::new(&testbed.config(work.path(), "[jobs.a]\ncommand = \"true\"\n"));
    repo.pikaci(&["run"]).expect(3);
    let message = repo.job("a").0["message"].as_str().unwrap().to_string();
    let host_log = repo.latest_run().join("jobs/a/host.log");
    let host_log = std::fs::read_to_string(host_log).unwrap_or_default();
    let shown = redact(&message, &repo).replace(&work.path().display().to_string(), "[WORK]");
    // The sync's temporary name holds a process id.
    let shown = regex::Regex::new(r"sync-\d+-\d+-\[REV\]")
        .unwrap()
        .replace_all(&shown, "sync-[ID]")
        .into_owned();
    (shown, host_log)
}

/// The script's own lines are in `host.log`, not in the message.
fn assert_script_only_in_the_log(message: &str, host_log: &str, script_line: &str) {
    assert!(!message.contains(script_line), "{message}");
    assert!(
        host_log.contains("pikaci: the whole command: ") && host_log.contains(script_line),
        "host.log: {host_log}"
    );
}

#[test]
fn a_failing_job_dir_setup_names_the_step_host_and_stderr() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let (message, host_log) = run_with_a_file_at(&testbed, "jobs");
    insta::assert_snapshot!(message, @"
    preparing the job dir on the host failed for job `a`: on [SSH-HOST]: `sh -c … pikaci-job-setup [WORK]/jobs/[RUN]/a -` failed (exit status: 1):
    mkdir: cannot create directory '[WORK]/jobs': Not a directory
    mkdir: cannot create directory '[WORK]/jobs': Not a directory
    ");
    assert_script_only_in_the_log(&message, &host_log, "request.json");
}

#[test]
fn a_failing_sync_names_the_step_host_and_stderr() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let (message, host_log) = run_with_a_file_at(&testbed, "snapshots");
    insta::assert_snapshot!(message, @"
    microVM setup failed: cannot send the workspace: on [SSH-HOST]: `sh -c … pikaci-sync [WORK] [HEX] sync-[ID]` failed (exit status: 1):
    mkdir: cannot create directory 'snapshots': File exists
    ");
    assert_script_only_in_the_log(&message, &host_log, "set -eu");
}
