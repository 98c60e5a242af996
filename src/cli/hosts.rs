//! `pikaci hosts`: the pool as the next run would find it. Every host is connected to and
//! probed at once (`pool::reach_all`), so a dead host costs one connect timeout; each is
//! listed with what its probe read, or why it could not be reached.

use serde::Serialize;

use super::args::{Global, HostsArgs};
use super::context::{cancel_on_signals, load_config, state_dir};
use crate::config::{Config, DETECTED_LABELS, PoolHost};
use crate::error::Error;
use crate::pool::{HostProbe, Reached, Unreachable};
use crate::report::ran_on::one_line;

/// One host of the listing; `--json` prints these as they are.
#[derive(Debug, Serialize)]
pub struct HostListing {
    pub name: String,
    pub url: String,
    pub reachable: bool,
    /// Why it could not be reached or probed, on one line.
    pub error: Option<String>,
    /// Guests at once: as configured, else computed from the probe; none for a host
    /// that did not answer and has no `slots`.
    pub slots: Option<u32>,
    /// Whether `slots` was configured (else computed from cores and memory).
    pub slots_configured: bool,
    /// As in `pikaci.toml`.
    pub labels_declared: Vec<String>,
    /// What the probe found: the system, and `kvm` when /dev/kvm is usable.
    pub labels_detected: Vec<String>,
    pub system: Option<String>,
    pub kvm: Option<bool>,
    pub cores: Option<u32>,
    pub memory_kib: Option<u64>,
    /// `nix --version`'s line, when Nix is on the host's PATH.
    pub nix: Option<String>,
    /// pikaci's work dir there, as configured (relative to the SSH user's home).
    pub work_dir: String,
    pub free_kib: Option<u64>,
    /// Declared labels the probe contradicts, e.g. `kvm` without a usable /dev/kvm.
    pub warnings: Vec<String>,
}

pub fn hosts(global: &Global, args: HostsArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let state = state_dir(global, &config);
    let cancel = cancel_on_signals()?;
    let pool: Vec<&PoolHost> = config.hosts.values().collect();
    let reached = crate::pool::reach_all(&config, &pool, state.root(), &cancel);
    let listing: Vec<HostListing> = reached
        .into_iter()
        .map(|(host, reached)| {
            let work_dir = crate::backend::wanted_work_dir(&config, host, state.root());
            listing(&config, host, work_dir, reached)
        })
        .collect();
    if args.json {
        let text = serde_json::to_string_pretty(&listing)
            .map_err(|e| Error::infra("writing the host listing as JSON", e))?;
        crate::outln!("{text}");
    } else {
        crate::console::out(render(&listing).as_bytes());
    }
    // A host that did not answer is an infrastructure problem (exit code 3).
    Ok(if listing.iter().all(|h| h.reachable) {
        0
    } else {
        3
    })
}

/// The listing of `host` from what reaching it gave; its connection is closed here.
pub fn listing(
    config: &Config,
    host: &PoolHost,
    work_dir: String,
    reached: Result<Reached, Unreachable>,
) -> HostListing {
    let mut listing = HostListing {
        name: host.name.to_string(),
        url: host.spec.to_string(),
        reachable: false,
        error: None,
        slots: host.slots,
        slots_configured: host.slots.is_some(),
        labels_declared: host.labels.iter().cloned().collect(),
        labels_detected: Vec::new(),
        system: None,
        kvm: None,
        cores: None,
        memory_kib: None,
        nix: None,
        work_dir,
        free_kib: None,
        warnings: Vec::new(),
    };
    match reached {
        Ok(reached) => {
            let probe = &reached.probe;
            listing.reachable = true;
            listing.slots = Some(crate::pool::slots(host, probe, &config.backends.microvm));
            listing.labels_detected = probe.labels();
            listing.warnings = contradicted_labels(host, probe);
            listing.system = Some(probe.system.clone());
            listing.kvm = Some(probe.kvm);
            listing.cores = Some(probe.cores);
            listing.memory_kib = Some(probe.memory_kib);
            listing.nix = probe.nix.clone();
            listing.free_kib = probe.free_kib;
        }
        Err(e) => listing.error = Some(one_line(&crate::error::chain(&e))),
    }
    listing
}

/// Declared labels pikaci detects itself that the probe did not find: a job that asks
/// for one expects what the host lacks.
fn contradicted_labels(host: &PoolHost, probe: &HostProbe) -> Vec<String> {
    let found = probe.labels();
    host.labels
        .iter()
        .filter(|l| DETECTED_LABELS.contains(&l.as_str()) && !found.contains(l))
        .map(|l| match l.as_str() {
            "kvm" => "declares `kvm`, but the probe finds no usable /dev/kvm (missing, or not \
                      readable and writable by this user)"
                .to_string(),
            system => format!("declares `{system}`, but the probe finds {}", probe.system),
        })
        .collect()
}

/// One block per host, then how many answered.
pub fn render(listing: &[HostListing]) -> String {
    let mut text = String::new();
    for host in listing {
        text.push_str(&block(host));
    }
    let up = listing.iter().filter(|h| h.reachable).count();
    text.push_str(&format!("{up} of {} host(s) reachable\n", listing.len()));
    text
}

fn block(host: &HostListing) -> String {
    let state = match &host.error {
        None => "reachable".to_string(),
        Some(e) => format!("UNREACHABLE: {e}"),
    };
    let mut text = format!("{} ({}): {state}\n", host.name, host.url);
    let mut row = |key: &str, value: String| text.push_str(&format!("  {key:<7} {value}\n"));
    row("slots", slots(host));
    row("labels", labels(host));
    if host.reachable {
        let kvm = if host.kvm == Some(true) {
            "yes"
        } else {
            "no (no usable /dev/kvm)"
        };
        row("kvm", kvm.into());
        row(
            "nix",
            host.nix.clone().unwrap_or_else(|| "not found".into()),
        );
        let free = host.free_kib.map_or("unknown".into(), size);
        row("disk", format!("{free} free in {}", host.work_dir));
    }
    for warning in &host.warnings {
        text.push_str(&format!("  warning: {warning}\n"));
    }
    text
}

fn slots(host: &HostListing) -> String {
    match (
        host.slots,
        host.slots_configured,
        host.cores,
        host.memory_kib,
    ) {
        (None, _, _, _) => "unknown (not configured, and the host did not answer)".into(),
        (Some(n), true, _, _) => format!("{n} (configured)"),
        (Some(n), false, Some(cores), Some(kib)) => {
            format!("{n} (from {cores} core(s) and {} of memory)", size(kib))
        }
        (Some(n), false, _, _) => n.to_string(),
    }
}

fn labels(host: &HostListing) -> String {
    let list = |labels: &[String], what: &str| {
        (!labels.is_empty()).then(|| format!("{} ({what})", labels.join(", ")))
    };
    let parts: Vec<String> = [
        list(&host.labels_declared, "declared"),
        list(&host.labels_detected, "detected"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

/// `12.3 GiB`, `512.0 MiB`: KiB as a person reads them.
fn size(kib: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = kib as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests;
