//! The run's time axis: one bar per job, from its start, split into its phases.

use std::time::{Duration, SystemTime};

use super::model::RunView;
use crate::state::{JobRecord, JobStatus};

/// The order phases are drawn in when a job's events do not say (an old run, events cut
/// short); a phase not named here comes after these.
const USUAL_ORDER: &[&str] = &[
    "workspace",
    "setup",
    "sync",
    "build",
    "boot",
    "launch",
    "run",
    "stop",
    "collect",
    "cleanup",
];

#[derive(Debug, PartialEq)]
pub struct Timeline {
    /// The axis's length: the run's duration, or until now while it runs.
    pub total_ms: u64,
    pub bars: Vec<Bar>,
}

#[derive(Debug, PartialEq)]
pub struct Bar {
    pub job: String,
    pub status: String,
    pub failure: bool,
    pub start_ms: u64,
    pub segments: Vec<Segment>,
}

#[derive(Debug, PartialEq)]
pub struct Segment {
    pub phase: String,
    pub start_ms: u64,
    pub ms: u64,
}

pub fn timeline(view: &RunView, now: SystemTime) -> Timeline {
    let run_start = parse(&view.record.started_at);
    let since_start = |at: Option<SystemTime>| match (run_start, at) {
        (Some(start), Some(at)) => millis(at.duration_since(start).unwrap_or_default()),
        _ => 0,
    };
    let bars: Vec<Bar> = view
        .jobs
        .iter()
        .filter_map(|(name, job)| Some((name, job.as_ref().ok()?)))
        .filter(|(_, job)| job.started_at.is_some())
        .map(|(name, job)| {
            let start_ms = since_start(job.started_at.as_deref().and_then(parse));
            let running = since_start(Some(now)).saturating_sub(start_ms);
            bar(name, job, start_ms, &view.phase_order(name), running)
        })
        .collect();
    let run_ms = view
        .record
        .duration_ms
        .unwrap_or_else(|| since_start(Some(now)));
    let ends = bars
        .iter()
        .map(|b| b.segments.last().map_or(b.start_ms, |s| s.start_ms + s.ms));
    Timeline {
        total_ms: ends.fold(run_ms, u64::max).max(1),
        bars,
    }
}

/// A job's bar: its phases laid end to end from its start; while it runs, a last
/// `running` piece until now stands for the phase it is in.
fn bar(name: &str, job: &JobRecord, start_ms: u64, seen: &[String], running_ms: u64) -> Bar {
    let mut order: Vec<&str> = seen.iter().map(String::as_str).collect();
    order.extend(USUAL_ORDER.iter().filter(|p| !seen.iter().any(|s| s == *p)));
    order.extend(
        job.phases
            .keys()
            .map(String::as_str)
            .filter(|p| !USUAL_ORDER.contains(p) && !seen.iter().any(|s| s == p)),
    );
    let mut at = start_ms;
    let mut segments = Vec::new();
    for phase in order {
        if let Some(&ms) = job.phases.get(phase) {
            segments.push(Segment {
                phase: phase.to_string(),
                start_ms: at,
                ms,
            });
            at += ms;
        }
    }
    let done = at - start_ms;
    if matches!(job.status, JobStatus::Running | JobStatus::Pending) && running_ms > done {
        segments.push(Segment {
            phase: "running".into(),
            start_ms: at,
            ms: running_ms - done,
        });
    }
    Bar {
        job: name.to_string(),
        status: job.status.to_string(),
        failure: job.status.is_failure(),
        start_ms,
        segments,
    }
}

fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built from JSON, as a record is read, so fields added later keep their defaults.
    fn job(status: JobStatus, phases: &[(&str, u64)]) -> JobRecord {
        let phases: serde_json::Map<String, serde_json::Value> = phases
            .iter()
            .map(|(p, ms)| (p.to_string(), (*ms).into()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "job": "j", "backend": "host", "status": status,
            "started_at": "2026-12-01T00:00:01Z", "phases": phases,
        }))
        .unwrap()
    }

    #[test]
    fn phases_follow_the_events_order_then_the_usual_one() {
        let record = job(
            JobStatus::Failed,
            &[
                ("run", 300),
                ("workspace", 100),
                ("cleanup", 5),
                ("zeta", 7),
            ],
        );
        let seen = ["run".to_string(), "workspace".to_string()];
        let bar = bar("j", &record, 1000, &seen, 0);
        let laid: Vec<(&str, u64, u64)> = bar
            .segments
            .iter()
            .map(|s| (s.phase.as_str(), s.start_ms, s.ms))
            .collect();
        assert_eq!(
            laid,
            [
                ("run", 1000, 300),
                ("workspace", 1300, 100),
                ("cleanup", 1400, 5),
                ("zeta", 1405, 7)
            ]
        );
        assert!(bar.failure);
        assert_eq!(bar.status, "failed");
    }

    #[test]
    fn a_running_job_ends_in_a_running_piece_until_now() {
        let record = job(JobStatus::Running, &[("workspace", 100)]);
        let bar = bar("j", &record, 0, &[], 2500);
        let last = bar.segments.last().unwrap();
        assert_eq!(
            (last.phase.as_str(), last.start_ms, last.ms),
            ("running", 100, 2400)
        );
    }
}
