//! One job's life: workspace, launch, wait, stop, collect — its result recorded — then
//! the guest's teardown (`cleanup`), off the result's critical path but inside the job's
//! thread, so the job's slot is held and `pikaci run` waits for it.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::recorder::Recorder;
use crate::backend::{BackendError, Guest, JobContext, RunBackends};
use crate::cancel::Cancel;
use crate::exec::Ended;
use crate::fsutil::now_rfc3339;
use crate::ids::Id;
use crate::nix::StorePath;
use crate::plan::ExecuteNode;
use crate::protocol::{GuestResult, GuestStatus, Request, SCHEMA_VERSION};
use crate::state::{Attempt, EventKind, JobRecord, JobStatus, RECORD_SCHEMA, Retried};

/// Records a job that will not run (filtered out, or a dependency did not pass).
pub fn record_not_run(
    recorder: &Recorder,
    node: &ExecuteNode,
    status: JobStatus,
    message: String,
) -> std::io::Result<()> {
    record_unrun(recorder, node, status, message, Vec::new())
}

/// [`record_not_run`], keeping the job's earlier attempts in its record.
pub fn record_unrun(
    recorder: &Recorder,
    node: &ExecuteNode,
    status: JobStatus,
    message: String,
    attempts: Vec<Attempt>,
) -> std::io::Result<()> {
    let record = JobRecord {
        schema_version: RECORD_SCHEMA,
        job: node.job.id.to_string(),
        targets: node.targets.iter().map(Id::to_string).collect(),
        backend: node.job.backend,
        status,
        exit_code: None,
        signal: None,
        started_at: None,
        finished_at: None,
        duration_ms: None,
        message: Some(message.clone()),
        phases: BTreeMap::new(),
        failed_in: None,
        host: None,
        attempts,
    };
    recorder.write_job(&recorder.run.job(&node.job.id), &record)?;
    recorder.emit(finished_event(&record));
    Ok(())
}

/// What every job of a run is given: the run's snapshot, its backends, where it records,
/// and its cancellation.
pub struct RunShared<'a> {
    pub snapshot: &'a Path,
    pub backends: &'a RunBackends<'a>,
    pub recorder: &'a Recorder<'a>,
    pub cancel: &'a Cancel,
}

/// Where one attempt of a job runs: on this machine (`host` jobs) or on the pool host
/// `on`, after the `earlier` attempts; `retries_left` when an attempt that does not pass
/// is run again.
pub struct Placed {
    pub on: Option<Id>,
    pub earlier: Vec<Attempt>,
    pub retries_left: bool,
}

/// How one attempt of a job ended.
#[derive(Debug)]
pub enum JobEnd {
    /// Its final record is written, with this status.
    Recorded(JobStatus),
    /// It did not pass and the job runs again: recorded as `attempt`, whose files the
    /// scheduler keeps before the next attempt starts.
    Retry(Attempt),
    /// Its host failed before its guest started: nothing of the job ran, so it may be
    /// placed on another host.
    HostDown { host: Id, why: String },
    /// Its host failed while its guest ran: recorded as an `error` naming the host, as
    /// `attempt`; with `retries` left (`attempt.retried`) it runs again elsewhere.
    HostLost { host: Id, attempt: Attempt },
}

/// How one attempt of a job ran: its end (`Err` only when its record could not be
/// written), and whether its guest's teardown, run after the end was recorded, failed.
#[derive(Debug)]
pub struct JobRan {
    pub end: std::io::Result<JobEnd>,
    pub teardown: Result<(), Box<TeardownFailed>>,
}

/// A guest's teardown that failed after the job's result was recorded: what the guest
/// used (an Incus instance, a microVM's dir) may be left on its host.
#[derive(Debug, thiserror::Error)]
#[error(
    "the guest of job `{job}` was not torn down{}: it may be left there (`pikaci gc` removes what runs that are over left)",
    on_host(host.as_deref())
)]
pub struct TeardownFailed {
    pub job: String,
    /// The pool host it ran on; none for `host` jobs.
    pub host: Option<String>,
    #[source]
    pub source: BackendError,
}

