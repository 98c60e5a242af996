//! `pikaci run` and `pikaci rerun`: set up a run, execute its plan, write its records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::job::{RunShared, record_not_run};
use super::recorder::Recorder;
use super::scheduler;
use crate::backend::{RunBackends, RunShares};
use crate::cancel::Cancel;
use crate::changes::{ChangeSet, PathFilter};
use crate::config::{BackendKind, Config};
use crate::error::Error;
use crate::fsutil::now_rfc3339;
use crate::ids::Id;
use crate::plan::{ExecuteNode, Plan};
use crate::pool::Pool;
use crate::report::Reporter;
use crate::snapshot::Lease;
use crate::state::{
    EventKind, HostRecord, JobRecord, JobStatus, RECORD_SCHEMA, RunLock, RunRecord, RunStatus,
    SnapshotRef, StateDir, create_run, job_records, read_record,
};

pub struct RunOptions {
    /// Target or job names; empty = every target.
    pub selection: Vec<String>,
    /// Nodes run at once.
    pub parallel: usize,
    /// `--base REV` for path filters.
    pub base: Option<String>,
    /// `--no-cache-skip`: build jobs build even when their outputs are already there.
    pub no_cache_skip: bool,
    pub retry: RetryOptions,
}

/// `--retries N` and `--fail-on-flaky`: how a run treats jobs that do not pass at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryOptions {
    /// Every job's `retries`, instead of its own.
    pub retries: Option<u32>,
    /// A flaky job fails the run.
    pub fail_on_flaky: bool,
}

impl RetryOptions {
    /// Gives every job of `plan` the `--retries` value, when there is one.
    fn apply(&self, plan: &mut Plan) {
        if let Some(retries) = self.retries {
            for node in &mut plan.jobs {
                node.job.retries = retries;
            }
        }
    }
}

pub struct RunOutcome {
    pub record: RunRecord,
}

impl RunOutcome {
    /// The documented exit codes: 0 passed, 1 a job failed, 3 infrastructure, 130 cancelled.
    pub fn exit_code(&self) -> u8 {
        match self.record.status {
            RunStatus::Passed => 0,
            RunStatus::Failed => 1,
            RunStatus::Cancelled => 130,
            RunStatus::Error | RunStatus::Running | RunStatus::Abandoned => 3,
        }
    }
}

