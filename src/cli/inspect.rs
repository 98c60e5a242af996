//! Read-only commands: targets, runs, status, logs.

use super::args::{Global, LogsArgs, RunsArgs, StatusArgs};
use super::context::{load_config, state_only};
use crate::error::Error;
use crate::ids::Id;
use crate::report::{ran_on, read_run_hosts, run_entry_json, short_duration, status_json};
use crate::state::{
    JobRecord, JobStatus, RunEntry, RunLock, RunRecord, job_records, list_runs, read_record,
    resolve_run,
};

pub fn targets(global: &Global) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = super::context::state_dir(global, &config);
    let evaluations =
        crate::run::evaluate_flake_targets(&config, &state, &crate::cancel::Cancel::new())?;
    let mut out = String::new();
    for target in config.targets.values() {
        let jobs: Vec<&str> = target.jobs.iter().map(Id::as_str).collect();
        out.push_str(&format!("{}\t{}", target.id, jobs.join(", ")));
        if let Some(flake) = &target.flake {
            let sep = if jobs.is_empty() { "" } else { ", " };
            out.push_str(&format!("{sep}flake {flake}"));
        }
        if let Some(description) = &target.description {
            out.push_str(&format!("\t{description}"));
        }
        if !target.paths.is_empty() {
            out.push_str(&format!("\t(when {} change)", target.paths.join(", ")));
        }
        out.push('\n');
    }
    for eval in &evaluations {
        out.push_str(&format!(
            "\nflake target {} ({}#{} for {}, evaluated in {}):\n",
            eval.target,
            eval.flake.split_once('#').map_or(".", |(r, _)| r),
            eval.attr_path,
            eval.system,
            short_duration(eval.duration_ms)
        ));
        for (name, id) in &eval.jobs {
            out.push_str(&format!("{name} → {id}\n"));
        }
    }
    out.push_str("\njobs:\n");
    for job in config.jobs.values() {
        out.push_str(&format!(
            "{}\t[{}]\t{}\n",
            job.id,
            job.backend,
            job.command.lines().next().unwrap_or("")
        ));
    }
    crate::console::out(out.as_bytes());
    Ok(0)
}

pub fn runs(global: &Global, args: RunsArgs) -> Result<u8, Error> {
    let state = state_only(global)?;
    let runs = list_runs(&state).map_err(|e| Error::infra("listing runs", e))?;
    if args.json {
        let items: Vec<serde_json::Value> = runs.iter().map(run_entry_json).collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        );
        return Ok(0);
    }
    for run in &runs {
        crate::outln!("{}", entry_line(run));
    }
    Ok(0)
}

fn entry_line(run: &RunEntry) -> String {
    let record = match &run.record {
        Ok(record) => record,
        Err(e) => {
            return format!(
                "{}  {:<10} {}",
                run.id,
                "unreadable",
                crate::error::chain(e)
            );
        }
    };
    let status = run
        .status()
        .map_or("unknown".to_string(), |s| s.to_string());
    let took = record.duration_ms.map_or("-".into(), short_duration);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for job_status in record.jobs.values() {
        *counts.entry(job_status.to_string()).or_default() += 1;
    }
    let jobs: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(
        "{}  {status:<10} {}  {took:>7}  {}",
        run.id,
        record.started_at,
        jobs.join(", ")
    )
}

pub fn status(global: &Global, args: StatusArgs) -> Result<u8, Error> {
    let state = state_only(global)?;
    let id = resolve_run(&state, &args.run).map_err(Error::Usage)?;
    let entry = list_runs(&state)
        .map_err(|e| Error::infra("listing runs", e))?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| Error::Usage(format!("run {id} disappeared")))?;
    let record = entry
        .record
        .as_ref()
        .map_err(|e| Error::Usage(crate::error::chain(e)))?;
    let status = entry.status();
    let run_dir = state.run(&id);
    let hosts = read_run_hosts(&run_dir);
    let jobs: Vec<(String, Result<JobRecord, String>)> = job_records(&run_dir, record)
        .into_iter()
        .map(|(job, r)| (job, r.map_err(|e| crate::error::chain(&e))))
        .collect();
    if args.json {
        let doc = status_json(record, status, &jobs, &hosts);
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(0);
    }
    let status = status.map_or("unknown".to_string(), |s| s.to_string());
    crate::outln!(
        "run      {id}\nstatus   {status}\nstarted  {}",
        record.started_at
    );
    if let Some(ms) = record.duration_ms {
        crate::outln!("took     {}", short_duration(ms));
    }
    if let Some(snapshot) = &record.snapshot {
        crate::outln!("snapshot {} ({} files)", snapshot.id, snapshot.files);
    }
    if let Some(base) = &record.base {
        crate::outln!("base     {base}");
    }
    if let Some(message) = &record.message {
        crate::outln!("message  {message}");
    }
    for down in ran_on::down_hosts(&hosts) {
        crate::outln!("down     {down}");
    }
    for (name, job) in &jobs {
        match job {
            Ok(job) => crate::outln!("{}", job_lines(name, job)),
            Err(e) => crate::outln!("  {name:<20} unreadable  {e}"),
        }
    }
    Ok(0)
}

