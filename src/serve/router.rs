//! Request targets → what they ask for. Every run and job name must be a valid id, every
//! artifact path part a plain file name ([`super::paths::segments`]); anything else is
//! `NotFound` (or `Refused`, for a path that tries to leave).

use super::paths::{BadPath, segments};
use crate::ids::Id;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Runs,
    Asset(&'static str),
    Run(String),
    Job(JobRef),
    Log(JobRef, LogName),
    Live(JobRef, LogName),
    Artifact(JobRef, Vec<String>),
    ApiRuns,
    ApiRun(String),
    ApiJob(JobRef),
    NotFound,
    Refused(BadPath),
}

#[derive(Debug, PartialEq, Eq, Clone)]
pub struct JobRef {
    pub run: String,
    pub job: String,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum LogName {
    Guest,
    Host,
}

impl LogName {
    pub fn file(self) -> &'static str {
        match self {
            LogName::Guest => "guest.log",
            LogName::Host => "host.log",
        }
    }

    fn parse(name: &str) -> Option<LogName> {
        match name {
            "guest.log" => Some(LogName::Guest),
            "host.log" => Some(LogName::Host),
            _ => None,
        }
    }
}

pub const ASSETS: &[&str] = &["style.css", "live.js"];

pub fn route(target: &str) -> Route {
    let parts = match segments(target) {
        Ok(parts) => parts,
        Err(bad) => return Route::Refused(bad),
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let id = |name: &str| Id::new(name).is_ok();
    let job = |run: &str, job: &str| {
        (id(run) && id(job)).then(|| JobRef {
            run: run.into(),
            job: job.into(),
        })
    };
    let found = match parts.as_slice() {
        [] => Some(Route::Runs),
        ["assets", name] => ASSETS.iter().find(|a| *a == name).map(|a| Route::Asset(a)),
        ["runs", run] if id(run) => Some(Route::Run(run.to_string())),
        ["runs", run, "jobs", j] => job(run, j).map(Route::Job),
        ["runs", run, "jobs", j, log] => {
            job(run, j).and_then(|r| Some(Route::Log(r, LogName::parse(log)?)))
        }
        ["runs", run, "jobs", j, "live", log] => {
            job(run, j).and_then(|r| Some(Route::Live(r, LogName::parse(log)?)))
        }
        ["runs", run, "jobs", j, "artifacts", path @ ..] if !path.is_empty() => {
            job(run, j).map(|r| Route::Artifact(r, path.iter().map(|p| p.to_string()).collect()))
        }
        ["api", "runs"] => Some(Route::ApiRuns),
        ["api", "runs", run] if id(run) => Some(Route::ApiRun(run.to_string())),
        ["api", "runs", run, "jobs", j] => job(run, j).map(Route::ApiJob),
        _ => None,
    };
    found.unwrap_or(Route::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(run: &str, job: &str) -> JobRef {
        JobRef {
            run: run.into(),
            job: job.into(),
        }
    }

    #[test]
    fn targets_name_pages_files_and_api() {
        assert_eq!(route("/"), Route::Runs);
        assert_eq!(route("/?status=failed"), Route::Runs);
        assert_eq!(route("/assets/live.js"), Route::Asset("live.js"));
        assert_eq!(route("/runs/latest"), Route::Run("latest".into()));
        assert_eq!(route("/runs/r/jobs/j"), Route::Job(job("r", "j")));
        assert_eq!(
            route("/runs/r/jobs/j/host.log"),
            Route::Log(job("r", "j"), LogName::Host)
        );
        assert_eq!(
            route("/runs/r/jobs/j/live/guest.log?offset=3"),
            Route::Live(job("r", "j"), LogName::Guest)
        );
        assert_eq!(
            route("/runs/r/jobs/j/artifacts/a/b%20c"),
            Route::Artifact(job("r", "j"), vec!["a".into(), "b c".into()])
        );
        assert_eq!(route("/api/runs"), Route::ApiRuns);
        assert_eq!(route("/api/runs/r/jobs/j"), Route::ApiJob(job("r", "j")));
    }

    #[test]
    fn names_that_are_not_ids_or_files_are_not_found_or_refused() {
        for missing in [
            "/assets/other.css",
            "/runs/.hidden",
            "/runs/r/jobs/j/status.json",
            "/runs/r/jobs/j/artifacts",
            "/runs/r/jobs/-j",
            "/etc/passwd",
        ] {
            assert_eq!(route(missing), Route::NotFound, "{missing}");
        }
        for refused in [
            "/runs/../x",
            "/runs/r/jobs/j/artifacts/%2e%2e/%2e%2e/run.json",
            "/runs/a%2Fb",
        ] {
            assert!(matches!(route(refused), Route::Refused(_)), "{refused}");
        }
    }
}