fn on_host(host: Option<&str>) -> String {
    host.map_or(" on this machine".into(), |h| format!(" on host `{h}`"))
}

/// Runs one attempt of a job, records its end, then tears its guest down. Record-write
/// failures are the end's `Err`; a job that cannot start is recorded with status
/// `error` and the phase it failed in.
pub fn run_job(
    node: &ExecuteNode,
    inputs: &BTreeMap<Id, Vec<StorePath>>,
    run: &RunShared,
    placed: Placed,
) -> JobRan {
    if let Some(spec) = &node.job.build {
        let end = super::build_job::run_build_job(node, spec, run);
        return JobRan {
            end,
            teardown: Ok(()),
        };
    }
    let host = placed.on.as_ref().map(Id::to_string);
    let mut left = Leftovers::default();
    let end = run_attempt(node, inputs, run, placed, &mut left);
    let dir = run.recorder.run.job(&node.job.id);
    let teardown = tear_down(left, node.job.id.as_str(), run.recorder, &dir).map_err(|source| {
        Box::new(TeardownFailed {
            job: node.job.id.to_string(),
            host,
            source,
        })
    });
    if let Err(failed) = &teardown {
        crate::errln!("warning: {}", crate::error::chain(failed));
        note(&dir, &crate::error::chain(failed));
    }
    JobRan { end, teardown }
}

/// What a job's attempt leaves for its teardown: its guest, still on its host; its
/// private workspace copy, removed after the guest; and its final record, if written,
/// which the teardown's time is added to.
#[derive(Default)]
struct Leftovers {
    guest: Option<Box<dyn Guest>>,
    copy: PrivateCopy,
    record: Option<JobRecord>,
}

/// Tears down the guest of an attempt whose end is recorded: the `cleanup` phase,
/// announced when it starts (after `job_finished`) and timed into the final record by
/// an update that changes nothing else. The workspace copy goes after the guest that
/// used it.
fn tear_down(
    left: Leftovers,
    job: &str,
    recorder: &Recorder,
    dir: &Path,
) -> Result<(), BackendError> {
    let Leftovers {
        guest,
        copy,
        record,
    } = left;
    let Some(mut guest) = guest else {
        return Ok(());
    };
    recorder.emit(EventKind::JobPhase {
        job: job.to_string(),
        phase: "cleanup".into(),
    });
    let started = Instant::now();
    let torn_down = guest.cleanup();
    drop(guest);
    drop(copy);
    if let Some(mut record) = record {
        record
            .phases
            .insert("cleanup".into(), started.elapsed().as_millis() as u64);
        // Best effort: the record already holds the job's result; only the teardown's
        // time would be missing.
        let _ = recorder.amend_job(dir, &record);
    }
    torn_down
}

