//! What the pages and the API show, read from the records the way `pikaci status` reads
//! them (nothing here writes: the lock is only asked about, read-only).

use std::collections::BTreeMap;

use crate::ids::Id;
use crate::plan::Plan;
use crate::state::{
    Event, EventKind, HostRecord, JobRecord, JobStatus, RecordError, RunDir, RunEntry, RunLock,
    RunRecord, StateDir, job_records, list_runs, read_record,
};

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("no run `{0}`")]
    NoRun(String),
    #[error("run {run} has no job `{job}`")]
    NoJob { run: String, job: String },
    #[error("cannot list the runs in {}", path.display())]
    List {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record that exists but cannot be read: the page names its path.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// One run with everything its page shows.
pub struct RunView {
    pub entry: RunEntry,
    pub dir: RunDir,
    pub record: RunRecord,
    pub jobs: Vec<(String, Result<JobRecord, String>)>,
    pub hosts: Vec<HostRecord>,
    /// Each job's `needs`, from `plan.json` (empty when it is unreadable).
    pub needs: BTreeMap<String, Vec<String>>,
    pub events: Vec<Event>,
}

/// The run named `name` (an id or `latest`), without listing every run for an id.
pub fn find_run(state: &StateDir, name: &str) -> Result<RunEntry, Unavailable> {
    let id = if name == "latest" {
        let runs = list_runs(state).map_err(|source| Unavailable::List {
            path: state.runs(),
            source,
        })?;
        runs.last()
            .map(|r| r.id.clone())
            .ok_or_else(|| Unavailable::NoRun(name.into()))?
    } else {
        name.to_string()
    };
    let run = state.run(&id);
    if Id::new(id.as_str()).is_err() || !run.path.is_dir() {
        return Err(Unavailable::NoRun(name.into()));
    }
    Ok(RunEntry {
        record: read_record(&run.run_json()),
        locked: RunLock::is_held(&run.lock_file()),
        id,
        path: run.path,
    })
}

pub fn load_run(state: &StateDir, name: &str) -> Result<RunView, Unavailable> {
    let entry = find_run(state, name)?;
    let record = entry.record?;
    let entry = RunEntry {
        record: Ok(record.clone()),
        ..entry
    };
    let dir = state.run(&entry.id);
    let jobs = job_records(&dir, &record)
        .into_iter()
        .map(|(job, r)| (job, r.map_err(|e| crate::error::chain(&e))))
        .collect();
    Ok(RunView {
        hosts: crate::report::read_run_hosts(&dir),
        events: read_events(&dir),
        needs: read_needs(&dir),
        record,
        jobs,
        dir,
        entry,
    })
}

/// Each job's `needs`, from `plan.json`; none when it cannot be read (the graph is
/// then only the jobs).
fn read_needs(dir: &RunDir) -> BTreeMap<String, Vec<String>> {
    let Ok(plan) = read_record::<Plan>(&dir.plan_json()) else {
        return BTreeMap::new();
    };
    plan.jobs
        .iter()
        .map(|node| {
            let needs = node.job.needs.iter().map(|n| n.as_str().to_string());
            (node.job.id.as_str().to_string(), needs.collect())
        })
        .collect()
}

/// `events.jsonl`, skipping lines that do not parse (one being written, say).
fn read_events(dir: &RunDir) -> Vec<Event> {
    std::fs::read_to_string(dir.events())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

impl RunView {
    pub fn job(&self, name: &str) -> Result<&JobRecord, Unavailable> {
        let no_job = || Unavailable::NoJob {
            run: self.entry.id.clone(),
            job: name.into(),
        };
        match self.jobs.iter().find(|(job, _)| job == name) {
            Some((_, Ok(job))) => Ok(job),
            // Read again for the typed error, which names the record's path.
            Some((_, Err(_))) => Err(read_record::<JobRecord>(
                &self.job_dir(name).join("status.json"),
            )
            .err()
            .map_or_else(no_job, Unavailable::Record)),
            None => Err(no_job()),
        }
    }

    /// A job's record directory; `name` is one of the run's jobs (so a valid id).
    pub fn job_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.jobs().join(name)
    }

    /// The phases each job entered, in the order its events say (for the timeline).
    pub fn phase_order(&self, job: &str) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        for event in &self.events {
            if let EventKind::JobPhase { job: j, phase } = &event.kind
                && j == job
                && !order.contains(phase)
            {
                order.push(phase.clone());
            }
        }
        order
    }
}

/// Whether a job is over: a final status, or its run's process is gone.
pub fn job_ended(dir: &RunDir, job: &str) -> Option<JobStatus> {
    let record = read_record::<JobRecord>(&dir.jobs().join(job).join("status.json")).ok();
    match record {
        Some(r) if !matches!(r.status, JobStatus::Pending | JobStatus::Running) => Some(r.status),
        Some(r) if dir.lock_file().exists() && !RunLock::is_held(&dir.lock_file()) => {
            Some(r.status)
        }
        _ => None,
    }
}
