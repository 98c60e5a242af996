//! Inside GitHub Actions (`GITHUB_ACTIONS=true`): each finished job's log in a collapsible
//! `::group::`, an `::error` annotation for each failure and a `::warning` for each flaky
//! job.

use super::Reporter;
use super::ran_on::{attempt_line, on_host};
use super::tail::{TailLimits, cap_text, log_tail};
use crate::state::{Event, EventKind, JobRecord, JobStatus, RunRecord, StateDir, read_record};

/// The end of a job's log printed in its group.
const LOG_TAIL: TailLimits = TailLimits {
    lines: 500,
    bytes: 256 << 10,
    line_bytes: 4 << 10,
};
/// Characters of a job's message in its annotation.
const MESSAGE_CHARS: usize = 4096;

pub struct GithubReporter {
    pub inner: Box<dyn Reporter>,
    pub state: StateDir,
}

impl Reporter for GithubReporter {
    fn event(&self, event: &Event) {
        self.inner.event(event);
        let (job, status, message, host, attempt) = match &event.kind {
            EventKind::JobFinished {
                job,
                status,
                message,
                host,
                ..
            } => (job, status, message, host, None),
            EventKind::JobRetried {
                job,
                status,
                message,
                host,
                attempt,
                ..
            } => (job, status, message, host, Some(*attempt)),
            _ => return,
        };
        let run = self.state.run(&event.run_id);
        let log = log_tail(&run.jobs().join(job).join("guest.log"), LOG_TAIL);
        let on = on_host(host.as_deref());
        let what = match attempt {
            // A retried attempt is no failure of the job: no annotation for it.
            Some(n) => format!("attempt {n} {status}, retried"),
            None => status.to_string(),
        };
        let mut out = format!("::group::{job} ({what}{on})\n");
        if !log.is_empty() {
            // GitHub reads a workflow command (`::error::`, `::add-mask::`, `::endgroup::`)
            // on any line of a step's output: a job's own lines must not be read so.
            let token = stop_token();
            out.push_str(&format!("::stop-commands::{token}\n{log}\n::{token}::\n"));
        }
        out.push_str("::endgroup::\n");
        if attempt.is_none() && status.is_failure() {
            let detail = cap_text(message.as_deref().unwrap_or(""), MESSAGE_CHARS);
            out.push_str(&format!(
                "::error title=pikaci job {}::{}\n",
                escape(&format!("{job}{on}")),
                escape(&format!("{status}: {detail}"))
            ));
        }
        if *status == JobStatus::Flaky {
            let record = read_record::<JobRecord>(&run.jobs().join(job).join("status.json"));
            let attempts = record.map(|r| r.attempts).unwrap_or_default();
            out.push_str(&flaky_warning(&format!("{job}{on}"), &attempts));
        }
        crate::console::out(out.as_bytes());
    }

    fn finish(&self, run: &RunRecord, jobs: &[JobRecord]) {
        self.inner.finish(run, jobs);
    }
}

/// The `::warning` of a job that passed after its `attempts` did not: each on a line.
fn flaky_warning(job: &str, attempts: &[crate::state::Attempt]) -> String {
    let mut detail = format!("flaky: passed on attempt {}", attempts.len() + 1);
    for attempt in attempts {
        detail.push('\n');
        detail.push_str(&attempt_line(attempt));
    }
    format!(
        "::warning title=pikaci job {} (flaky)::{}\n",
        escape(job),
        escape(&cap_text(&detail, MESSAGE_CHARS))
    )
}

/// Workflow commands end at a newline and treat `%` specially.
/// A token no job can know, new for each log: what ends `::stop-commands::`.
fn stop_token() -> String {
    let mut bytes = [0u8; 16];
    // The kernel's random source does not fail once the system has booted; all zeros
    // would still stop commands, only with a guessable end.
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    crate::snapshot::hex(&bytes)
}

fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ran_on::tests::attempt;
    use crate::state::JobStatus;

    #[test]
    fn a_flaky_job_is_a_warning_naming_its_failed_attempts() {
        let failed = crate::state::Attempt {
            status: JobStatus::Failed,
            retried: Some(crate::state::Retried::Failed),
            ..attempt(1, None, Some("exit code 1"))
        };
        let lost = attempt(2, Some("far"), Some("host `far` failed: 100% gone"));
        insta::assert_snapshot!(flaky_warning("counter on near", &[failed, lost]), @"::warning title=pikaci job counter on near (flaky)::flaky: passed on attempt 3%0Aattempt 1: failed (exit code 1)%0Aattempt 2 on far: error (host `far` failed: 100%25 gone)");
    }
}
