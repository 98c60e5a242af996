//! Reaching the pool's hosts at the start of a run: each candidate is connected to and
//! probed at once, in a thread of its own, so a slow or dead host costs the run one
//! connect timeout, not one per host.

use std::path::Path;

use super::probe::{HostProbe, ProbeError, probe};
use crate::cancel::Cancel;
use crate::config::{Config, PoolHost};
use crate::transport::{Transport, TransportError};

/// A host that answered: what it is, and the connection, for its first backend to use.
pub struct Reached {
    pub probe: HostProbe,
    pub transport: Box<dyn Transport>,
}

#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error(transparent)]
    Connect(TransportError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("its probe panicked (a bug of pikaci's)")]
    Panicked,
}

/// Connects to and probes every host of `hosts` at once.
pub fn reach_all<'h>(
    config: &Config,
    hosts: &[&'h PoolHost],
    state_root: &Path,
    cancel: &Cancel,
) -> Vec<(&'h PoolHost, Result<Reached, Unreachable>)> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = hosts
            .iter()
            .map(|host| {
                let thread = scope.spawn(move || reach(config, host, state_root, cancel));
                (*host, thread)
            })
            .collect();
        threads
            .into_iter()
            .map(|(host, thread)| {
                let reached = thread.join().unwrap_or(Err(Unreachable::Panicked));
                (host, reached)
            })
            .collect()
    })
}

fn reach(
    config: &Config,
    host: &PoolHost,
    state_root: &Path,
    cancel: &Cancel,
) -> Result<Reached, Unreachable> {
    let transport =
        crate::transport::connect(&host.spec, &config.ssh, cancel).map_err(Unreachable::Connect)?;
    let work_dir = crate::backend::wanted_work_dir(config, host, state_root);
    let probe = probe(transport.as_ref(), &work_dir, cancel)?;
    Ok(Reached { probe, transport })
}
