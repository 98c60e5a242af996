//! `/runs/RUN`: the run, its jobs, the timeline and the `needs` graph.

use maud::{Markup, html};

use super::graph::needs_graph;
use super::layout::{duration, page, status_badge};
use super::runs::{is_failure, status_name};
use super::timeline::timeline_svg;
use crate::serve::model::RunView;
use crate::state::JobRecord;

pub fn run_page(view: &RunView, now: std::time::SystemTime) -> Markup {
    let record = &view.record;
    let status = status_name(&view.entry);
    page(
        &format!("run {}", view.entry.id),
        html! {
            dl.summary {
                dt { "status" } dd #run-status { (status_badge(&status, is_failure(view.entry.status()))) }
                dt { "started" } dd { (record.started_at) }
                dt { "took" } dd { (duration(record.duration_ms)) }
                dt { "asked for" } dd { @if record.selection.is_empty() { "everything" } @else { (record.selection.join(", ")) } }
                @if let Some(base) = &record.base { dt { "base" } dd { (base) } }
                @if let Some(snapshot) = &record.snapshot { dt { "snapshot" } dd { (snapshot.id) " (" (snapshot.files) " files)" } }
                @if let Some(rerun) = &record.rerun_of { dt { "rerun of" } dd { a href={ "/runs/" (rerun) } { (rerun) } } }
                @if let Some(message) = &record.message { dt { "message" } dd { (message) } }
                @for host in view.hosts.iter().filter(|h| h.down.is_some()) {
                    dt { "host down" } dd { (host.name) " (" (host.url) "): " (host.down.as_deref().unwrap_or("")) }
                }
            }
            h2 { "Jobs" }
            table.jobs {
                thead { tr { th { "job" } th { "status" } th { "backend" } th { "host" } th { "took" } th { "message" } } }
                tbody {
                    @for (name, job) in &view.jobs {
                        (job_row(&view.entry.id, name, job.as_ref()))
                    }
                }
            }
            h2 { "Timeline" }
            (timeline_svg(&crate::serve::timeline::timeline(view, now)))
            h2 { "Needs" }
            (needs_graph(view))
            p { a href={ "/api/runs/" (view.entry.id) } { "as JSON" } }
        },
    )
}

fn job_row(run: &str, name: &str, job: Result<&JobRecord, &String>) -> Markup {
    let link = format!("/runs/{run}/jobs/{name}");
    match job {
        Err(e) => html! {
            tr.job data-job=(name) data-status="unreadable" {
                td { a href=(link) { (name) } }
                td { (status_badge("unreadable", true)) }
                td colspan="4" .error { (e) }
            }
        },
        Ok(job) => {
            let status = job.status.to_string();
            html! {
                tr.job.failed[job.status.is_failure()] data-job=(name) data-status=(status) {
                    td { a href=(link) { (name) } }
                    td { (status_badge(&status, job.status.is_failure())) }
                    td { (job.backend) }
                    td { (job.host.as_deref().unwrap_or("-")) }
                    td { (duration(job.duration_ms)) }
                    td.message { (job.one_line()) }
                }
            }
        }
    }
}