/// A job's line in `status`: status, duration, `[backend on host]`, its message; then one
/// indented line per earlier attempt.
fn job_lines(name: &str, job: &JobRecord) -> String {
    let took = job.duration_ms.map_or("-".into(), short_duration);
    let mut text = format!(
        "  {name:<20} {:<10} {took:>7}  {}",
        job.status.to_string(),
        ran_on::backend_and_host(job)
    );
    let message = job.one_line();
    if !message.is_empty() {
        text.push_str(&format!("  {message}"));
    }
    for attempt in &job.attempts {
        text.push_str(&format!("\n    {}", ran_on::attempt_line(attempt)));
    }
    text
}

pub fn logs(global: &Global, args: LogsArgs) -> Result<u8, Error> {
    let state = state_only(global)?;
    let id = resolve_run(&state, &args.run).map_err(Error::Usage)?;
    let run = state.run(&id);
    let known = run_jobs(&run);
    // run.json lists every job of the plan from the start; until it is written (a run
    // that is just starting) a job cannot be told unknown.
    let listed = read_record::<RunRecord>(&run.run_json()).is_ok();
    let log_name = if args.host_log {
        "host.log"
    } else {
        "guest.log"
    };
    let jobs: Vec<String> = match &args.job {
        Some(job) if known.contains(job) || !listed => vec![job.clone()],
        Some(job) => return Err(Error::Usage(unknown_job(&run, job, &known))),
        None => known,
    };
    if let (true, Some(job)) = (args.follow, jobs.first()) {
        let id = Id::new(job.clone()).map_err(|e| Error::Usage(e.to_string()))?;
        return follow(&run, &id, log_name);
    }
    for job in &jobs {
        if crate::console::stdout_gone() {
            break;
        }
        let id = Id::new(job.clone()).map_err(|e| Error::Usage(e.to_string()))?;
        let path = run.job(&id).join(log_name);
        let opened = std::fs::File::open(&path);
        let empty = opened
            .as_ref()
            .map_or(true, |f| f.metadata().is_ok_and(|m| m.len() == 0));
        if let (true, Some(never)) = (args.job.is_some() && empty, never_started(&run, &id)) {
            // Not a mistake of the caller's: the answer to "what did it print" is why
            // it printed nothing.
            crate::outln!(
                "job `{job}` never started ({}): {}",
                never.status,
                never.one_line()
            );
            return Ok(0);
        }
        let mut file = match opened {
            Ok(file) => file,
            Err(_) if args.job.is_some() => {
                return Err(Error::Usage(missing_log(&run, job, args.host_log)));
            }
            Err(_) => continue,
        };
        if args.job.is_none() {
            crate::outln!("==> {job} <==");
        }
        copy_log(&mut file, &path)?;
    }
    Ok(0)
}

/// Copies the rest of `log` to stdout in bounded pieces, as raw bytes (a job's output need
/// be neither UTF-8 nor small); how many bytes were read. Write errors are not this
/// command's failure (a closed pipe, as with `| head`: copying stops), read errors are.
fn copy_log(log: &mut std::fs::File, path: &std::path::Path) -> Result<u64, Error> {
    use std::io::Read;
    let mut piece = vec![0u8; 64 << 10];
    let mut copied = 0u64;
    loop {
        let n = match log.read(&mut piece) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::infra(&format!("reading {}", path.display()), e)),
        };
        copied += n as u64;
        if !crate::console::out(&piece[..n]) {
            return Ok(copied);
        }
    }
}

/// The run's jobs: those its record lists, and any job directory besides (a record
/// written by an older pikaci, or one cut short).
fn run_jobs(run: &crate::state::RunDir) -> Vec<String> {
    let mut names: std::collections::BTreeSet<String> = read_record::<RunRecord>(&run.run_json())
        .map(|r| r.jobs.into_keys().collect())
        .unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir(run.jobs()) {
        names.extend(dir.filter_map(|e| e.ok()?.file_name().into_string().ok()));
    }
    names.into_iter().collect()
}

fn unknown_job(run: &crate::state::RunDir, job: &str, known: &[String]) -> String {
    if known.is_empty() {
        return format!("run {} has no jobs, so no job `{job}`", run.id);
    }
    format!(
        "run {} has no job `{job}`; its jobs: {}",
        run.id,
        known.join(", ")
    )
}

/// The job's record, if it says the job ended without its command ever running.
fn never_started(run: &crate::state::RunDir, job: &Id) -> Option<JobRecord> {
    read_record::<JobRecord>(&run.job(job).join("status.json"))
        .ok()
        .filter(JobRecord::never_started)
}

