//! `/`: every run, newest first, with a status filter that works without JavaScript.

use maud::{Markup, html};

use super::layout::{duration, page, status_badge};
use crate::state::{RunEntry, RunStatus};

/// The statuses the filter offers.
const FILTERS: &[&str] = &[
    "running",
    "passed",
    "failed",
    "cancelled",
    "error",
    "abandoned",
];

pub fn runs_page(runs: &[RunEntry], filter: Option<&str>) -> Markup {
    let shown: Vec<&RunEntry> = runs
        .iter()
        .rev()
        .filter(|run| filter.is_none_or(|f| status_name(run) == f))
        .collect();
    page(
        "runs",
        html! {
            form.filter method="get" action="/" {
                label for="status" { "Status " }
                select #status name="status" {
                    option value="" { "any" }
                    @for f in FILTERS {
                        option value=(f) selected[filter == Some(*f)] { (f) }
                    }
                }
                " " button type="submit" { "Show" }
            }
            @if shown.is_empty() {
                p.empty { "No runs" @if let Some(f) = filter { " with status " (f) } "." }
            } @else {
                table.runs {
                    thead { tr { th { "run" } th { "status" } th { "targets" } th { "started" } th { "took" } th { "jobs" } } }
                    tbody { @for run in shown { (run_row(run)) } }
                }
            }
        },
    )
}

fn run_row(run: &RunEntry) -> Markup {
    let status = status_name(run);
    let link = format!("/runs/{}", run.id);
    match &run.record {
        Err(e) => html! {
            tr.run data-run=(run.id) {
                td { a href=(link) { (run.id) } }
                td { (status_badge("unreadable", true)) }
                td colspan="4" .error { (crate::error::chain(e)) }
            }
        },
        Ok(record) => html! {
            tr.run data-run=(run.id) data-status=(status) {
                td { a href=(link) { (run.id) } }
                td { (status_badge(&status, is_failure(run.status()))) }
                td { @if record.selection.is_empty() { "all" } @else { (record.selection.join(", ")) } }
                td { (record.started_at) }
                td { (duration(record.duration_ms)) }
                td { (counts(record)) }
            }
        },
    }
}

/// `2 passed, 1 failed`, by status name.
fn counts(record: &crate::state::RunRecord) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for status in record.jobs.values() {
        *counts.entry(status.to_string()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    parts.join(", ")
}

pub fn status_name(run: &RunEntry) -> String {
    run.status().map_or("unreadable".into(), |s| s.to_string())
}

pub fn is_failure(status: Option<RunStatus>) -> bool {
    !matches!(status, Some(RunStatus::Passed | RunStatus::Running))
}