/// One attempt up to its recorded end; its guest and workspace copy are left in `left`.
fn run_attempt(
    node: &ExecuteNode,
    inputs: &BTreeMap<Id, Vec<StorePath>>,
    run: &RunShared,
    placed: Placed,
    left: &mut Leftovers,
) -> std::io::Result<JobEnd> {
    let job = &node.job;
    let dir = run.recorder.run.job(&job.id);
    let started = SystemTime::now();
    let retries_left = placed.retries_left;
    let mut record = start_record(node, placed.on.as_ref(), placed.earlier, run.recorder, &dir)?;

    let mut phases = Phases {
        times: &mut record.phases,
        current: "setup",
        job: job.id.as_str(),
        recorder: run.recorder,
    };
    let outcome = Drive {
        node,
        inputs,
        run,
        dir: &dir,
        on: placed.on.as_ref(),
    }
    .drive(&mut phases, left);
    let failed_in = phases.current;
    let mut lost = None;
    let (status, result) = match outcome {
        Ok((ended, result)) => (job_status(ended, &result), result),
        Err(error) => {
            record.failed_in = Some(failed_in.to_string());
            let message = crate::error::chain(&error);
            log_commands(&dir, &message, &error);
            let host_failed = placed
                .on
                .as_ref()
                .filter(|_| !run.cancel.is_cancelled())
                .filter(|_| crate::backend::host_failure(&error).is_some());
            if let Some(host) = host_failed {
                // Nothing of the job's command ran before `run`: it may go elsewhere.
                if matches!(failed_in, "setup" | "workspace" | "launch") {
                    note(
                        &dir,
                        &format!("host `{host}` failed before the guest started: {message}"),
                    );
                    return Ok(JobEnd::HostDown {
                        host: host.clone(),
                        why: message,
                    });
                }
                lost = Some(host.clone());
            }
            let message = match &lost {
                Some(host) => format!("host `{host}` failed while the job ran: {message}"),
                None => message,
            };
            // A step cut short by Ctrl-C or SIGTERM (a sync, a build) is the cancellation.
            if run.cancel.is_cancelled() {
                (JobStatus::Cancelled, GuestResult::error(started, message))
            } else {
                let message = crate::hint::with_hint(message);
                (JobStatus::Error, GuestResult::error(started, message))
            }
        }
    };
    let finished = SystemTime::now();
    // A job that passes after an attempt of its own did not is flaky.
    record.status = match status {
        JobStatus::Passed if record.attempts.iter().any(Attempt::counts_as_flaky) => {
            JobStatus::Flaky
        }
        status => status,
    };
    record.finished_at = Some(now_rfc3339());
    record.duration_ms = Some(
        finished
            .duration_since(started)
            .unwrap_or_default()
            .as_millis() as u64,
    );
    record.exit_code = result.exit_code;
    record.signal = result.signal;
    record.message = result.message;
    run.recorder.write_job(&dir, &record)?;
    left.record = Some(record.clone());
    let retried = retries_left
        .then(|| super::scheduler::retry_reason(record.status, lost.is_some()))
        .flatten()
        .filter(|_| !run.cancel.is_cancelled());
    let attempt = retried.map(|why| Attempt::of(&record, why));
    run.recorder.emit(match &attempt {
        Some(attempt) => EventKind::JobRetried {
            job: record.job.clone(),
            attempt: attempt.attempt,
            status: record.status,
            retried: attempt.retried.unwrap_or(Retried::Error),
            exit_code: record.exit_code,
            duration_ms: record.duration_ms,
            message: record.message.clone(),
            host: record.host.clone(),
        },
        None => finished_event(&record),
    });
    Ok(match (lost, attempt) {
        (None, None) => JobEnd::Recorded(record.status),
        (None, Some(attempt)) => JobEnd::Retry(attempt),
        (Some(host), attempt) => JobEnd::HostLost {
            host,
            attempt: attempt.unwrap_or_else(|| Attempt {
                retried: None,
                ..Attempt::of(&record, Retried::HostLost)
            }),
        },
    })
}

/// Writes the record of a job that starts now (on `host`, after the `earlier` attempts)
/// and announces it.
pub(super) fn start_record(
    node: &ExecuteNode,
    host: Option<&Id>,
    earlier: Vec<Attempt>,
    recorder: &Recorder,
    dir: &Path,
) -> std::io::Result<JobRecord> {
    let record = JobRecord {
        schema_version: RECORD_SCHEMA,
        job: node.job.id.to_string(),
        targets: node.targets.iter().map(Id::to_string).collect(),
        backend: node.job.backend,
        status: JobStatus::Running,
        exit_code: None,
        signal: None,
        started_at: Some(now_rfc3339()),
        finished_at: None,
        duration_ms: None,
        message: None,
        phases: BTreeMap::new(),
        failed_in: None,
        host: host.map(Id::to_string),
        attempts: earlier,
    };
    recorder.write_job(dir, &record)?;
    recorder.emit(EventKind::JobStarted {
        job: record.job.clone(),
        backend: record.backend,
        host: record.host.clone(),
    });
    Ok(record)
}

/// The `job_finished` event of a job whose final record is `record`.
pub(super) fn finished_event(record: &JobRecord) -> EventKind {
    EventKind::JobFinished {
        job: record.job.clone(),
        status: record.status,
        exit_code: record.exit_code,
        duration_ms: record.duration_ms,
        message: record.message.clone(),
        host: record.host.clone(),
    }
}