/// Why a job of the run has no such log, and where to look instead.
fn missing_log(run: &crate::state::RunDir, job: &str, host_log: bool) -> String {
    let status = Id::new(job.to_string())
        .ok()
        .and_then(|id| read_record::<JobRecord>(&run.job(&id).join("status.json")).ok());
    let why = match &status {
        Some(record) => match &record.message {
            Some(message) => format!(" (it {}: {message})", record.status),
            None => format!(" (it {})", record.status),
        },
        None => String::new(),
    };
    if host_log {
        format!("job `{job}` of run {} has no host.log{why}", run.id)
    } else {
        format!(
            "job `{job}` of run {} wrote no output{why}; what its backend printed: \
             `pikaci logs {} --job {job} --host-log`",
            run.id, run.id
        )
    }
}

/// Streams a job's `guest.log` until the job has a final status (or its run's process is
/// gone), then prints what is left and returns.
fn follow(run: &crate::state::RunDir, job: &Id, log_name: &str) -> Result<u8, Error> {
    use std::io::{Seek, SeekFrom};
    const POLL: std::time::Duration = std::time::Duration::from_millis(100);
    let log_path = run.job(job).join(log_name);
    let status_path = run.job(job).join("status.json");
    let mut offset = 0u64;
    loop {
        // Read the status before the log, so output written just before the job ended is
        // still printed in this round.
        let ended = match read_record::<JobRecord>(&status_path) {
            Ok(record) => !matches!(record.status, JobStatus::Pending | JobStatus::Running),
            Err(_) => false,
        } || (run.lock_file().exists() && !RunLock::is_held(&run.lock_file()));
        if let Ok(mut file) = std::fs::File::open(&log_path) {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::infra(&format!("reading {}", log_path.display()), e))?;
            offset += copy_log(&mut file, &log_path)?;
            if crate::console::stdout_gone() {
                // Nobody reads any more: following on would only wait.
                return Ok(0);
            }
        }
        if ended {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::job_lines;
    use crate::config::BackendKind;
    use crate::report::ran_on::tests::{attempt, job, moved};
    use crate::state::JobStatus;

    #[test]
    fn status_names_each_jobs_host_and_its_earlier_attempts() {
        let mut moved = job(
            "vm",
            BackendKind::Microvm,
            JobStatus::Passed,
            Some("builder-b"),
        );
        moved.attempts = vec![attempt(
            1,
            Some("builder-a"),
            Some("host builder-a is down: ssh: connection refused"),
        )];
        let mut failed = job(
            "ct",
            BackendKind::Incus,
            JobStatus::Error,
            Some("builder-a"),
        );
        failed.message = Some("its host's connection dropped".into());
        failed.failed_in = Some("run".into());
        let lines = [
            job_lines("vm", &moved),
            job_lines("ct", &failed),
            job_lines(
                "one",
                &job(
                    "one",
                    BackendKind::Microvm,
                    JobStatus::Passed,
                    Some("default"),
                ),
            ),
            job_lines(
                "lint",
                &job("lint", BackendKind::Host, JobStatus::Passed, None),
            ),
        ];
        insta::assert_snapshot!(lines.join("\n"), @"
        vm                   passed        2.1s  [microvm on builder-b]
          attempt 1 on builder-a: error (host builder-a is down: ssh: connection refused)
        ct                   error         2.1s  [incus on builder-a]  in run: its host's connection dropped
        one                  passed        2.1s  [microvm]
        lint                 passed        2.1s  [host]
        ");
    }

    #[test]
    fn status_json_carries_the_host_and_the_earlier_attempts() {
        let moved = moved();
        let lint = job("lint", BackendKind::Host, JobStatus::Passed, None);
        // As `status --json` writes each record: `host` only when placed on a host.
        let json: Vec<serde_json::Value> = [moved, lint]
            .iter()
            .map(|j| serde_json::to_value(j).unwrap())
            .collect();
        insta::assert_json_snapshot!(json, @r#"
        [
          {
            "attempts": [
              {
                "attempt": 1,
                "host": "builder-a",
                "message": "host builder-a is down",
                "retried": "host_lost",
                "status": "error"
              }
            ],
            "backend": "microvm",
            "duration_ms": 2100,
            "exit_code": 0,
            "finished_at": "2026-12-01T00:00:02Z",
            "host": "builder-b",
            "job": "vm",
            "message": null,
            "phases": {},
            "schema_version": 1,
            "signal": null,
            "started_at": "2026-12-01T00:00:00Z",
            "status": "passed",
            "targets": [
              "ci"
            ]
          },
          {
            "backend": "host",
            "duration_ms": 2100,
            "exit_code": 0,
            "finished_at": "2026-12-01T00:00:02Z",
            "job": "lint",
            "message": null,
            "phases": {},
            "schema_version": 1,
            "signal": null,
            "started_at": "2026-12-01T00:00:00Z",
            "status": "passed",
            "targets": [
              "ci"
            ]
          }
        ]
        "#);
    }
}