/// Where a run's workspace comes from.
enum Workspace<'a> {
    /// Snapshot the repository now.
    Take(&'a Path),
    /// Reuse a recorded snapshot (rerun).
    Recorded(&'a SnapshotRef),
    /// Taken already, to evaluate flake targets in before the plan was made.
    Taken(SnapshotRef, Lease),
}

pub fn run(
    config: &Config,
    state: &StateDir,
    options: &RunOptions,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RunOutcome, Error> {
    let needs_changes = config.targets.values().any(|t| !t.paths.is_empty());
    let changes = if needs_changes {
        Some(
            crate::changes::resolve(&config.root, options.base.as_deref()).map_err(|e| {
                if options.base.is_some() {
                    Error::Usage(e.to_string())
                } else {
                    Error::infra("resolving changed files", e)
                }
            })?,
        )
    } else {
        None
    };
    let flake_targets = super::flake_targets::needed(config, &options.selection);
    let (expanded, evaluations, workspace) = if flake_targets.is_empty() {
        (None, Vec::new(), Workspace::Take(&config.root))
    } else {
        // Flake targets are evaluated in the snapshot the run will build from.
        let (snapshot, lease) = take_snapshot(state, Workspace::Take(&config.root), cancel)
            .map_err(|detail| Error::Infra {
                what: "taking the snapshot to evaluate flake targets in".into(),
                detail,
            })?;
        let skip_cached = !options.no_cache_skip;
        let system = super::flake_targets::system_for(config, state.root(), cancel);
        let (expanded, evaluations) = super::flake_targets::expand(
            config,
            &flake_targets,
            (&snapshot.dir, &system),
            skip_cached,
            cancel,
        )?;
        for eval in &evaluations {
            crate::errln!(
                "flake target {}: {} job(s) from {} ({}), evaluated in {}",
                eval.target,
                eval.jobs.len(),
                eval.flake,
                eval.attr_path,
                crate::report::short_duration(eval.duration_ms)
            );
        }
        (
            Some(expanded),
            evaluations,
            Workspace::Taken(snapshot, lease),
        )
    };
    let config = expanded.as_ref().unwrap_or(config);
    let mut plan = Plan::build(config, &options.selection, |target| {
        skip_reason(changes.as_ref(), &target.paths)
    })
    .map_err(|e| Error::Usage(e.to_string()))?;
    plan.evaluations = evaluations;
    options.retry.apply(&mut plan);
    let base = changes.as_ref().map(|c| c.base().to_string());
    let spec = RunSpec {
        plan,
        workspace,
        selection: options.selection.clone(),
        parallel: options.parallel,
        base,
        rerun_of: None,
        fail_on_flaky: options.retry.fail_on_flaky,
    };
    let host = Host {
        config,
        state,
        reporter,
        cancel,
    };
    execute(&host, spec)
}

fn skip_reason(changes: Option<&ChangeSet>, paths: &[String]) -> Option<String> {
    let changes = changes?;
    let filter = PathFilter::new(paths).ok()?;
    changes.skip_reason(&filter)
}

/// What `pikaci rerun` asks for: the run to run again, whether only its jobs that did
/// not pass (or were not run), how many nodes at once, and `--retries`.
pub struct RerunOptions<'a> {
    pub previous: &'a str,
    pub failed_only: bool,
    pub parallel: usize,
    pub retry: RetryOptions,
}

/// Runs the recorded plan of a previous run again on its recorded snapshot.
pub fn rerun(
    config: &Config,
    state: &StateDir,
    options: &RerunOptions,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<RunOutcome, Error> {
    let RerunOptions {
        previous,
        failed_only,
        parallel,
        retry,
    } = *options;
    let old = state.run(previous);
    let record: RunRecord =
        read_record(&old.run_json()).map_err(|e| Error::Usage(e.to_string()))?;
    let mut plan: Plan = read_json(&old.plan_json())?;
    retry.apply(&mut plan);
    let snapshot = record.snapshot.clone().ok_or_else(|| {
        Error::Usage(format!(
            "run {previous} has no snapshot to rerun (it failed before taking one)"
        ))
    })?;
    let keep: BTreeSet<Id> = plan
        .jobs
        .iter()
        .map(|n| &n.job.id)
        .filter(|id| !failed_only || !record.jobs.get(id.as_str()).is_some_and(|s| s.passed()))
        .cloned()
        .collect();
    let spec = RunSpec {
        plan: plan.subset(&keep),
        workspace: Workspace::Recorded(&snapshot),
        selection: record.selection.clone(),
        parallel,
        base: record.base.clone(),
        rerun_of: Some(previous.to_string()),
        fail_on_flaky: retry.fail_on_flaky,
    };
    let host = Host {
        config,
        state,
        reporter,
        cancel,
    };
    execute(&host, spec)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Usage(format!("{} is not valid: {e}", path.display())))
}

/// Where a run happens: the configuration, the state directory, whom it reports to, and
/// what cancels it.
struct Host<'a> {
    config: &'a Config,
    state: &'a StateDir,
    reporter: &'a dyn Reporter,
    cancel: &'a Cancel,
}

/// What one run carries: its plan, where its workspace comes from, and what its record
/// says of how it was asked for.
struct RunSpec<'a> {
    plan: Plan,
    workspace: Workspace<'a>,
    selection: Vec<String>,
    parallel: usize,
    base: Option<String>,
    rerun_of: Option<String>,
    /// `--fail-on-flaky`: a flaky job makes the run `failed`.
    fail_on_flaky: bool,
}

/// Checks the plan, opens the run's records, takes the snapshot, runs the jobs and
/// writes the run's final record.
fn execute(host: &Host, spec: RunSpec) -> Result<RunOutcome, Error> {
    super::preflight::check(host.config, &spec.plan)?;
    let started = Instant::now();
    // The lock is held until the run's record is final: `runs` tells a live run by it.
    let (recorder, _lock) = open_run(host, &spec)?;
    let plan = &spec.plan;
    if plan.jobs.iter().any(|n| n.job.backend == BackendKind::Host) {
        crate::backend::host::Isolation::probe_early();
    }
    // The lease is held until the run is over: no later take patches a tree it uses.
    let (snapshot, _lease) = match take_snapshot(host.state, spec.workspace, host.cancel) {
        Ok(taken) => taken,
        Err(message) => return no_snapshot(&recorder, plan, host.cancel, started, message),
    };
    recorder
        .update(|r| r.snapshot = Some(snapshot.clone()))
        .map_err(|e| Error::infra("writing run.json", e))?;
    recorder.emit(EventKind::RunStarted {
        jobs: plan.jobs.iter().map(|n| n.job.id.to_string()).collect(),
        snapshot: Some(snapshot.clone()),
    });
    record_skipped(host.config, &recorder, plan)?;
    let (mut outcome, push) = run_jobs(host, &recorder, plan, &snapshot, spec.parallel);
    let why = "the run ended before it did";
    let errors = settle_unfinished(&recorder, plan, &outcome, host.cancel, why);
    outcome.infra_errors.extend(errors);
    if let Some(push) = push {
        recorder
            .update(|r| r.push = Some(push))
            .map_err(|e| Error::infra("writing run.json", e))?;
    }
    let status = run_status(&outcome, host.cancel, spec.fail_on_flaky);
    let message = (!outcome.infra_errors.is_empty()).then(|| outcome.infra_errors.join("\n"));
    let record = finish(&recorder, started, status, message)
        .map_err(|e| Error::infra("writing run.json", e))?;
    Ok(RunOutcome { record })
}