/// Moves the files of the attempt that just ended into `attempts/<n>/` of the job's
/// directory, which the next attempt starts afresh.
pub fn keep_attempt(dir: &Path, attempt: u32) -> std::io::Result<()> {
    let kept = dir.join("attempts").join(attempt.to_string());
    crate::fsutil::create_dir_all(&kept)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() != "attempts" {
            std::fs::rename(entry.path(), kept.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// A line of pikaci's own in the job's `host.log`, best effort (the record holds what
/// matters).
fn note(dir: &Path, text: &str) {
    use std::io::Write;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("host.log"));
    let _ = log.and_then(|mut log| writeln!(log, "pikaci: {text}"));
}

fn job_status(ended: Ended, result: &GuestResult) -> JobStatus {
    if ended == Ended::Cancelled {
        return JobStatus::Cancelled;
    }
    match result.status {
        GuestStatus::Passed => JobStatus::Passed,
        GuestStatus::Failed => JobStatus::Failed,
        GuestStatus::TimedOut => JobStatus::TimedOut,
        GuestStatus::Error => JobStatus::Error,
    }
}

/// Times each phase into the job record (milliseconds) and announces it; `current` is
/// the phase last entered, so a job that fails is recorded with where it failed.
struct Phases<'a> {
    times: &'a mut BTreeMap<String, u64>,
    current: &'static str,
    job: &'a str,
    recorder: &'a Recorder<'a>,
}

impl Phases<'_> {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        self.current = name;
        self.recorder.emit(EventKind::JobPhase {
            job: self.job.to_string(),
            phase: name.to_string(),
        });
        let started = Instant::now();
        let value = f();
        *self.times.entry(name.to_string()).or_default() += started.elapsed().as_millis() as u64;
        value
    }
}

/// Removes the job's private workspace copy when the job is over, however it ends.
#[derive(Default)]
struct PrivateCopy(Option<PathBuf>);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = crate::state::remove_tree(&path);
        }
    }
}

/// One job's way through its phases: setup, workspace, launch, run, stop, collect. The
/// guest and the workspace copy are left for [`tear_down`].
struct Drive<'a> {
    node: &'a ExecuteNode,
    inputs: &'a BTreeMap<Id, Vec<StorePath>>,
    run: &'a RunShared<'a>,
    dir: &'a Path,
    /// The pool host it was placed on; none for `host` jobs.
    on: Option<&'a Id>,
}

