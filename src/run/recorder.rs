//! Writes a run's records and forwards its events to the reporter.

use std::io;
use std::path::Path;
use std::sync::Mutex;

use crate::fsutil::{Durability, sync_paths, write_json_with};
use crate::report::Reporter;
use crate::state::{
    Event, EventKind, EventLog, JobRecord, JobStatus, RunDir, RunRecord, RunStatus,
};

pub struct Recorder<'a> {
    pub run: RunDir,
    events: EventLog,
    reporter: &'a dyn Reporter,
    record: Mutex<RunRecord>,
    /// The sync of the run's first records, made while the run goes on and awaited
    /// before anything final is written.
    first_sync: Mutex<Option<std::thread::JoinHandle<io::Result<()>>>>,
}

impl<'a> Recorder<'a> {
    /// Writes the first `run.json` and syncs it together with `plan.json`, which is
    /// written before it and final from the start, on a thread: nothing waits for that
    /// until the first final record.
    pub fn create(
        run: RunDir,
        record: RunRecord,
        reporter: &'a dyn Reporter,
    ) -> io::Result<Recorder<'a>> {
        write_json_with(&run.run_json(), &record, Durability::Atomic)?;
        let paths = [run.run_json(), run.plan_json(), run.path.clone()];
        let first_sync =
            std::thread::spawn(move || sync_paths(&paths.each_ref().map(|p| p.as_path())));
        let events = EventLog::create(&run.events())?;
        Ok(Recorder {
            run,
            events,
            reporter,
            record: Mutex::new(record),
            first_sync: Mutex::new(Some(first_sync)),
        })
    }

    /// Waits for the sync of the first records (once; later calls return at once).
    fn first_records_synced(&self) -> io::Result<()> {
        let pending = self
            .first_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match pending.map(std::thread::JoinHandle::join) {
            Some(Ok(synced)) => synced,
            Some(Err(_)) => Err(io::Error::other("the thread syncing plan.json panicked")),
            None => Ok(()),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    /// Appends to `events.jsonl` and tells the reporter. A failed append is reported by
    /// the next record write, which fails the same way.
    pub fn emit(&self, kind: EventKind) {
        let event = Event::new(&self.run.id, kind);
        let _ = self.events.append(&event);
        self.reporter.event(&event);
    }

    /// The run record as last written (or about to be).
    pub fn record(&self) -> RunRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the run record and writes `run.json` atomically; synced to disk once the
    /// run's status is final.
    pub fn update(&self, change: impl FnOnce(&mut RunRecord)) -> io::Result<RunRecord> {
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut record);
        write_json_with(&self.run.run_json(), &*record, Durability::Atomic)?;
        if record.status != RunStatus::Running {
            self.first_records_synced()?;
            sync_paths(&[&self.run.run_json(), &self.run.path])?;
        }
        Ok(record.clone())
    }

    /// Writes `jobs/<job>/status.json`; a final status is mirrored into `run.json` too
    /// (`running` is not: it is in status.json) and synced to disk with it and the job's
    /// logs, in one go, before the job is reported. A running job's phases are
    /// rewritten without waiting for the disk.
    pub fn write_job(&self, dir: &Path, job: &JobRecord) -> io::Result<()> {
        crate::fsutil::create_dir_all(dir)?;
        let status = dir.join("status.json");
        write_json_with(&status, job, Durability::Atomic)?;
        if job.status == JobStatus::Running {
            return Ok(());
        }
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        record.jobs.insert(job.job.clone(), job.status);
        write_json_with(&self.run.run_json(), &*record, Durability::Atomic)?;
        let (guest_log, host_log) = (dir.join("guest.log"), dir.join("host.log"));
        self.first_records_synced()?;
        sync_paths(&[
            &status,
            dir,
            &guest_log,
            &host_log,
            &self.run.run_json(),
            &self.run.path,
        ])
    }

    /// Rewrites the final `status.json` of a job with what was learnt after its end
    /// (its teardown's time); `run.json` already mirrors its unchanged status. Not
    /// synced: after a crash the record may lack that time, never its result.
    pub fn amend_job(&self, dir: &Path, job: &JobRecord) -> io::Result<()> {
        write_json_with(&dir.join("status.json"), job, Durability::Atomic)
    }

    pub fn reporter(&self) -> &dyn Reporter {
        self.reporter
    }
}