/// Creates the run's directory, lock and `plan.json`, and its first `run.json`: every
/// job of the plan pending.
fn open_run<'a>(host: &Host<'a>, spec: &RunSpec) -> Result<(Recorder<'a>, RunLock), Error> {
    let (run, lock) =
        create_run(host.state).map_err(|e| Error::infra("creating the run directory", e))?;
    let plan = &spec.plan;
    // Synced with the first run.json (Recorder::create).
    crate::fsutil::write_json_with(&run.plan_json(), plan, crate::fsutil::Durability::Atomic)
        .map_err(|e| Error::infra("writing plan.json", e))?;
    let record = RunRecord {
        schema_version: RECORD_SCHEMA,
        run_id: run.id.clone(),
        status: RunStatus::Running,
        started_at: now_rfc3339(),
        finished_at: None,
        duration_ms: None,
        pid: std::process::id(),
        workspace: host.config.root.clone(),
        config: host.config.path.clone(),
        selection: spec.selection.clone(),
        snapshot: None,
        base: spec.base.clone(),
        rerun_of: spec.rerun_of.clone(),
        push: None,
        jobs: plan
            .jobs
            .iter()
            .map(|n| (n.job.id.to_string(), JobStatus::Pending))
            .collect(),
        message: None,
    };
    let recorder = Recorder::create(run, record, host.reporter)
        .map_err(|e| Error::infra("writing run.json", e))?;
    Ok((recorder, lock))
}

/// Ends a run whose snapshot could not be taken: none of its jobs ran.
fn no_snapshot(
    recorder: &Recorder,
    plan: &Plan,
    cancel: &Cancel,
    started: Instant,
    mut message: String,
) -> Result<RunOutcome, Error> {
    let why = format!("not run: {message}");
    let nothing_ran = scheduler::Outcome::default();
    for error in settle_unfinished(recorder, plan, &nothing_ran, cancel, &why) {
        message.push_str(&format!("\n{error}"));
    }
    let status = if cancel.is_cancelled() {
        RunStatus::Cancelled
    } else {
        RunStatus::Error
    };
    let record = finish(recorder, started, status, Some(message))
        .map_err(|e| Error::infra("writing run.json", e))?;
    Ok(RunOutcome { record })
}

/// Records the jobs the plan skipped (path filters) as `skipped`, with why.
fn record_skipped(config: &Config, recorder: &Recorder, plan: &Plan) -> Result<(), Error> {
    for skipped in &plan.skipped {
        let node = ExecuteNode {
            job: config
                .jobs
                .get(&skipped.job)
                .cloned()
                .ok_or_else(|| Error::Usage(format!("job `{}` is gone", skipped.job)))?,
            targets: skipped.targets.clone(),
        };
        record_not_run(recorder, &node, JobStatus::Skipped, skipped.reason.clone())
            .map_err(|e| Error::infra("writing a job record", e))?;
    }
    Ok(())
}

/// Runs the plan's DAG on the snapshot with the run's backends, then pushes to
/// `[nix] cache` (while the build host's session is still open).
fn run_jobs(
    host: &Host,
    recorder: &Recorder,
    plan: &Plan,
    snapshot: &SnapshotRef,
    parallel: usize,
) -> (scheduler::Outcome, Option<crate::state::PushRecord>) {
    let run_dir = recorder.run.path.clone();
    let backends = RunBackends::new(RunShares {
        config: host.config,
        run_id: &recorder.run.id,
        run_dir: &run_dir,
        cache: host.state.cache(),
        state_root: host.state.root(),
        snapshot,
    });
    let pool = reach_pool(host, recorder, plan, &backends);
    let shared = RunShared {
        snapshot: &snapshot.dir,
        backends: &backends,
        recorder,
        cancel: host.cancel,
    };
    let outcome = scheduler::execute(plan, &shared, parallel.max(1), pool);
    // After the jobs, whatever they did: a failed push is reported, and fails no job.
    let push = super::push::push(&shared, plan);
    (outcome, push)
}

