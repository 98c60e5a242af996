//! Dynamic completion: the shell asks the binary (`PIKACI_COMPLETE=bash pikaci -- …`), and
//! these give the values that depend on the repository: target and job names from
//! `pikaci.toml`, run ids from the state dir.

use clap_complete::engine::CompletionCandidate;

use super::args::Global;
use super::context::{load_config, state_only};

/// What the completion functions see: the current directory and pikaci's environment
/// (the shell passes no flags to them).
fn global() -> Global {
    Global {
        state_dir: std::env::var_os("PIKACI_STATE_DIR").map(Into::into),
        ..Global::default()
    }
}

/// Targets, then jobs, each with its description or command as help.
pub fn targets_and_jobs() -> Vec<CompletionCandidate> {
    let Ok(config) = load_config(&global()) else {
        return Vec::new();
    };
    let targets = config.targets.values().map(|t| {
        let help = t.description.clone().unwrap_or_else(|| "target".into());
        CompletionCandidate::new(t.id.as_str()).help(Some(help.into()))
    });
    targets.chain(job_candidates(&config)).collect()
}

pub fn jobs() -> Vec<CompletionCandidate> {
    load_config(&global())
        .map(|config| job_candidates(&config).collect())
        .unwrap_or_default()
}

fn job_candidates(config: &crate::config::Config) -> impl Iterator<Item = CompletionCandidate> {
    config.jobs.values().map(|job| {
        let help = format!(
            "job [{}]: {}",
            job.backend,
            job.command.lines().next().unwrap_or("")
        );
        CompletionCandidate::new(job.id.as_str()).help(Some(help.into()))
    })
}

/// The pool's hosts, each with its url as help.
pub fn hosts() -> Vec<CompletionCandidate> {
    let Ok(config) = load_config(&global()) else {
        return Vec::new();
    };
    config
        .hosts
        .values()
        .map(|host| {
            CompletionCandidate::new(host.name.as_str()).help(Some(host.spec.to_string().into()))
        })
        .collect()
}

/// `latest` and the recorded runs, newest first.
pub fn runs() -> Vec<CompletionCandidate> {
    let mut candidates =
        vec![CompletionCandidate::new("latest").help(Some("the newest run".into()))];
    if let Ok(state) = state_only(&global())
        && let Ok(runs) = crate::state::list_runs(&state)
    {
        candidates.extend(runs.iter().rev().map(|run| {
            let status = run.status().map_or("unknown".into(), |s| s.to_string());
            CompletionCandidate::new(run.id.as_str()).help(Some(status.into()))
        }));
    }
    candidates
}
