//! `/runs/RUN/jobs/JOB`: the job's result, phases, logs and artifacts; while it runs, its
//! log follows live (the only part that needs JavaScript) and the page reloads into the
//! final status when the job ends.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use maud::{Markup, html};

use super::layout::{duration, page, status_badge};
use crate::serve::paths::open_beneath;
use crate::state::JobRecord;

/// The most of a log shown inline; the whole of it is a link away.
const INLINE_LOG: u64 = 512 << 10;
/// The most artifacts listed.
const MAX_ARTIFACTS: usize = 1000;

pub struct JobPage<'a> {
    pub run: &'a str,
    pub name: &'a str,
    pub record: &'a JobRecord,
    pub state_root: &'a Path,
    /// The job's directory relative to the state dir.
    pub rel_dir: PathBuf,
    pub ended: bool,
}

pub fn job_page(job: &JobPage) -> Markup {
    let record = job.record;
    let status = record.status.to_string();
    let base = format!("/runs/{}/jobs/{}", job.run, job.name);
    let (guest, offset) = read_log(job.state_root, &job.rel_dir.join("guest.log"));
    let (host, _) = read_log(job.state_root, &job.rel_dir.join("host.log"));
    page(
        &format!("job {} of {}", job.name, job.run),
        html! {
            p { a href={ "/runs/" (job.run) } { "← run " (job.run) } }
            dl.summary {
                dt { "status" } dd #job-status data-status=(status) { (status_badge(&status, record.status.is_failure())) }
                dt { "backend" } dd { (record.backend) @if let Some(host) = &record.host { " on " (host) } }
                @if let Some(code) = record.exit_code { dt { "exit code" } dd { (code) } }
                @if let Some(signal) = record.signal { dt { "signal" } dd { (signal) } }
                @if let Some(at) = &record.started_at { dt { "started" } dd { (at) } }
                dt { "took" } dd { (duration(record.duration_ms)) }
                @if !record.one_line().is_empty() { dt { "message" } dd.message { (record.one_line()) } }
                @for attempt in &record.attempts { dt { "earlier" } dd { (crate::report::ran_on::attempt_line(attempt)) } }
            }
            h2 { "Phases" }
            (phases_table(record))
            h2 { "Output " small { a href={ (base) "/guest.log" } { "guest.log" } } }
            @if job.ended {
                pre #log .log { (guest) }
            } @else {
                p #live-state .live { "Running: the log follows live." }
                pre #log .log data-live={ (base) "/live/guest.log?offset=" (offset) } { (guest) }
                noscript { p { "Without JavaScript the log does not follow; reload the page to see more." } }
                script src="/assets/live.js" {}
            }
            h2 { "Host log " small { a href={ (base) "/host.log" } { "host.log" } } }
            pre.log #host-log { (host) }
            h2 { "Artifacts" }
            (artifacts_list(job.state_root, &job.rel_dir.join("artifacts"), &base))
        },
    )
}

fn phases_table(record: &JobRecord) -> Markup {
    html! {
        @if record.phases.is_empty() {
            p.empty { "No phase recorded yet." }
        } @else {
            table.phases {
                @for (phase, ms) in &record.phases {
                    tr data-phase=(phase) { td { (phase) } td { (duration(Some(*ms))) } }
                }
            }
        }
    }
}

/// The log's last [`INLINE_LOG`] bytes as text, and its length when read (where a live
/// follower starts). A missing log is empty.
fn read_log(root: &Path, rel: &Path) -> (String, u64) {
    let Ok(mut file) = open_beneath(root, rel) else {
        return (String::new(), 0);
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(INLINE_LOG);
    let mut bytes = Vec::new();
    let read = file
        .seek(SeekFrom::Start(from))
        .and_then(|_| file.by_ref().take(len - from).read_to_end(&mut bytes));
    if read.is_err() {
        return (String::new(), 0);
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0 {
        text.insert_str(0, &format!("[the first {from} bytes are not shown]\n"));
    }
    (text, from + bytes.len() as u64)
}

fn artifacts_list(root: &Path, rel: &Path, base: &str) -> Markup {
    let dir = root.join(rel);
    let entries: Vec<(String, u64, bool)> = walkdir::WalkDir::new(&dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .take(MAX_ARTIFACTS)
        .filter_map(|e| {
            let rel = e.path().strip_prefix(&dir).ok()?.to_str()?.to_string();
            let len = e.metadata().map_or(0, |m| m.len());
            Some((rel, len, e.path_is_symlink()))
        })
        .collect();
    html! {
        @if entries.is_empty() {
            p.empty { "No artifacts." }
        } @else {
            ul.artifacts {
                @for (name, len, link) in &entries {
                    li {
                        a href={ (base) "/artifacts/" (encode_path(name)) } download { (name) }
                        " " small { @if *link { "(link)" } @else { (len) " bytes" } }
                    }
                }
            }
        }
    }
}

/// Percent-encodes each part of a relative path for a link.
fn encode_path(rel: &str) -> String {
    rel.split('/')
        .map(|part| {
            part.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}