impl Drive<'_> {
    fn drive(
        &self,
        phases: &mut Phases,
        left: &mut Leftovers,
    ) -> Result<(Ended, GuestResult), JobError> {
        let job = &self.node.job;
        let cancel = self.run.cancel;
        // Secrets are read before the backend is set up: a job that lacks one fails in
        // setup without starting anything.
        let env = self.env()?;
        let backend = phases.time("setup", || {
            self.run.backends.get(job.backend, self.on, cancel)
        })?;
        let workspace = if job.writable_workspace && backend.uses_local_copy() {
            let path = self.dir.join("workspace");
            phases
                .time("workspace", || {
                    crate::snapshot::private_copy(self.run.snapshot, &path)
                })
                .map_err(JobError::Workspace)?;
            left.copy.0 = Some(path.clone());
            path
        } else {
            self.run.snapshot.to_path_buf()
        };
        let request = self.request(env, &workspace);
        // The record never holds a secret's value; the guest's copy does.
        write_request(self.dir, &request.redacted()).map_err(JobError::Request)?;
        let inputs: BTreeMap<Id, Vec<StorePath>> = job
            .inputs
            .iter()
            .filter_map(|input| Some((input.clone(), self.inputs.get(input)?.clone())))
            .collect();
        let cx = JobContext {
            run_id: self.run.recorder.run_id(),
            request: &request,
            inputs: &inputs,
            workspace: &workspace,
            job_dir: self.dir,
        };
        let started = SystemTime::now();
        let launched = phases.time("launch", || backend.launch(&cx, cancel))?;
        let guest = left.guest.insert(launched);
        for (step, took) in guest.launch_steps() {
            phases
                .times
                .insert(format!("launch.{step}"), took.as_millis() as u64);
        }
        let ended = self.wait(guest.as_mut(), phases)?;
        let result = phases.time("collect", || guest.collect(ended, started))?;
        Ok((ended, result))
    }

    /// The job's environment: its own `env`, what CI services set (the job may override
    /// `CI`, not the run's id), and its secrets' values.
    fn env(&self) -> Result<BTreeMap<String, String>, JobError> {
        let job = &self.node.job;
        let mut env = job.env.clone();
        env.entry("CI".into()).or_insert_with(|| "true".into());
        env.insert("PIKACI_RUN_ID".into(), self.run.recorder.run_id().into());
        for name in &job.secrets {
            let value = std::env::var(name).map_err(|_| JobError::Secret {
                name: name.clone(),
                job: job.id.to_string(),
            })?;
            env.insert(name.clone(), value);
        }
        Ok(env)
    }

    fn request(&self, env: BTreeMap<String, String>, workspace: &Path) -> Request {
        let job = &self.node.job;
        let (timeout_secs, timeout_ms) = Request::timeout_fields(job.timeout);
        Request {
            schema_version: SCHEMA_VERSION,
            job_id: job.id.to_string(),
            command: job.command.clone(),
            timeout_secs,
            timeout_ms,
            run_as_root: job.root,
            workdir: workspace.to_path_buf(),
            env,
            path: job
                .inputs
                .iter()
                .flat_map(|input| self.inputs.get(input).into_iter().flatten())
                .map(|p| p.as_path().to_path_buf())
                .collect(),
            writable_workspace: job.writable_workspace,
            secrets: job.secrets.clone(),
            shell: job.shell.clone(),
        }
    }

    /// Waits for the guest's command until the job's deadline, and stops the guest when
    /// the command did not end by itself.
    fn wait(&self, guest: &mut dyn Guest, phases: &mut Phases) -> Result<Ended, JobError> {
        let cancel = self.run.cancel;
        let deadline = Instant::now() + self.node.job.timeout;
        let ended = phases.time("run", || guest.wait(deadline, cancel))?;
        if !matches!(ended, Ended::Exited(_)) {
            phases.time("stop", || guest.stop(cancel.is_urgent()));
        }
        Ok(ended)
    }
}