/// Reaches the hosts the plan's jobs may be placed on, hands each open connection to
/// that host's backends, and writes `hosts.json`. A host that does not answer is down
/// for the run from the start.
fn reach_pool(host: &Host, recorder: &Recorder, plan: &Plan, backends: &RunBackends) -> Pool {
    let config = host.config;
    let jobs: Vec<&crate::config::Job> = plan.jobs.iter().map(|n| &n.job).collect();
    let candidates = crate::pool::candidates(config, &jobs);
    let mut pool = Pool::default();
    let mut records = Vec::new();
    let reached = crate::pool::reach_all(config, &candidates, host.state.root(), host.cancel);
    for (pool_host, reached) in reached {
        let mut record = HostRecord {
            name: pool_host.name.to_string(),
            url: pool_host.spec.to_string(),
            down: None,
            labels: Vec::new(),
            slots: None,
        };
        match reached {
            Ok(reached) => {
                let slots = crate::pool::slots(pool_host, &reached.probe, &config.backends.microvm);
                pool.add_up(pool_host, reached.probe.labels(), slots);
                backends.adopt(&pool_host.name, reached.transport);
                record.labels = pool.labels(&pool_host.name);
                record.slots = Some(slots);
            }
            Err(e) => {
                let why = crate::error::chain(&e);
                pool.add_down(pool_host, why.clone());
                recorder.emit(EventKind::HostDown {
                    host: pool_host.name.to_string(),
                    message: why.clone(),
                });
                record.down = Some(why);
            }
        }
        records.push(record);
    }
    for unreached in config.hosts.values() {
        if !candidates.iter().any(|c| c.name == unreached.name) {
            pool.add_unreached(unreached);
        }
    }
    if !records.is_empty() {
        // The record of where jobs could go; a run without it only lacks the detail.
        let path = recorder.run.path.join("hosts.json");
        let _ = crate::fsutil::write_json_with(&path, &records, crate::fsutil::Durability::Atomic);
    }
    pool
}

/// The run's status from what its jobs did: cancelled, an error (of pikaci or of a job),
/// a failure (a flaky job too, with `fail_on_flaky`), or passed.
fn run_status(outcome: &scheduler::Outcome, cancel: &Cancel, fail_on_flaky: bool) -> RunStatus {
    let flaky = |s: &JobStatus| fail_on_flaky && *s == JobStatus::Flaky;
    if cancel.is_cancelled() {
        RunStatus::Cancelled
    } else if !outcome.infra_errors.is_empty()
        || outcome.statuses.values().any(|s| *s == JobStatus::Error)
    {
        RunStatus::Error
    } else if outcome
        .statuses
        .values()
        .any(|s| s.is_failure() || flaky(s))
    {
        RunStatus::Failed
    } else {
        RunStatus::Passed
    }
}

/// Gives every job the run record still shows as `pending` or `running` a final record,
/// so a finished run has none: the status the scheduler saw and why its record could not
/// be written then (e.g. out of file descriptors), else `cancelled` or `error` with
/// `why`. Returns the records that still cannot be written.
fn settle_unfinished(
    recorder: &Recorder,
    plan: &Plan,
    outcome: &scheduler::Outcome,
    cancel: &Cancel,
    why: &str,
) -> Vec<String> {
    let recorded = recorder.record().jobs;
    let unfinished = |node: &&ExecuteNode| {
        matches!(
            recorded.get(node.job.id.as_str()),
            Some(JobStatus::Pending | JobStatus::Running)
        )
    };
    let mut errors = Vec::new();
    for node in plan.jobs.iter().filter(unfinished) {
        let id = &node.job.id;
        let status = match outcome.statuses.get(id) {
            Some(status) if !matches!(status, JobStatus::Pending | JobStatus::Running) => *status,
            _ if cancel.is_cancelled() => JobStatus::Cancelled,
            _ => JobStatus::Error,
        };
        let message = match outcome.unrecorded.get(id) {
            Some(e) => format!("pikaci could not write its record: {e}"),
            None => why.to_string(),
        };
        if let Err(e) = record_not_run(recorder, node, status, message) {
            errors.push(format!("cannot record job `{}`: {e}", node.job.id));
        }
    }
    errors
}

