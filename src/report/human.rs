//! Live spinners on a terminal; plain, stable lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::ran_on::on_host;
use super::{Reporter, short_duration};
use crate::state::{Event, EventKind, JobRecord, JobStatus, RunRecord};

pub struct HumanReporter {
    live: Option<Live>,
}

struct Live {
    bars: MultiProgress,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl HumanReporter {
    /// `progress` asks for live spinners; they appear only when stdout is a terminal.
    pub fn new(progress: bool) -> HumanReporter {
        let live = (progress && std::io::stdout().is_terminal()).then(|| Live {
            bars: MultiProgress::new(),
            running: Mutex::new(HashMap::new()),
        });
        HumanReporter { live }
    }

    fn line(&self, text: String) {
        match &self.live {
            Some(live) => {
                let _ = live.bars.println(text);
            }
            None => crate::outln!("{text}"),
        }
    }

    fn start_spinner(&self, key: &str, message: String) {
        let Some(live) = &self.live else {
            return;
        };
        let bar = live.bars.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        live.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), bar);
    }

    fn set_spinner(&self, key: &str, message: String) {
        if let Some(live) = &self.live
            && let Some(bar) = live
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
        {
            bar.set_message(message);
        }
    }

    fn stop_spinner(&self, key: &str) {
        if let Some(live) = &self.live
            && let Some(bar) = live
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key)
        {
            bar.finish_and_clear();
        }
    }
}

/// The human text for one event, or None for events shown only as spinners.
pub fn describe(event: &Event, live: bool) -> Option<String> {
    Some(match &event.kind {
        EventKind::RunStarted { jobs, snapshot } => {
            let snap = snapshot.as_ref().map_or(String::new(), |s| {
                format!(
                    ", snapshot {} ({} files{})",
                    s.id,
                    s.files,
                    if s.reused { ", unchanged" } else { "" }
                )
            });
            format!("run {}: {} job(s){snap}", event.run_id, jobs.len())
        }
        EventKind::PrepareStarted { input, installable } if !live => {
            format!("build  {input} ({installable})")
        }
        EventKind::PrepareFinished {
            input,
            ok: true,
            duration_ms,
            ..
        } => {
            format!("built  {input} {}", short_duration(*duration_ms))
        }
        EventKind::PrepareFinished {
            input,
            ok: false,
            message,
            ..
        } => {
            format!(
                "ERROR  {input}: {}",
                message.as_deref().unwrap_or("build failed")
            )
        }
        EventKind::JobStarted { job, backend, host } if !live => {
            format!("start  {job} [{backend}]{}", on_host(host.as_deref()))
        }
        EventKind::HostDown { host, message } => format!("DOWN   host {host}: {message}"),
        EventKind::JobFinished {
            job,
            status,
            duration_ms,
            message,
            host,
            ..
        } => {
            let label = match status {
                JobStatus::Passed => "pass  ",
                JobStatus::Cached => "cached",
                JobStatus::Flaky => "FLAKY ",
                JobStatus::Failed => "FAIL  ",
                JobStatus::TimedOut => "TIMEOUT",
                JobStatus::Skipped => "skip  ",
                JobStatus::Cancelled => "CANCEL",
                JobStatus::Error => "ERROR ",
                JobStatus::Pending | JobStatus::Running => "?     ",
            };
            let took = duration_ms.map_or(String::new(), |ms| format!(" {}", short_duration(ms)));
            let why = message
                .as_deref()
                .map_or(String::new(), |m| format!(": {m}"));
            format!("{label} {job}{took}{}{why}", on_host(host.as_deref()))
        }
        EventKind::JobRetried {
            job,
            attempt,
            status,
            duration_ms,
            message,
            host,
            ..
        } => {
            let took = duration_ms.map_or(String::new(), |ms| format!(" {}", short_duration(ms)));
            let why = message
                .as_deref()
                .map_or(String::new(), |m| format!(": {m}"));
            let on = on_host(host.as_deref());
            format!("RETRY  {job}{took}{on}: attempt {attempt} {status}{why}")
        }
        EventKind::RunFinished { .. }
        | EventKind::PrepareStarted { .. }
        | EventKind::JobStarted { .. }
        | EventKind::JobPhase { .. } => {
            return None;
        }
    })
}

/// The closing summary.
pub fn summary(run: &RunRecord) -> String {
    let mut counts: Vec<(JobStatus, usize)> = Vec::new();
    for status in run.jobs.values() {
        match counts.iter_mut().find(|(s, _)| s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((*status, 1)),
        }
    }
    counts.sort_by_key(|(s, _)| *s as u8);
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let jobs = if parts.is_empty() {
        "no jobs to run".to_string()
    } else {
        parts.join(", ")
    };
    let took = run
        .duration_ms
        .map_or(String::new(), |ms| format!(" in {}", short_duration(ms)));
    let mut text = format!("run {} {}: {jobs}{took}", run.run_id, run.status);
    if let Some(message) = &run.message {
        text.push('\n');
        text.push_str(&first_lines(message, &run.run_id));
    }
    for (job, _) in run.jobs.iter().filter(|(_, s)| s.is_failure()) {
        text.push_str(&format!("\nlogs: pikaci logs {} --job {job}", run.run_id));
    }
    for (job, _) in run.jobs.iter().filter(|(_, s)| **s == JobStatus::Flaky) {
        text.push_str(&format!(
            "\nFLAKY: {job} passed after failing (its attempts: pikaci status {})",
            run.run_id
        ));
    }
    text
}

