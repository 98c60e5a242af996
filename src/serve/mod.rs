//! `pikaci serve`: the state dir's runs, jobs, timelines and logs in a browser, read-only.
//!
//! axum on a small tokio runtime: pages are rendered on the blocking pool (they only read
//! files), and a live log follower is a stream that wakes a few times a second, so fifty
//! of them are fifty timers, not fifty threads. Nothing here writes to the state dir;
//! every file is opened beneath it ([`paths::open_beneath`]).

mod api;
mod assets;
mod handle;
mod live;
mod model;
mod pages;
mod paths;
mod reply;
mod router;
mod timeline;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::state::StateDir;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Worker threads: the work is reading small files, and the machine runs CI jobs.
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("serving on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves `state` on `listen` until the process is stopped; `ready` is told the address
/// bound (the port, when `listen` asks for port 0).
pub fn serve(
    state: StateDir,
    listen: &str,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let bind = |source| ServeError::Bind {
        addr: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(Arc::new(state));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind)?;
        ready(addr);
        axum::serve(listener, app)
            .await
            .map_err(|source| ServeError::Serve { addr, source })
    })
}

/// Every request: routed by [`router::route`] on the raw target, never by a framework
/// that might decode it first.
async fn answer(
    State(state): State<Arc<StateDir>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let refused = (StatusCode::METHOD_NOT_ALLOWED, "read-only\n").into_response();
        return reply::with_security_headers(refused);
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let route = router::route(&target);
    let rendered = tokio::task::spawn_blocking(move || match route {
        router::Route::Live(job, log) => follow(state, &job, log, &target, &headers),
        route => Err(handle::answer(&state, route, &target)),
    })
    .await;
    match rendered {
        Ok(Ok(follower)) => reply::with_security_headers(live::stream(follower).into_response()),
        Ok(Err(reply)) => reply.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A follower of the job's log from the offset the page was rendered at (or the last one
/// the browser saw, when it reconnects); a page instead when there is no such job.
fn follow(
    state: Arc<StateDir>,
    job: &router::JobRef,
    log: router::LogName,
    target: &str,
    headers: &HeaderMap,
) -> Result<live::Follower, reply::Reply> {
    let run = handle::known_job(&state, job)?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let offset = last_seen
        .or_else(|| paths::query_param(target, "offset"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let rel = handle::job_rel_dir(&run, &job.job).join(log.file());
    live::Follower::new(state, run, job.job.clone(), rel, offset).ok_or_else(|| {
        let busy = format!("{} logs are followed already\n", live::MAX_FOLLOWERS);
        reply::Reply::bytes(503, "text/plain; charset=utf-8", busy.into_bytes())
    })
}

/// Whether `addr` is only reachable from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
