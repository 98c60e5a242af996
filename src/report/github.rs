//! Inside GitHub Actions (`GITHUB_ACTIONS=true`): each finished job's log in a collapsible
//! `::group::`, and an `::error` annotation for each failure.

use super::Reporter;
use super::ran_on::on_host;
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
            host,
            ..
        } = &event.kind
        else {
            return;
        };
        let run = self.state.run(&event.run_id);
        let log = log_tail(&run.jobs().join(job).join("guest.log"), LOG_TAIL);
        let on = on_host(host.as_deref());
        let mut out = format!("::group::{job} ({status}{on})\n");
        if !log.is_empty() {
            // GitHub reads a workflow command (`::error::`, `::add-mask::`, `::endgroup::`)
            // on any line of a step's output: a job's own lines must not be read so.
            let token = stop_token();
            out.push_str(&format!("::stop-commands::{token}\n{log}\n::{token}::\n"));
        }
        out.push_str("::endgroup::\n");
        if status.is_failure() {
            let detail = cap_text(message.as_deref().unwrap_or(""), MESSAGE_CHARS);
            out.push_str(&format!(
                "::error title=pikaci job {}::{}\n",
                escape(&format!("{job}{on}")),
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
