//! `--summary FILE` (and `$GITHUB_STEP_SUMMARY`): a Markdown table of the run's jobs.

use super::ran_on::{any_named_host, attempt_line};
use super::short_duration;
use super::tail::cap_text;
use crate::state::{JobRecord, RunRecord};

/// Characters of a job's or the run's message in the summary.
const MESSAGE_CHARS: usize = 1000;

pub fn markdown_summary(run: &RunRecord, jobs: &[JobRecord]) -> String {
    let mut text = format!("### pikaci run `{}`: {}\n\n", run.run_id, run.status);
    // Hosts are worth a column only in a pool of named hosts.
    let hosts = any_named_host(jobs);
    let mut header = vec!["job", "status", "duration", "backend"];
    if hosts {
        header.push("host");
    }
    header.extend(["phases", "message"]);
    text.push_str(&format!("| {} |\n", header.join(" | ")));
    text.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
    for job in jobs {
        let cells: Vec<String> = row(job, hosts).iter().map(|c| escape_cell(c)).collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if let Some(message) = &run.message {
        text.push_str(&format!("\n{}\n", cap_text(message.trim(), MESSAGE_CHARS)));
    }
    text
}

/// One job's cells; its earlier attempts follow its message.
fn row(job: &JobRecord, hosts: bool) -> Vec<String> {
    let phases: Vec<String> = job
        .phases
        .iter()
        .map(|(p, ms)| format!("{p} {}", short_duration(*ms)))
        .collect();
    let mut message: Vec<String> = job.message.iter().cloned().collect();
    message.extend(job.attempts.iter().map(attempt_line));
    let mut cells = vec![
        format!("`{}`", job.job),
        status_cell(job),
        job.duration_ms.map_or("-".into(), short_duration),
        job.backend.to_string(),
    ];
    if hosts {
        cells.push(job.host.clone().unwrap_or_else(|| "-".into()));
    }
    cells.push(phases.join(", "));
    cells.push(cap_text(&message.join("; "), MESSAGE_CHARS));
    cells
}

fn status_cell(job: &JobRecord) -> String {
    let mark = if job.status.is_failure() {
        "❌"
    } else if job.status == crate::state::JobStatus::Flaky {
        "⚠️"
    } else if job.status.passed() {
        "✅"
    } else {
        "⏭️"
    };
    format!("{mark} {}", job.status)
}

/// A table cell must stay on one line and not end the cell early.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendKind;
    use crate::report::ran_on::tests::{job, moved, run};
    use crate::state::{JobStatus, RunStatus};

    #[test]
    fn a_pool_of_named_hosts_gets_a_host_column_with_earlier_attempts() {
        let mut moved = moved();
        moved.phases.insert("run".into(), 1500);
        let lint = job("lint", BackendKind::Host, JobStatus::Passed, None);
        let text = markdown_summary(&run(RunStatus::Passed), &[moved, lint]);
        insta::assert_snapshot!(text, @"
        ### pikaci run `R1`: passed

        | job | status | duration | backend | host | phases | message |
        | --- | --- | --- | --- | --- | --- | --- |
        | `vm` | ✅ passed | 2.1s | microvm | builder-b | run 1.5s | attempt 1 on builder-a: error (host builder-a is down) |
        | `lint` | ✅ passed | 2.1s | host | - |  |  |
        ");
    }

    #[test]
    fn a_flaky_job_is_marked_and_lists_its_failed_attempt() {
        let mut flaky = job("counter", BackendKind::Host, JobStatus::Flaky, None);
        flaky.attempts = vec![crate::state::Attempt {
            status: JobStatus::Failed,
            ..crate::report::ran_on::tests::attempt(1, None, Some("exit code 1"))
        }];
        let text = markdown_summary(&run(RunStatus::Passed), &[flaky]);
        insta::assert_snapshot!(text, @"
        ### pikaci run `R1`: passed

        | job | status | duration | backend | phases | message |
        | --- | --- | --- | --- | --- | --- |
        | `counter` | ⚠️ flaky | 2.1s | host |  | attempt 1: failed (exit code 1) |
        ");
    }

    #[test]
    fn one_implicit_host_gets_no_host_column() {
        let mut vm = job(
            "vm",
            BackendKind::Microvm,
            JobStatus::Failed,
            Some("default"),
        );
        vm.message = Some("exit code 1".into());
        let text = markdown_summary(&run(RunStatus::Failed), &[vm]);
        insta::assert_snapshot!(text, @"
        ### pikaci run `R1`: failed

        | job | status | duration | backend | phases | message |
        | --- | --- | --- | --- | --- | --- |
        | `vm` | ❌ failed | 2.1s | microvm |  | exit code 1 |
        ");
    }
}
