//! The run's last phase with `[nix] cache`: the outputs of its passed build jobs and of
//! its inputs are pushed to the cache with `nix copy --to`, from this machine, signed
//! when `signing-key-file` is set. A failed push is reported and recorded in `run.json`;
//! it fails no job.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use super::build_job::outputs_file;
use super::recorder::Recorder;
use crate::cancel::Cancel;
use crate::config::Config;
use crate::fsutil::tail;
use crate::nix::StorePath;
use crate::nix::flake_jobs::{copy_argv, parse_valid, path_info_argv};
use crate::plan::Plan;
use crate::state::PushRecord;
use crate::transport::{Local, Step, Transport};

pub fn push(
    config: &Config,
    recorder: &Recorder,
    plan: &Plan,
    cancel: &Cancel,
) -> Option<PushRecord> {
    let cache = config.nix.cache.as_deref()?;
    let started = Instant::now();
    let candidates = to_push(recorder, plan);
    let (paths, error) = match here(&candidates, cancel) {
        Ok(paths) if paths.is_empty() => (paths, None),
        Ok(paths) => {
            let key = config.nix.signing_key_file.as_deref();
            let error = copy(cache, key, &paths, cancel).err();
            (paths, error)
        }
        Err(e) => (Vec::new(), Some(e)),
    };
    let shown: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    match &error {
        None => crate::errln!("pushed {} path(s) to {cache}", shown.len()),
        Some(e) => {
            crate::errln!("warning: the push to {cache} failed (the jobs' results stand): {e}")
        }
    }
    let left = candidates.len() - paths.len();
    if left > 0 {
        crate::errln!(
            "note: {left} output(s) are not in this machine's store (built on the build host, or found in the cache) and were not pushed"
        );
    }
    Some(PushRecord {
        cache: cache.to_string(),
        paths: shown,
        duration_ms: started.elapsed().as_millis() as u64,
        error,
    })
}

/// The outputs of the plan's build jobs that kept them (passed, or valid here), and the
/// inputs built here (their out-links in the run's `gcroots/`).
fn to_push(recorder: &Recorder, plan: &Plan) -> Vec<StorePath> {
    let mut paths = BTreeSet::new();
    for node in plan.jobs.iter().filter(|n| n.job.build.is_some()) {
        let file = outputs_file(&recorder.run.job(&node.job.id));
        let kept: Vec<String> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        paths.extend(kept.into_iter().filter_map(|p| StorePath::new(p).ok()));
    }
    paths.extend(input_outputs(&recorder.run.gcroots()));
    paths.into_iter().collect()
}

fn input_outputs(gcroots: &Path) -> Vec<StorePath> {
    let Ok(entries) = std::fs::read_dir(gcroots) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("input-"))
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| StorePath::new(target).ok())
        .collect()
}

/// Those of `paths` valid in this machine's store.
fn here(paths: &[StorePath], cancel: &Cancel) -> Result<Vec<StorePath>, String> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let argv = path_info_argv(None, paths);
    let output = Local
        .run(&argv, b"", Step::Bookkeeping.from_now(), cancel)
        .map_err(|e| crate::error::chain(&e))?;
    let valid = parse_valid(&String::from_utf8_lossy(&output.stdout))?;
    Ok(paths
        .iter()
        .filter(|p| valid.contains(&p.to_string()))
        .cloned()
        .collect())
}

fn copy(
    cache: &str,
    key: Option<&Path>,
    paths: &[StorePath],
    cancel: &Cancel,
) -> Result<(), String> {
    let argv = copy_argv(cache, key, paths);
    let output = Local
        .run_unchecked(&argv, b"", Step::Build.from_now(), cancel)
        .map_err(|e| crate::error::chain(&e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{argv}` failed ({}); last lines of its stderr:\n{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stderr), 10)
    ))
}