/// Why a job could not run to its end; its record holds the message, rendered once.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the secret `{name}` is not set in pikaci's environment (jobs.{job}.secrets)")]
    Secret { name: String, job: String },
    #[error("cannot copy the workspace for a writable job")]
    Workspace(#[source] crate::snapshot::SnapshotError),
    #[error("cannot write request.json")]
    Request(#[source] std::io::Error),
}

/// Appends the whole command lines of a failed job's host steps to its `host.log`: the
/// message shows them with their scripts elided.
fn log_commands(dir: &Path, message: &str, error: &JobError) {
    use std::io::Write;
    let commands = crate::backend::commands_of(error);
    if commands.is_empty() {
        return;
    }
    let mut text = format!("pikaci: {message}\n");
    for command in commands {
        text.push_str(&format!("pikaci: the whole command: {}\n", command.full));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("host.log"));
    // The record holds the message; the log is the extra detail, best effort.
    let _ = log.and_then(|mut log| log.write_all(text.as_bytes()));
}

/// The request as the guest sees it, kept with the job's records (mode 0600: it holds
/// the job's environment).
fn write_request(dir: &Path, request: &Request) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join("request.json");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&serde_json::to_vec_pretty(request).map_err(std::io::Error::other)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StepError;
    use crate::state::{Event, RunDir, RunRecord};
    use std::sync::Mutex;

    /// Keeps the events it is told.
    #[derive(Default)]
    struct Seen(Mutex<Vec<EventKind>>);

    impl crate::report::Reporter for Seen {
        fn event(&self, event: &Event) {
            self.0.lock().unwrap().push(event.kind.clone());
        }
        fn finish(&self, _run: &RunRecord, _jobs: &[JobRecord]) {}
    }

    /// A guest whose teardown fails the way a failed `incus delete` does.
    struct FailsToTearDown;

    impl Guest for FailsToTearDown {
        fn wait(&mut self, _: Instant, _: &Cancel) -> Result<Ended, BackendError> {
            unreachable!()
        }
        fn stop(&mut self, _: bool) {}
        fn collect(&mut self, _: Ended, _: SystemTime) -> Result<GuestResult, BackendError> {
            unreachable!()
        }
        fn cleanup(&mut self) -> Result<(), BackendError> {
            Err(BackendError::Step {
                job: "quick".into(),
                step: "deleting the instance",
                source: Box::new(StepError::Io(std::io::Error::other(
                    "Error: Failed deleting instance \"pikaci-x-quick\": device busy",
                ))),
            })
        }
    }

    fn recorder<'a>(dir: &Path, reporter: &'a Seen) -> Recorder<'a> {
        let record: RunRecord = serde_json::from_value(serde_json::json!({
            "schema_version": RECORD_SCHEMA,
            "run_id": "r",
            "status": "running",
            "started_at": "2026-12-01T00:00:00Z",
            "pid": 1,
            "workspace": "/w",
            "config": "/w/pikaci.toml",
        }))
        .unwrap();
        let run = RunDir {
            id: "r".into(),
            path: dir.to_path_buf(),
        };
        Recorder::create(run, record, reporter).unwrap()
    }

    /// A teardown that fails is its error, with the tool's words; the job's final record
    /// keeps its result and gains the teardown's time, announced after the result.
    #[test]
    fn a_failed_teardown_is_reported_and_the_result_it_follows_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let seen = Seen::default();
        let recorder = recorder(tmp.path(), &seen);
        let dir = tmp.path().join("jobs/quick");
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "schema_version": RECORD_SCHEMA,
            "job": "quick",
            "backend": "incus",
            "status": "passed",
            "exit_code": 0,
            "phases": {"run": 5},
            "host": "local",
        }))
        .unwrap();
        recorder.write_job(&dir, &record).unwrap();
        let left = Leftovers {
            guest: Some(Box::new(FailsToTearDown)),
            copy: PrivateCopy(None),
            record: Some(record.clone()),
        };
        let error = tear_down(left, "quick", &recorder, &dir).unwrap_err();
        let failed = TeardownFailed {
            job: "quick".into(),
            host: Some("local".into()),
            source: error,
        };
        let text = crate::error::chain(&failed);
        assert!(
            text.contains("job `quick` was not torn down on host `local`"),
            "{text}"
        );
        assert!(text.contains("deleting the instance failed"), "{text}");
        assert!(text.contains("pikaci-x-quick\": device busy"), "{text}");
        let amended: JobRecord =
            serde_json::from_slice(&std::fs::read(dir.join("status.json")).unwrap()).unwrap();
        assert_eq!(amended.status, JobStatus::Passed);
        assert_eq!(amended.exit_code, Some(0));
        assert_eq!(amended.phases["run"], 5);
        assert!(amended.phases.contains_key("cleanup"), "{amended:?}");
        let seen = seen.0.lock().unwrap();
        assert!(
            matches!(&seen[..], [EventKind::JobPhase { phase, .. }] if phase == "cleanup"),
            "{seen:?}"
        );
    }

    /// Attempt 2's files join attempt 1's under `attempts/`, leaving the job's directory
    /// empty for the next; a directory where `attempts/` cannot be made is an error.
    #[test]
    fn an_attempts_files_move_aside_and_earlier_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path();
        std::fs::write(job.join("guest.log"), "first").unwrap();
        keep_attempt(job, 1).unwrap();
        std::fs::write(job.join("guest.log"), "second").unwrap();
        std::fs::create_dir(job.join("artifacts")).unwrap();
        keep_attempt(job, 2).unwrap();
        let read = |rel: &str| std::fs::read_to_string(job.join(rel)).unwrap();
        assert_eq!(read("attempts/1/guest.log"), "first");
        assert_eq!(read("attempts/2/guest.log"), "second");
        assert!(job.join("attempts/2/artifacts").is_dir());
        let left: Vec<_> = std::fs::read_dir(job)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["attempts"]);

        let blocked = tempfile::tempdir().unwrap();
        std::fs::write(blocked.path().join("attempts"), "not a directory").unwrap();
        assert!(keep_attempt(blocked.path(), 1).is_err());
    }
}
