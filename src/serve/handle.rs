//! One request → its answer. Only reads: records with `read_record`, files with
//! [`open_beneath`], the lock only asked about.

use std::path::PathBuf;
use std::time::SystemTime;

use super::model::{Unavailable, job_ended, load_run};
use super::pages;
use super::paths::{OpenError, open_beneath, query_param};
use super::reply::Reply;
use super::router::{JobRef, LogName, Route};
use super::{api, assets};
use crate::state::{StateDir, list_runs};

pub fn answer(state: &StateDir, route: Route, target: &str) -> Reply {
    match route {
        Route::Runs => runs(state, target),
        Route::Asset(name) => assets::asset(name),
        Route::Run(run) => match load_run(state, &run) {
            Ok(view) => Reply::html(200, pages::run_page(&view, SystemTime::now())),
            Err(e) => unavailable(&e),
        },
        Route::Job(job) => job_page(state, &job),
        Route::Log(job, log) => log_file(state, &job, log),
        Route::Artifact(job, path) => artifact(state, &job, &path),
        Route::ApiRuns => api::runs(state),
        Route::ApiRun(run) => api::run(state, &run),
        Route::ApiJob(job) => api::job(state, &job),
        // Answered by the caller, which hands the connection to `live::follow`.
        Route::Live(..) => not_found("This stream is answered elsewhere."),
        Route::NotFound => not_found("There is no such page."),
        Route::Refused(why) => Reply::html(
            400,
            pages::error_page("Bad request", &format!("Refused: {why}.")),
        ),
    }
}

fn runs(state: &StateDir, target: &str) -> Reply {
    let filter = query_param(target, "status").filter(|s| !s.is_empty());
    match list_runs(state) {
        Ok(runs) => Reply::html(200, pages::runs_page(&runs, filter.as_deref())),
        Err(source) => unavailable(&Unavailable::List {
            path: state.runs(),
            source,
        }),
    }
}

fn job_page(state: &StateDir, job: &JobRef) -> Reply {
    let view = match load_run(state, &job.run) {
        Ok(view) => view,
        Err(e) => return unavailable(&e),
    };
    let record = match view.job(&job.job) {
        Ok(record) => record,
        Err(e) => return unavailable(&e),
    };
    let page = pages::JobPage {
        run: &view.entry.id,
        name: &job.job,
        record,
        state_root: state.root(),
        rel_dir: job_rel_dir(&view.entry.id, &job.job),
        ended: job_ended(&view.dir, &job.job).is_some(),
    };
    Reply::html(200, pages::job_page(&page))
}

/// A job's directory relative to the state dir; `run` and `job` are valid ids.
pub fn job_rel_dir(run: &str, job: &str) -> PathBuf {
    ["runs", run, "jobs", job].iter().collect()
}

/// The run's id for `latest` (or the id itself), if the run exists and has that job.
pub fn known_job(state: &StateDir, job: &JobRef) -> Result<String, Reply> {
    let view = load_run(state, &job.run).map_err(|e| unavailable(&e))?;
    match view.job(&job.job) {
        Ok(_) | Err(Unavailable::Record(_)) => Ok(view.entry.id),
        Err(e) => Err(unavailable(&e)),
    }
}

fn log_file(state: &StateDir, job: &JobRef, log: LogName) -> Reply {
    let run = match known_job(state, job) {
        Ok(run) => run,
        Err(reply) => return reply,
    };
    let rel = job_rel_dir(&run, &job.job).join(log.file());
    match open_beneath(state.root(), &rel) {
        Ok(file) => Reply::file("text/plain; charset=utf-8", file),
        Err(e) => refused(&e),
    }
}

fn artifact(state: &StateDir, job: &JobRef, path: &[String]) -> Reply {
    let run = match known_job(state, job) {
        Ok(run) => run,
        Err(reply) => return reply,
    };
    let dir = state
        .root()
        .join(job_rel_dir(&run, &job.job))
        .join("artifacts");
    // Beneath the artifacts dir, not only the state dir: a job's own files may not
    // reach its records or another job's.
    let rel: PathBuf = path.iter().collect();
    match open_beneath(&dir, &rel) {
        Ok(file) => {
            let mut reply = Reply::file("application/octet-stream", file);
            reply.download = path.last().cloned();
            reply
        }
        Err(e) => refused(&e),
    }
}

fn refused(e: &OpenError) -> Reply {
    let status = match e {
        OpenError::Missing { .. } => 404,
        OpenError::Outside { .. } | OpenError::NotAFile { .. } => 403,
        OpenError::Io { .. } => 500,
    };
    Reply::html(
        status,
        pages::error_page("Not served", &crate::error::chain(e)),
    )
}

pub fn unavailable(e: &Unavailable) -> Reply {
    let (status, title) = match e {
        Unavailable::NoRun(_) | Unavailable::NoJob { .. } => (404, "Not found"),
        Unavailable::List { .. } | Unavailable::Record(_) => (500, "Unreadable record"),
    };
    Reply::html(status, pages::error_page(title, &crate::error::chain(e)))
}

fn not_found(detail: &str) -> Reply {
    Reply::html(404, pages::error_page("Not found", detail))
}
