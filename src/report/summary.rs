//! `--summary FILE` (and `$GITHUB_STEP_SUMMARY`): a Markdown table of the run's jobs.

use super::short_duration;
use super::tail::cap_text;
use crate::state::{JobRecord, RunRecord};

/// Characters of a job's or the run's message in the summary.
const MESSAGE_CHARS: usize = 1000;

pub fn markdown_summary(run: &RunRecord, jobs: &[JobRecord]) -> String {
    let mut text = format!("### pikaci run `{}`: {}\n\n", run.run_id, run.status);
    text.push_str("| job | status | duration | backend | phases | message |\n");
    text.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for job in jobs {
        let phases: Vec<String> = job
            .phases
            .iter()
            .map(|(p, ms)| format!("{p} {}", short_duration(*ms)))
            .collect();
        let cells = [
            format!("`{}`", job.job),
            status_cell(job),
            job.duration_ms.map_or("-".into(), short_duration),
            job.backend.to_string(),
            phases.join(", "),
            cap_text(job.message.as_deref().unwrap_or(""), MESSAGE_CHARS),
        ];
        let cells: Vec<String> = cells.iter().map(|c| escape_cell(c)).collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if let Some(message) = &run.message {
        text.push_str(&format!("\n{}\n", cap_text(message.trim(), MESSAGE_CHARS)));
    }
    text
}

fn status_cell(job: &JobRecord) -> String {
    let mark = if job.status.is_failure() {
        "❌"
    } else if job.status == crate::state::JobStatus::Passed {
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