/// The run's message without the command and output its errors carry: an error with
/// output (more than one line) was printed in full with its ERROR line above, and stays
/// in run.json, so the summary names it by what failed, the part before the first `: `.
fn first_lines(message: &str, run_id: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("");
    if lines.next().is_none() {
        return first.to_string();
    }
    let what = first
        .split(": ")
        .next()
        .unwrap_or(first)
        .trim_end_matches(':');
    format!("{what} (details above and in `pikaci status {run_id}`)")
}

impl Reporter for HumanReporter {
    fn event(&self, event: &Event) {
        match &event.kind {
            EventKind::JobStarted { job, backend, .. } => {
                self.start_spinner(job, format!("{job} [{backend}]"))
            }
            EventKind::PrepareStarted { input, installable } => self.start_spinner(
                &format!("prepare:{input}"),
                format!("build {input} ({installable})"),
            ),
            EventKind::JobPhase { job, phase } => self.set_spinner(job, format!("{job} {phase}")),
            EventKind::JobFinished { job, .. } | EventKind::JobRetried { job, .. } => {
                self.stop_spinner(job)
            }
            EventKind::PrepareFinished { input, .. } => {
                self.stop_spinner(&format!("prepare:{input}"))
            }
            _ => {}
        }
        if let Some(text) = describe(event, self.live.is_some()) {
            self.line(text);
        }
    }

    fn finish(&self, run: &RunRecord, _jobs: &[JobRecord]) {
        if let Some(live) = &self.live {
            let _ = live.bars.clear();
        }
        crate::outln!("{}", summary(run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunStatus;

    fn record(status: RunStatus, jobs: &[(&str, JobStatus)], message: Option<&str>) -> RunRecord {
        RunRecord {
            duration_ms: Some(17),
            jobs: jobs.iter().map(|(j, s)| (j.to_string(), *s)).collect(),
            message: message.map(str::to_string),
            ..crate::report::ran_on::tests::run(status)
        }
    }

    #[test]
    fn the_summary_says_what_ran_and_where_each_failure_is() {
        let empty = record(RunStatus::Passed, &[], None);
        let failed = record(
            RunStatus::Failed,
            &[
                ("a", JobStatus::Failed),
                ("b", JobStatus::Passed),
                ("c", JobStatus::TimedOut),
            ],
            None,
        );
        // A failed input: its command and log tail were printed with its ERROR line.
        let input = record(
            RunStatus::Error,
            &[("a", JobStatus::Skipped)],
            Some(
                "input `t` did not build: `nix build …` failed (exit status: 1):\nerror: x\nerror: y",
            ),
        );
        let text = [empty, failed, input].map(|r| summary(&r)).join("\n\n");
        insta::assert_snapshot!(text, @"
        run R1 passed: no jobs to run in 17ms

        run R1 failed: 1 passed, 1 failed, 1 timed_out in 17ms
        logs: pikaci logs R1 --job a
        logs: pikaci logs R1 --job c

        run R1 error: 1 skipped in 17ms
        input `t` did not build (details above and in `pikaci status R1`)
        ");
    }

    #[test]
    fn a_retried_attempt_and_a_flaky_job_are_named_so() {
        let retried = EventKind::JobRetried {
            job: "counter".into(),
            attempt: 1,
            status: JobStatus::Failed,
            retried: crate::state::Retried::Failed,
            exit_code: Some(1),
            duration_ms: Some(1200),
            message: Some("exit code 1".into()),
            host: None,
        };
        let flaky = EventKind::JobFinished {
            job: "counter".into(),
            status: JobStatus::Flaky,
            exit_code: Some(0),
            duration_ms: Some(900),
            message: None,
            host: None,
        };
        let lines: Vec<String> = [retried, flaky]
            .into_iter()
            .filter_map(|kind| describe(&Event::new("R1", kind), false))
            .collect();
        let run = record(
            RunStatus::Passed,
            &[("counter", JobStatus::Flaky), ("lint", JobStatus::Passed)],
            None,
        );
        insta::assert_snapshot!(format!("{}\n\n{}", lines.join("\n"), summary(&run)), @"
        RETRY  counter 1.2s: attempt 1 failed: exit code 1
        FLAKY  counter 900ms

        run R1 passed: 1 passed, 1 flaky in 17ms
        FLAKY: counter passed after failing (its attempts: pikaci status R1)
        ");
    }
}
