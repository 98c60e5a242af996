//! `--junit FILE`: one testsuite per target, one testcase per job (a job asked for by
//! two targets appears in both; jobs named directly go to a suite called `jobs`).

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::ran_on::{attempt_line, named_host};
use super::tail::{TailLimits, cap_text, log_tail};
use crate::state::{Attempt, JobRecord, JobStatus, RunDir, RunRecord};

/// The end of a failing job's log carried in its testcase: the report holds every
/// failing job's at once, so each is small.
const LOG_TAIL: TailLimits = TailLimits {
    lines: 50,
    bytes: 64 << 10,
    line_bytes: 4 << 10,
};
/// Characters of a job's message in its testcase.
const MESSAGE_CHARS: usize = 4096;

pub fn junit_report(run: &RunRecord, run_dir: &RunDir, jobs: &[JobRecord]) -> Report {
    let mut suites: BTreeMap<String, Vec<TestCase>> = BTreeMap::new();
    for job in jobs {
        let targets = if job.targets.is_empty() {
            vec!["jobs".to_string()]
        } else {
            job.targets.clone()
        };
        for target in targets {
            suites
                .entry(target.clone())
                .or_default()
                .push(test_case(job, &target, run_dir));
        }
    }
    let mut report = Report::new(format!("pikaci run {}", run.run_id));
    if let Some(ms) = run.duration_ms {
        report.set_time(Duration::from_millis(ms));
    }
    for (name, cases) in suites {
        let mut suite = TestSuite::new(name);
        let time: u64 = cases
            .iter()
            .filter_map(|c| c.time)
            .map(|t| t.as_millis() as u64)
            .sum();
        suite.set_time(Duration::from_millis(time));
        suite.add_test_cases(cases);
        report.add_test_suite(suite);
    }
    report
}

fn test_case(job: &JobRecord, target: &str, run_dir: &RunDir) -> TestCase {
    let message = job.message.as_deref().map_or_else(
        || job.status.to_string(),
        |message| cap_text(message, MESSAGE_CHARS),
    );
    let job_dir = run_dir.jobs().join(&job.job);
    let mut status = match job.status {
        JobStatus::Passed | JobStatus::Flaky => TestCaseStatus::success(),
        // Not built this time, but its outputs are there: a success, saying why.
        JobStatus::Cached => {
            let mut status = TestCaseStatus::success();
            status.set_message(message);
            status
        }
        JobStatus::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(message);
            status
        }
        JobStatus::Failed | JobStatus::TimedOut => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(message).set_type(job.status.to_string());
            status.set_description(log_tail(&job_dir.join("guest.log"), LOG_TAIL));
            status
        }
        JobStatus::Error | JobStatus::Cancelled | JobStatus::Pending | JobStatus::Running => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(message).set_type(job.status.to_string());
            status
        }
    };
    // A flaky job's failed attempts are its `flakyFailure`s; a job that did not pass
    // after retries has its earlier attempts as `rerunFailure`s. A passed job whose
    // earlier attempts only lost their host is not flaky: they stay properties.
    if job.status != JobStatus::Passed {
        status.add_reruns(job.attempts.iter().map(|a| rerun(a, &job_dir)));
    }
    let mut case = TestCase::new(job.job.clone(), status);
    case.set_classname(format!("{target}.{}", job.backend));
    // Where it ran, as properties: the schema allows them on a testcase (a testsuite's
    // `hostname` would be one host for a suite whose jobs ran on several). Not the
    // implicit `default` host of a config without `[hosts]`: it would say nothing new.
    if let Some(host) = named_host(job.host.as_deref()) {
        case.add_property(("host", host));
    }
    for attempt in &job.attempts {
        case.add_property((
            format!("attempt.{}", attempt.attempt),
            attempt_line(attempt),
        ));
    }
    if let Some(ms) = job.duration_ms {
        case.set_time(Duration::from_millis(ms));
    }
    case
}

