//! `--junit FILE`: one testsuite per target, one testcase per job (a job asked for by
//! two targets appears in both; jobs named directly go to a suite called `jobs`).

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::tail::{TailLimits, cap_text, log_tail};
use crate::state::{JobRecord, JobStatus, RunDir, RunRecord};

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
    let status = match job.status {
        JobStatus::Passed => TestCaseStatus::success(),
        JobStatus::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(message);
            status
        }
        JobStatus::Failed | JobStatus::TimedOut => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(message).set_type(job.status.to_string());
            status.set_description(log_tail(
                &run_dir.jobs().join(&job.job).join("guest.log"),
                LOG_TAIL,
            ));
            status
        }
        JobStatus::Error | JobStatus::Cancelled | JobStatus::Pending | JobStatus::Running => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(message).set_type(job.status.to_string());
            status
        }
    };
    let mut case = TestCase::new(job.job.clone(), status);
    case.set_classname(format!("{target}.{}", job.backend));
    if let Some(ms) = job.duration_ms {
        case.set_time(Duration::from_millis(ms));
    }
    case
}
