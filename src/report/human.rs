//! Live spinners on a terminal; plain, stable lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
                    s.nar_hash,
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
        EventKind::JobStarted { job, backend } if !live => format!("start  {job} [{backend}]"),
        EventKind::JobFinished {
            job,
            status,
            duration_ms,
            message,
            ..
        } => {
            let label = match status {
                JobStatus::Passed => "pass  ",
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
            format!("{label} {job}{took}{why}")
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
    let took = run
        .duration_ms
        .map_or(String::new(), |ms| format!(" in {}", short_duration(ms)));
    let mut text = format!(
        "run {} {}: {}{took}",
        run.run_id,
        run.status,
        parts.join(", ")
    );
    if let Some(message) = &run.message {
        text.push_str(&format!("\n{message}"));
    }
    let failed: Vec<&String> = run
        .jobs
        .iter()
        .filter(|(_, s)| s.is_failure())
        .map(|(j, _)| j)
        .collect();
    if let Some(job) = failed.first() {
        text.push_str(&format!("\nlogs: pikaci logs {} --job {job}", run.run_id));
    }
    text
}

impl Reporter for HumanReporter {
    fn event(&self, event: &Event) {
        match &event.kind {
            EventKind::JobStarted { job, backend } => {
                self.start_spinner(job, format!("{job} [{backend}]"))
            }
            EventKind::PrepareStarted { input, installable } => self.start_spinner(
                &format!("prepare:{input}"),
                format!("build {input} ({installable})"),
            ),
            EventKind::JobPhase { job, phase } => self.set_spinner(job, format!("{job} {phase}")),
            EventKind::JobFinished { job, .. } => self.stop_spinner(job),
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
