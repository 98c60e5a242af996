//! Where each job ran, in the words every report shares: ` on HOST` after the backend,
//! and one line per earlier attempt (`attempt 1 on a: error (its connection dropped)`).

use crate::state::{Attempt, HostRecord, JobRecord};

/// ` on HOST` for a job placed on a pool host; nothing for `host` jobs and for the one
/// implicit host of a config without `[hosts]`, where it would say nothing new.
pub fn on_host(host: Option<&str>) -> String {
    match named_host(host) {
        Some(host) => format!(" on {host}"),
        None => String::new(),
    }
}

/// The host worth naming: a pool host other than the implicit `default`.
pub fn named_host(host: Option<&str>) -> Option<&str> {
    host.filter(|h| *h != crate::config::DEFAULT_HOST)
}

/// Whether any job (or any of its earlier attempts) ran on a named pool host: the reports
/// with columns give the host one only then.
pub fn any_named_host(jobs: &[JobRecord]) -> bool {
    jobs.iter().any(|job| {
        named_host(job.host.as_deref()).is_some()
            || job
                .attempts
                .iter()
                .any(|a| named_host(a.host.as_deref()).is_some())
    })
}

/// `attempt 1 on a: error (its connection dropped)`: the message on one line.
pub fn attempt_line(attempt: &Attempt) -> String {
    let mut text = format!(
        "attempt {}{}: {}",
        attempt.attempt,
        on_host(attempt.host.as_deref()),
        attempt.status
    );
    let message = one_line(attempt.message.as_deref().unwrap_or(""));
    if !message.is_empty() {
        text.push_str(&format!(" ({message})"));
    }
    text
}

/// `[microvm on builder-a]`: the backend and, when worth naming, the host.
pub fn backend_and_host(job: &JobRecord) -> String {
    format!("[{}{}]", job.backend, on_host(job.host.as_deref()))
}

/// `dead (ssh://ci@dead): cannot connect …`: each host the run found down at its start
/// (`hosts.json`), where no job went.
pub fn down_hosts(hosts: &[HostRecord]) -> Vec<String> {
    hosts
        .iter()
        .filter_map(|h| {
            let why = h.down.as_deref()?;
            Some(format!("{} ({}): {}", h.name, h.url, one_line(why)))
        })
        .collect()
}

/// A message of several lines (an error and the tool's stderr tail) on one: lines
/// joined with `; `, or a space after a line that ends in `:`.
pub fn one_line(text: &str) -> String {
    let mut joined = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !joined.is_empty() {
            joined.push_str(if joined.ends_with(':') { " " } else { "; " });
        }
        joined.push_str(line);
    }
    joined
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::BackendKind;
    use crate::state::{JobStatus, RunRecord, RunStatus};

    /// A finished job record, for the reports' snapshots.
    pub fn job(
        name: &str,
        backend: BackendKind,
        status: JobStatus,
        host: Option<&str>,
    ) -> JobRecord {
        JobRecord {
            schema_version: 1,
            job: name.into(),
            targets: vec!["ci".into()],
            backend,
            status,
            exit_code: (status == JobStatus::Passed).then_some(0),
            signal: None,
            started_at: Some("2026-12-01T00:00:00Z".into()),
            finished_at: Some("2026-12-01T00:00:02Z".into()),
            duration_ms: Some(2100),
            message: None,
            phases: Default::default(),
            failed_in: None,
            host: host.map(str::to_string),
            attempts: Vec::new(),
        }
    }

    /// A finished run's record, for the reports' snapshots.
    pub fn run(status: RunStatus) -> RunRecord {
        RunRecord {
            schema_version: 1,
            run_id: "R1".into(),
            status,
            started_at: "2026-12-01T00:00:00Z".into(),
            finished_at: None,
            duration_ms: Some(4200),
            pid: 1,
            workspace: "/repo".into(),
            config: "/repo/pikaci.toml".into(),
            selection: Vec::new(),
            snapshot: None,
            base: None,
            rerun_of: None,
            push: None,
            jobs: Default::default(),
            message: None,
        }
    }

    /// A microVM job that passed on `builder-b` after its first attempt's host,
    /// `builder-a`, went down.
    pub fn moved() -> JobRecord {
        let mut moved = job(
            "vm",
            BackendKind::Microvm,
            JobStatus::Passed,
            Some("builder-b"),
        );
        moved.attempts = vec![attempt(
            1,
            Some("builder-a"),
            Some("host builder-a is down"),
        )];
        moved
    }

    pub fn attempt(n: u32, host: Option<&str>, message: Option<&str>) -> Attempt {
        Attempt {
            attempt: n,
            host: host.map(str::to_string),
            status: JobStatus::Error,
            message: message.map(str::to_string),
            exit_code: None,
            duration_ms: None,
            failed_in: None,
            retried: Some(crate::state::Retried::HostLost),
        }
    }

    /// Why an attempt that ended with `status` was retried, as the scheduler says.
    pub fn retried(status: JobStatus) -> Option<crate::state::Retried> {
        use crate::state::Retried;
        match status {
            JobStatus::Failed => Some(Retried::Failed),
            JobStatus::TimedOut => Some(Retried::TimedOut),
            _ => Some(Retried::Error),
        }
    }

    #[test]
    fn the_host_is_named_unless_it_is_the_implicit_one() {
        let lines = [
            backend_and_host(&job(
                "a",
                BackendKind::Microvm,
                JobStatus::Passed,
                Some("builder-a"),
            )),
            backend_and_host(&job(
                "b",
                BackendKind::Incus,
                JobStatus::Passed,
                Some("default"),
            )),
            backend_and_host(&job("c", BackendKind::Host, JobStatus::Passed, None)),
            attempt_line(&attempt(
                1,
                Some("a"),
                Some("host a is down:\n  ssh: connection refused"),
            )),
            attempt_line(&attempt(2, None, None)),
        ];
        insta::assert_snapshot!(lines.join("\n"), @"
        [microvm on builder-a]
        [incus]
        [host]
        attempt 1 on a: error (host a is down: ssh: connection refused)
        attempt 2: error
        ");
    }

    #[test]
    fn hosts_down_at_the_start_are_named_with_why() {
        let host = |name: &str, down: Option<&str>| HostRecord {
            name: name.into(),
            url: format!("ssh://ci@{name}"),
            down: down.map(str::to_string),
            labels: vec!["x86_64-linux".into()],
            slots: down.is_none().then_some(2),
        };
        let hosts = [
            host("a", None),
            host(
                "dead",
                Some("cannot connect to ssh://ci@dead (exit status: 255):\nConnection refused"),
            ),
        ];
        insta::assert_snapshot!(down_hosts(&hosts).join("\n"), @"dead (ssh://ci@dead): cannot connect to ssh://ci@dead (exit status: 255): Connection refused");
    }

    #[test]
    fn only_a_named_host_asks_for_a_column() {
        let plain = [
            job(
                "a",
                BackendKind::Microvm,
                JobStatus::Passed,
                Some("default"),
            ),
            job("b", BackendKind::Host, JobStatus::Passed, None),
        ];
        assert!(!any_named_host(&plain));
        let mut moved = plain.clone();
        moved[0].attempts.push(attempt(1, Some("x"), None));
        assert!(any_named_host(&moved));
    }
}
