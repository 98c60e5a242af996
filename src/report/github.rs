//! Inside GitHub Actions (`GITHUB_ACTIONS=true`): each finished job's log in a collapsible
//! `::group::`, and an `::error` annotation for each failure.

use super::Reporter;
use super::tail::{TailLimits, cap_text, log_tail};
use crate::state::{Event, EventKind, JobRecord, RunRecord, StateDir};

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
        let EventKind::JobFinished {
            job,
            status,
            message,
            ..
        } = &event.kind
        else {
            return;
        };
        let run = self.state.run(&event.run_id);
        let log = log_tail(&run.jobs().join(job).join("guest.log"), LOG_TAIL);
        let mut out = format!("::group::{job} ({status})\n");
        if !log.is_empty() {
            out.push_str(&log);
            out.push('\n');
        }
        out.push_str("::endgroup::\n");
        if status.is_failure() {
            let detail = cap_text(message.as_deref().unwrap_or(""), MESSAGE_CHARS);
            out.push_str(&format!(
                "::error title=pikaci job {}::{}\n",
                escape(job),
                escape(&format!("{status}: {detail}"))
            ));
        }
        crate::console::out(out.as_bytes());
    }

    fn finish(&self, run: &RunRecord, jobs: &[JobRecord]) {
        self.inner.finish(run, jobs);
    }
}

/// Workflow commands end at a newline and treat `%` specially.
fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}