/// One earlier attempt as a JUnit rerun: a failure (or error) with its message, type,
/// time and the end of its log.
fn rerun(attempt: &Attempt, job_dir: &std::path::Path) -> TestRerun {
    let kind = match attempt.status {
        JobStatus::Failed | JobStatus::TimedOut => NonSuccessKind::Failure,
        _ => NonSuccessKind::Error,
    };
    let mut rerun = TestRerun::new(kind);
    let message = attempt.message.as_deref().map_or_else(
        || attempt.status.to_string(),
        |message| cap_text(message, MESSAGE_CHARS),
    );
    rerun
        .set_message(message)
        .set_type(attempt.status.to_string());
    if let Some(ms) = attempt.duration_ms {
        rerun.set_time(Duration::from_millis(ms));
    }
    let log = job_dir
        .join("attempts")
        .join(attempt.attempt.to_string())
        .join("guest.log");
    let tail = log_tail(&log, LOG_TAIL);
    if !tail.is_empty() {
        rerun.set_system_out(tail);
    }
    rerun
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendKind;
    use crate::report::ran_on::tests::{job, moved, run};
    use crate::state::RunStatus;

    #[test]
    fn each_testcase_names_its_host_and_earlier_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = crate::state::StateDir::new(dir.path().to_path_buf()).run("R1");
        let moved = moved();
        let lint = job("lint", BackendKind::Host, JobStatus::Passed, None);
        let plain = job(
            "one",
            BackendKind::Incus,
            JobStatus::Passed,
            Some("default"),
        );
        // Properties come before the outcome, as the schema wants.
        let mut failed = job(
            "ct",
            BackendKind::Incus,
            JobStatus::Failed,
            Some("builder-a"),
        );
        failed.message = Some("exit code 1".into());
        let run = run(RunStatus::Passed);
        let xml = junit_report(&run, &run_dir, &[moved, lint, plain, failed])
            .to_string()
            .unwrap();
        assert_valid(&xml, dir.path());
        insta::assert_snapshot!(xml, @r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="pikaci run R1" tests="4" failures="1" errors="0" time="4.200">
            <testsuite name="ci" tests="4" disabled="0" errors="0" failures="1" time="8.400">
                <testcase name="vm" classname="ci.microvm" time="2.100">
                    <properties>
                        <property name="host" value="builder-b"/>
                        <property name="attempt.1" value="attempt 1 on builder-a: error (host builder-a is down)"/>
                    </properties>
                </testcase>
                <testcase name="lint" classname="ci.host" time="2.100">
                </testcase>
                <testcase name="one" classname="ci.incus" time="2.100">
                </testcase>
                <testcase name="ct" classname="ci.incus" time="2.100">
                    <properties>
                        <property name="host" value="builder-a"/>
                    </properties>
                    <failure message="exit code 1" type="failed"></failure>
                </testcase>
            </testsuite>
        </testsuites>
        "#);
    }

    /// A flaky job's failed attempt is a `flakyFailure` of its passed testcase, with the
    /// attempt's log tail; a job that failed after retries has its attempts as reruns.
    #[test]
    fn earlier_attempts_are_flaky_failures_or_reruns() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = crate::state::StateDir::new(dir.path().to_path_buf()).run("R1");
        let first = run_dir.jobs().join("counter/attempts/1");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::write(first.join("guest.log"), "attempt 1\nnot yet\n").unwrap();
        let failed_attempt = |n: u32, status: JobStatus, message: &str| Attempt {
            status,
            exit_code: (status == JobStatus::Failed).then_some(1),
            duration_ms: Some(1500),
            retried: crate::report::ran_on::tests::retried(status),
            ..crate::report::ran_on::tests::attempt(n, None, Some(message))
        };
        let mut flaky = job("counter", BackendKind::Host, JobStatus::Flaky, None);
        flaky.attempts = vec![failed_attempt(1, JobStatus::Failed, "exit code 1")];
        let mut failed = job("never", BackendKind::Host, JobStatus::Failed, None);
        failed.message = Some("exit code 1".into());
        failed.attempts = vec![
            failed_attempt(1, JobStatus::TimedOut, "timed out after 1s"),
            failed_attempt(2, JobStatus::Error, "the guest did not start"),
        ];
        let xml = junit_report(&run(RunStatus::Failed), &run_dir, &[flaky, failed])
            .to_string()
            .unwrap();
        assert_valid(&xml, dir.path());
        insta::assert_snapshot!(xml, @r#"
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites name="pikaci run R1" tests="2" failures="1" errors="0" time="4.200">
            <testsuite name="ci" tests="2" disabled="0" errors="0" failures="1" time="4.200">
                <testcase name="counter" classname="ci.host" time="2.100">
                    <properties>
                        <property name="attempt.1" value="attempt 1: failed (exit code 1)"/>
                    </properties>
                    <flakyFailure time="1.500" message="exit code 1" type="failed">
                        <system-out>attempt 1
        not yet</system-out>
                    </flakyFailure>
                </testcase>
                <testcase name="never" classname="ci.host" time="2.100">
                    <properties>
                        <property name="attempt.1" value="attempt 1: timed_out (timed out after 1s)"/>
                        <property name="attempt.2" value="attempt 2: error (the guest did not start)"/>
                    </properties>
                    <failure message="exit code 1" type="failed"></failure>
                    <rerunFailure time="1.500" message="timed out after 1s" type="timed_out">
                    </rerunFailure>
                    <rerunError time="1.500" message="the guest did not start" type="error">
                    </rerunError>
                </testcase>
            </testsuite>
        </testsuites>
        "#);
    }

    /// The report is valid against the schema the integration tests use, when xmllint is
    /// installed (it is where the integration tests run).
    fn assert_valid(xml: &str, dir: &std::path::Path) {
        let file = dir.join("junit.xml");
        std::fs::write(&file, xml).unwrap();
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
        let Ok(out) = std::process::Command::new("xmllint")
            .args(["--noout", "--schema", schema])
            .arg(&file)
            .output()
        else {
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
