//! `/api/…`: the same documents as `pikaci runs --json` and `pikaci status --json`.

use super::model::{Unavailable, load_run};
use super::reply::Reply;
use super::router::JobRef;
use crate::state::{StateDir, list_runs};

/// `GET /api/runs`: every run, oldest first, as `pikaci runs --json` lists them.
pub fn runs(state: &StateDir) -> Reply {
    match list_runs(state) {
        Ok(runs) => {
            let items: Vec<serde_json::Value> =
                runs.iter().map(crate::report::run_entry_json).collect();
            Reply::json(200, &serde_json::Value::Array(items))
        }
        Err(source) => failed(&Unavailable::List {
            path: state.runs(),
            source,
        }),
    }
}

/// `GET /api/runs/RUN`: as `pikaci status RUN --json`.
pub fn run(state: &StateDir, name: &str) -> Reply {
    match load_run(state, name) {
        Ok(view) => Reply::json(
            200,
            &crate::report::status_json(&view.record, view.entry.status(), &view.jobs, &view.hosts),
        ),
        Err(e) => failed(&e),
    }
}

/// `GET /api/runs/RUN/jobs/JOB`: the job's `status.json` record.
pub fn job(state: &StateDir, job: &JobRef) -> Reply {
    let view = match load_run(state, &job.run) {
        Ok(view) => view,
        Err(e) => return failed(&e),
    };
    match view.job(&job.job) {
        Ok(record) => Reply::json(200, &serde_json::to_value(record).unwrap_or_default()),
        Err(e) => failed(&e),
    }
}

fn failed(e: &Unavailable) -> Reply {
    let status = match e {
        Unavailable::NoRun(_) | Unavailable::NoJob { .. } => 404,
        Unavailable::List { .. } | Unavailable::Record(_) => 500,
    };
    Reply::json(
        status,
        &serde_json::json!({ "error": crate::error::chain(e) }),
    )
}
