//! The run's last phase with `[nix] cache`: the outputs of its passed build jobs and of
//! its inputs (built here or on the build host) are pushed to the cache with
//! `nix copy --to`. What was built here is pushed from here, signed as it is written
//! when `signing-key-file` is set; what was built on the build host is pushed from
//! there, then signed in the cache from here (`nix store sign --store CACHE`), so the
//! key never leaves this machine. A failed push is reported and recorded in `run.json`;
//! it fails no job.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use super::build_job::outputs_file;
use super::job::RunShared;
use crate::fsutil::tail;
use crate::nix::StorePath;
use crate::nix::flake_jobs::{copy_argv, parse_valid, path_info_argv, sign_argv};
use crate::plan::Plan;
use crate::state::{JobRecord, PushRecord, read_record};
use crate::transport::{Local, Step, Transport};

pub fn push(run: &RunShared, plan: &Plan) -> Option<PushRecord> {
    let nix = &run.backends.config().nix;
    let cache = nix.cache.as_deref()?;
    let key = nix.signing_key_file.as_deref();
    let started = Instant::now();
    let build_host = run.backends.build_host();
    let (mut on_b, here) = to_push(run, plan, build_host.map(|b| b.name().as_str()));
    // Inputs built on B for guest jobs are in B's store only (those built here as well
    // are pushed from here).
    if let Some(b) = build_host {
        on_b.extend(
            b.shared()
                .built_inputs()
                .into_iter()
                .filter(|p| !here.contains(p)),
        );
        on_b.sort();
        on_b.dedup();
    }
    let mut pushed = Vec::new();
    let mut errors = Vec::new();
    match valid_here(&here, run) {
        Ok(paths) if paths.is_empty() => {}
        Ok(paths) => match copy(&Local, cache, key, &paths, run) {
            Ok(()) => pushed.extend(paths),
            Err(e) => errors.push(e),
        },
        Err(e) => errors.push(e),
    }
    if let (Some(b), false) = (build_host, on_b.is_empty()) {
        let pushed_from_b = b
            .session(run.cancel)
            .map_err(|e| crate::error::chain(&*e))
            .and_then(|s| copy(s.transport.as_ref(), cache, None, &on_b, run))
            .and_then(|()| key.map_or(Ok(()), |key| sign(cache, key, &on_b, run)));
        match pushed_from_b {
            Ok(()) => pushed.extend(on_b),
            Err(e) => errors.push(format!("from build host `{}`: {e}", b.name())),
        }
    }
    let shown: Vec<String> = pushed.iter().map(|p| p.to_string()).collect();
    let error = (!errors.is_empty()).then(|| errors.join("\n"));
    match &error {
        None => crate::errln!("pushed {} path(s) to {cache}", shown.len()),
        Some(e) => {
            crate::errln!("warning: the push to {cache} failed (the jobs' results stand): {e}")
        }
    }
    Some(PushRecord {
        cache: cache.to_string(),
        paths: shown,
        duration_ms: started.elapsed().as_millis() as u64,
        error,
    })
}

/// The outputs the plan's build jobs kept (passed, or valid where they build), split by
/// where they are: on build host `b`, or here with the inputs built here (their
/// out-links in the run's `gcroots/`).
fn to_push(run: &RunShared, plan: &Plan, b: Option<&str>) -> (Vec<StorePath>, Vec<StorePath>) {
    let (mut on_b, mut here) = (BTreeSet::new(), BTreeSet::new());
    for node in plan.jobs.iter().filter(|n| n.job.build.is_some()) {
        let dir = run.recorder.run.job(&node.job.id);
        let kept: Vec<String> = std::fs::read(outputs_file(&dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let record: Option<JobRecord> = read_record(&dir.join("status.json")).ok();
        let built_on_b = b.is_some() && record.and_then(|r| r.host).as_deref() == b;
        let paths = kept.into_iter().filter_map(|p| StorePath::new(p).ok());
        if built_on_b {
            on_b.extend(paths);
        } else {
            here.extend(paths);
        }
    }
    here.extend(input_outputs(&run.recorder.run.gcroots()));
    (on_b.into_iter().collect(), here.into_iter().collect())
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

/// Those of `paths` valid in this machine's store (an input's out-link may be dangling).
fn valid_here(paths: &[StorePath], run: &RunShared) -> Result<Vec<StorePath>, String> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let argv = path_info_argv(None, paths);
    let output = Local
        .run(&argv, b"", Step::Bookkeeping.from_now(), run.cancel)
        .map_err(|e| crate::error::chain(&e))?;
    let valid = parse_valid(&String::from_utf8_lossy(&output.stdout))?;
    Ok(paths
        .iter()
        .filter(|p| valid.contains(&p.to_string()))
        .cloned()
        .collect())
}

fn copy(
    on: &dyn Transport,
    cache: &str,
    key: Option<&Path>,
    paths: &[StorePath],
    run: &RunShared,
) -> Result<(), String> {
    checked(on, &copy_argv(cache, key, paths), run)
}

fn sign(cache: &str, key: &Path, paths: &[StorePath], run: &RunShared) -> Result<(), String> {
    checked(&Local, &sign_argv(cache, key, paths), run)
}

fn checked(on: &dyn Transport, argv: &crate::argv::Argv, run: &RunShared) -> Result<(), String> {
    let output = on
        .run_unchecked(argv, b"", Step::Build.from_now(), run.cancel)
        .map_err(|e| crate::error::chain(&e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{argv}` failed on {} ({}); last lines of its stderr:\n{}",
        on.host(),
        output.status,
        tail(&String::from_utf8_lossy(&output.stderr), 10)
    ))
}
