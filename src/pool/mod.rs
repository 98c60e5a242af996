//! The hosts of one run: which are up, what labels they have, how many guests each runs
//! at once, and where the next job goes. Bookkeeping only; the scheduler asks it and the
//! backends do the work on the host it names.

mod probe;
mod reach;

use std::collections::{BTreeMap, BTreeSet};

pub use probe::{HostProbe, PROBE, ProbeError, probe, slots};
pub use reach::{Reached, Unreachable, reach_all};

use crate::config::{Config, DETECTED_LABELS, Job, PoolHost};
use crate::ids::Id;

/// Where a job may go now.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// On this host, whose slot it now holds until [`Pool::release`].
    On(Id),
    /// Every host that could run it is busy.
    Wait,
    /// No host can: each one, with why.
    Never(NoHost),
}

/// Why no host of the pool can run a job: each host it was matched against, with why not.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct NoHost(pub Vec<(Id, String)>);

impl std::fmt::Display for NoHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no host can run it")?;
        for (i, (host, why)) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{host} {why}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HostState {
    labels: BTreeSet<String>,
    slots: u32,
    running: u32,
    /// Why it is out of this run (unreachable at setup, its connection dropped).
    down: Option<String>,
}

#[derive(Debug, Default)]
pub struct Pool {
    hosts: BTreeMap<Id, HostState>,
}

impl Pool {
    /// A host read by its probe: its declared labels, and the detected ones as the probe
    /// found them (a declared `kvm` the host lacks is not trusted: jobs would fail there).
    pub fn add_up(&mut self, host: &PoolHost, detected: Vec<String>, slots: u32) {
        let mut all: BTreeSet<String> = host
            .labels
            .iter()
            .filter(|l| !DETECTED_LABELS.contains(&l.as_str()))
            .cloned()
            .collect();
        all.extend(detected);
        self.hosts.insert(
            host.name.clone(),
            HostState {
                labels: all,
                slots: slots.max(1),
                running: 0,
                down: None,
            },
        );
    }

    /// A host that could not be probed: out of the run from the start.
    pub fn add_down(&mut self, host: &PoolHost, why: String) {
        self.hosts.insert(
            host.name.clone(),
            HostState {
                labels: host.labels.clone(),
                slots: host.slots.unwrap_or(1),
                running: 0,
                down: Some(why),
            },
        );
    }

    /// A host no job of the run may go to by its declared labels: not reached, but
    /// named when a job finds no host.
    pub fn add_unreached(&mut self, host: &PoolHost) {
        self.add_down(host, "not reached: no job of this run may run there".into());
    }

    /// The host with the most free slots among those up that have every label `job`
    /// runs on (by name on a tie, so placement is repeatable).
    pub fn place(&mut self, job: &Job) -> Placement {
        let mut free: Option<(&Id, u32)> = None;
        let mut busy = false;
        let mut why_not = Vec::new();
        for (name, host) in &self.hosts {
            let lacking: Vec<&str> = job
                .runs_on
                .iter()
                .filter(|l| !host.labels.contains(*l))
                .map(String::as_str)
                .collect();
            if !lacking.is_empty() {
                why_not.push((name.clone(), format!("lacks `{}`", lacking.join("`, `"))));
                continue;
            }
            if let Some(down) = &host.down {
                why_not.push((name.clone(), format!("is down ({down})")));
                continue;
            }
            let spare = host.slots.saturating_sub(host.running);
            if spare == 0 {
                busy = true;
            } else if free.is_none_or(|(_, best)| spare > best) {
                free = Some((name, spare));
            }
        }
        match free {
            Some((name, _)) => {
                let name = name.clone();
                if let Some(host) = self.hosts.get_mut(&name) {
                    host.running += 1;
                }
                Placement::On(name)
            }
            None if busy => Placement::Wait,
            None => Placement::Never(NoHost(why_not)),
        }
    }

    /// A job placed on `host` is over.
    pub fn release(&mut self, host: &Id) {
        if let Some(host) = self.hosts.get_mut(host) {
            host.running = host.running.saturating_sub(1);
        }
    }

    /// `host` failed during the run: no job is placed there any more.
    pub fn mark_down(&mut self, host: &Id, why: String) {
        if let Some(host) = self.hosts.get_mut(host)
            && host.down.is_none()
        {
            host.down = Some(why);
        }
    }

    /// Its declared and detected labels.
    pub fn labels(&self, host: &Id) -> Vec<String> {
        self.hosts
            .get(host)
            .map(|h| h.labels.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_up(&self, host: &Id) -> bool {
        self.hosts.get(host).is_some_and(|h| h.down.is_none())
    }

    pub fn slots(&self, host: &Id) -> Option<u32> {
        self.hosts.get(host).map(|h| h.slots)
    }
}

/// The hosts some job of `jobs` that runs on the pool could be placed on, judged by
/// declared labels (detected ones are read by the probe): the hosts worth probing.
pub fn candidates<'c>(config: &'c Config, jobs: &[&Job]) -> Vec<&'c PoolHost> {
    let wanted: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|job| runs_on_pool(job))
        .collect();
    config
        .hosts
        .values()
        .filter(|host| wanted.iter().any(|job| may_have(host, job)))
        .collect()
}

/// Whether the job's guest runs on a pool host (not on this machine as a `host` job).
pub fn runs_on_pool(job: &Job) -> bool {
    crate::backend::descriptor(job.backend).on_host
}

fn may_have(host: &PoolHost, job: &Job) -> bool {
    job.runs_on
        .iter()
        .all(|l| host.labels.contains(l) || DETECTED_LABELS.contains(&l.as_str()))
}

#[cfg(test)]
mod tests;
