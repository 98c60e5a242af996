//! Guest protocol v1: one JSON request in, one JSON result out.
//!
//! The same types serve the host backend (which writes a result of the same shape) and
//! `pikaci-guest` inside VMs, so a result reads the same whatever ran the job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// Unknown fields are ignored, so a newer host can add optional fields within v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub schema_version: u32,
    pub job_id: String,
    pub command: String,
    pub timeout_secs: u64,
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
        timeout_secs: u64,
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
                    "did not finish within its timeout of {timeout_secs}s; its process group was killed"
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