fn take_snapshot(
    state: &StateDir,
    workspace: Workspace,
    cancel: &Cancel,
) -> Result<(SnapshotRef, Lease), String> {
    let snapshot = match workspace {
        Workspace::Take(root) => {
            let exclude: Vec<PathBuf> = vec![state.root().to_path_buf()];
            crate::snapshot::take_cancellable(root, &state.cache(), &exclude, cancel)
        }
        Workspace::Recorded(recorded) => {
            crate::snapshot::open(&state.cache(), &recorded.id, cancel)
        }
        Workspace::Taken(snapshot, lease) => return Ok((snapshot, lease)),
    }
    .map_err(|e| match e {
        crate::snapshot::SnapshotError::Cancelled => "cancelled while taking the snapshot".into(),
        e => format!("snapshot failed: {}", crate::error::chain(&e)),
    })?;
    for note in &snapshot.notes {
        crate::errln!("note: {note}");
    }
    let recorded = SnapshotRef {
        id: snapshot.id,
        dir: snapshot.dir,
        files: snapshot.files,
        reused: snapshot.reused,
    };
    Ok((recorded, snapshot.lease))
}

fn finish(
    recorder: &Recorder,
    started: Instant,
    status: RunStatus,
    message: Option<String>,
) -> std::io::Result<RunRecord> {
    let duration_ms = started.elapsed().as_millis() as u64;
    let record = recorder.update(|r| {
        r.status = status;
        r.finished_at = Some(now_rfc3339());
        r.duration_ms = Some(duration_ms);
        r.message = message;
    })?;
    recorder.emit(EventKind::RunFinished {
        status,
        duration_ms,
    });
    let jobs: Vec<JobRecord> = job_records(&recorder.run, &record)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect();
    recorder.reporter().finish(&record, &jobs);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Event, JobRecord};

    /// Panics when `job` starts, as a broken reporter or backend would in that job's thread.
    struct PanicsOn(&'static str);

    impl Reporter for PanicsOn {
        fn event(&self, event: &Event) {
            if let EventKind::JobStarted { job, .. } = &event.kind
                && job == self.0
            {
                panic!("reporter broke on {job}");
            }
        }
        fn finish(&self, _run: &RunRecord, _jobs: &[JobRecord]) {}
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn a_panic_in_a_job_thread_is_that_jobs_error_and_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let toml = "[defaults]\nbackend = \"host\"\n\
            [jobs.boom]\ncommand = \"true\"\n\
            [jobs.after]\ncommand = \"true\"\nneeds = [\"boom\"]\n\
            [jobs.fine]\ncommand = \"true\"\n";
        std::fs::write(dir.path().join("pikaci.toml"), toml).unwrap();
        std::fs::write(dir.path().join(".gitignore"), ".pikaci/\n").unwrap();
        git(dir.path(), &["init", "-q"]);
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-qm", "init"]);
        let config = crate::config::load(&dir.path().join("pikaci.toml")).unwrap();
        let state = StateDir::new(dir.path().join(".pikaci"));
        let options = RunOptions {
            selection: Vec::new(),
            parallel: 2,
            base: None,
            no_cache_skip: false,
            retry: RetryOptions::default(),
        };
        let (done, outcome) = std::sync::mpsc::channel();
        let state_dir = state.clone();
        // In a thread of its own: the scheduler used to wait for the panicked job for ever.
        std::thread::spawn(move || {
            let reporter = PanicsOn("boom");
            let _ = done.send(run(
                &config,
                &state_dir,
                &options,
                &reporter,
                &Cancel::new(),
            ));
        });
        let outcome = outcome
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the run ends")
            .unwrap();
        let record = &outcome.record;
        assert_eq!(record.status, RunStatus::Error);
        assert_eq!(record.jobs["boom"], JobStatus::Error);
        assert_eq!(record.jobs["after"], JobStatus::Skipped);
        assert_eq!(record.jobs["fine"], JobStatus::Passed);
        let run_dir = state.run(&record.run_id);
        let boom_dir = run_dir.job(&Id::new("boom").unwrap());
        let boom: JobRecord = read_record(&boom_dir.join("status.json")).unwrap();
        assert_eq!(
            boom.message.as_deref(),
            Some("pikaci could not run it: it panicked: reporter broke on boom")
        );
    }
}
