//! Guest protocol v1: one JSON request in, one JSON result out.
//!
//! The same types serve the host backend (which writes a result of the same shape) and
//! `pikaci-guest` inside VMs, so a result reads the same whatever ran the job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// Unknown fields are ignored, so a newer host can add optional fields within v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub schema_version: u32,
    pub job_id: String,
    pub command: String,
    /// The timeout in whole seconds, rounded up, for agents older than `timeout_ms`.
    pub timeout_secs: u64,
    /// The timeout as configured, in milliseconds; when absent (an older host),
    /// `timeout_secs` is the timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    pub run_as_root: bool,
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Store paths whose `bin/` go on PATH, in order.
    pub path: Vec<PathBuf>,
    pub writable_workspace: bool,
    /// Names in `env` whose values are secrets: the agent writes `***` for them in every
    /// output it copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The program and arguments the command is appended to (`bash --noprofile --norc
    /// -eo pipefail -c` unless the job says otherwise). Optional within v1: a request
    /// without it gets [`LEGACY_SHELL`], what every agent ran before the field existed.
    #[serde(default = "legacy_shell")]
    pub shell: Vec<String>,
}

/// The shell of a request that names none (older hosts): plain `bash -c`, no `-e`.
pub const LEGACY_SHELL: &[&str] = &["bash", "--noprofile", "--norc", "-c"];

/// The default shell of a job: like CI services, a failing command or pipeline stage
/// fails the job.
pub const DEFAULT_SHELL: &[&str] = &["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];

fn legacy_shell() -> Vec<String> {
    LEGACY_SHELL.iter().map(|s| s.to_string()).collect()
}

impl Request {
    /// The job's command line: the shell, then the command as its last argument.
    pub fn shell_argv(&self) -> Vec<&str> {
        let mut argv: Vec<&str> = self.shell.iter().map(String::as_str).collect();
        if argv.is_empty() {
            argv.extend(LEGACY_SHELL);
        }
        argv.push(&self.command);
        argv
    }

    /// The two timeout fields for `timeout` (see them).
    pub fn timeout_fields(timeout: Duration) -> (u64, Option<u64>) {
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        (millis.div_ceil(1000), Some(millis))
    }

    /// How long the job may run.
    pub fn timeout(&self) -> Duration {
        match self.timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => Duration::from_secs(self.timeout_secs),
        }
    }

    /// The values to redact from the job's output.
    pub fn secret_values(&self) -> Vec<&str> {
        self.secrets
            .iter()
            .filter_map(|name| self.env.get(name).map(String::as_str))
            .collect()
    }

    /// This request as kept in records: secret values replaced by `***`.
    pub fn redacted(&self) -> Request {
        let mut request = self.clone();
        for name in &self.secrets {
            if let Some(value) = request.env.get_mut(name) {
                *value = crate::output::MASK.into();
            }
        }
        request
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestStatus {
    Passed,
    Failed,
    TimedOut,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestResult {
    pub schema_version: u32,
    pub status: GuestStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub message: Option<String>,
}

impl GuestResult {
    /// The result of a job that ran, from how it ended.
    pub fn from_ended(
        ended: crate::exec::Ended,
        timeout: Duration,
        started: SystemTime,
    ) -> GuestResult {
        use crate::exec::Ended;
        use std::os::unix::process::ExitStatusExt;
        let (status, exit_code, signal, message) = match ended {
            Ended::Exited(s) if s.success() => (GuestStatus::Passed, Some(0), None, None),
            Ended::Exited(s) => match (s.code(), s.signal()) {
                (Some(code), _) => (
                    GuestStatus::Failed,
                    Some(code),
                    None,
                    Some(format!("exited with code {code}")),
                ),
                (None, signal) => (
                    GuestStatus::Failed,
                    None,
                    signal,
                    Some(format!("killed by signal {}", signal.unwrap_or(0))),
                ),
            },
            Ended::TimedOut => (
                GuestStatus::TimedOut,
                None,
                None,
                Some(format!(
                    "did not finish within its timeout of {}; its process group was killed",
                    humantime::format_duration(timeout)
                )),
            ),
            Ended::Cancelled => (GuestStatus::Error, None, None, Some("cancelled".into())),
        };
        GuestResult::finished(status, exit_code, signal, started, message)
    }

    /// An `error` result: the job could not run as asked.
    pub fn error(started: SystemTime, message: String) -> GuestResult {
        GuestResult::finished(GuestStatus::Error, None, None, started, Some(message))
    }

    fn finished(
        status: GuestStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
        started: SystemTime,
        message: Option<String>,
    ) -> GuestResult {
        let finished = SystemTime::now();
        GuestResult {
            schema_version: SCHEMA_VERSION,
            status,
            exit_code,
            signal,
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            finished_at: humantime::format_rfc3339_millis(finished).to_string(),
            duration_ms: finished
                .duration_since(started)
                .unwrap_or_default()
                .as_millis() as u64,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &str) -> Request {
        serde_json::from_str(&format!(
            r#"{{"schema_version":1,"job_id":"j","command":"true",{fields},
               "run_as_root":false,"workdir":"/w","env":{{}},"path":[],
               "writable_workspace":false}}"#
        ))
        .unwrap()
    }

    #[test]
    fn sub_second_timeouts_travel_exactly_and_older_agents_round_up() {
        assert_eq!(
            Request::timeout_fields(Duration::from_millis(1500)),
            (2, Some(1500))
        );
        assert_eq!(
            Request::timeout_fields(Duration::from_millis(1)),
            (1, Some(1))
        );
        assert_eq!(
            Request::timeout_fields(Duration::from_secs(90)),
            (90, Some(90_000))
        );
        let new = request(r#""timeout_secs":2,"timeout_ms":1500"#);
        assert_eq!(new.timeout(), Duration::from_millis(1500));
    }

    #[test]
    fn a_request_without_timeout_ms_still_reads() {
        let old = request(r#""timeout_secs":5"#);
        assert_eq!(old.timeout_ms, None);
        assert_eq!(old.timeout(), Duration::from_secs(5));
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("timeout_ms"), "{json}");
    }

    #[test]
    fn a_timed_out_result_shows_the_timeout_as_configured() {
        let result = GuestResult::from_ended(
            crate::exec::Ended::TimedOut,
            Duration::from_millis(1500),
            SystemTime::now(),
        );
        let message = result.message.unwrap();
        assert!(message.contains("timeout of 1s 500ms;"), "{message}");
    }
}
