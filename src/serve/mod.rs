//! `pikaci serve`: the state dir's runs, jobs, timelines and logs in a browser, read-only.
//!
//! A small blocking server (tiny_http): a thread per request, so a live log follower is a
//! thread that mostly sleeps between reads of the growing file. Nothing here writes to
//! the state dir; every file is opened beneath it ([`paths::open_beneath`]).

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
use std::sync::atomic::{AtomicUsize, Ordering};

use tiny_http::{Method, Request};

use crate::state::StateDir;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// The most requests answered at once (live followers included); past it, 503.
const MAX_IN_FLIGHT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve on {addr}: {message}")]
    Server { addr: String, message: String },
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
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| ServeError::Server {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    ready(addr);
    let state = Arc::new(state);
    let in_flight = Arc::new(AtomicUsize::new(0));
    for request in server.incoming_requests() {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = reply::Reply::bytes(503, "text/plain; charset=utf-8", b"busy\n".to_vec());
            let _ = busy.send(request);
            continue;
        }
        let (state, done) = (Arc::clone(&state), Arc::clone(&in_flight));
        let spawned = std::thread::Builder::new()
            .name("serve-request".into())
            .spawn(move || {
                respond(&state, request);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

fn respond(state: &StateDir, request: Request) {
    let target = request.url().to_string();
    if !matches!(request.method(), Method::Get | Method::Head) {
        let reply = reply::Reply::bytes(405, "text/plain; charset=utf-8", b"read-only\n".to_vec());
        let _ = reply.send(request);
        return;
    }
    match router::route(&target) {
        router::Route::Live(job, log) => follow(state, request, &job, log, &target),
        route => {
            let _ = handle::answer(state, route, &target).send(request);
        }
    }
}

/// Hands the connection to [`live::follow`], from the offset the page was rendered at
/// (or the last one the browser saw, when it reconnects).
fn follow(
    state: &StateDir,
    request: Request,
    job: &router::JobRef,
    log: router::LogName,
    target: &str,
) {
    let run = match handle::known_job(state, job) {
        Ok(run) => run,
        Err(reply) => {
            let _ = reply.send(request);
            return;
        }
    };
    let last_seen = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Last-Event-ID"))
        .map(|h| h.value.as_str().to_string());
    let offset = last_seen
        .or_else(|| paths::query_param(target, "offset"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let rel = handle::job_rel_dir(&run, &job.job).join(log.file());
    let mut out = request.into_writer();
    // A follower that went away ends the stream with a write error: nothing to report.
    let _ = live::follow(&mut *out, state, &run, &job.job, &rel, offset);
}

/// Whether `addr` is only reachable from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
