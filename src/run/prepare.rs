//! Prepare nodes: `nix build` of the run's inputs, GC roots under the run dir; with a
//! build host (`[nix] build-host`), inputs guest jobs need are built there instead (or
//! as well, when `host` jobs need them too).

use std::time::Instant;

use super::job::RunShared;
use super::recorder::Recorder;
use crate::cancel::Cancel;
use crate::nix::{BUILD_TIMEOUT, NixBuild, StorePath, installable_in};
use crate::plan::PrepareNode;
use crate::state::EventKind;
use crate::transport::Local;

/// Builds one installable; returns the store paths of its outputs.
pub fn build_input(node: &PrepareNode, run: &RunShared) -> Result<Vec<StorePath>, String> {
    let recorder = run.recorder;
    let name = node.inputs[0].as_str();
    recorder.emit(EventKind::PrepareStarted {
        input: name.to_string(),
        installable: node.installable.clone(),
    });
    let started = Instant::now();
    // With what to grant, when a permission is what failed (a user without the daemon).
    let result = where_built(node, name, run).map_err(crate::hint::with_hint);
    recorder.emit(EventKind::PrepareFinished {
        input: name.to_string(),
        ok: result.is_ok(),
        duration_ms: started.elapsed().as_millis() as u64,
        message: result.as_ref().err().cloned(),
    });
    result
}

/// Builds on the build host, here, or both; both must give the same paths (they do when
/// the two machines evaluate the installable alike).
fn where_built(node: &PrepareNode, name: &str, run: &RunShared) -> Result<Vec<StorePath>, String> {
    let (here, build_host) = run.backends.input_builds(&node.inputs);
    let mut on_b = None;
    if let Some(b) = build_host {
        // Its own log: an input built here too writes `prepare_log` itself.
        let log = run
            .recorder
            .run
            .prepare_log(name)
            .with_file_name(format!("{name}-on-{}.log", b.name()));
        if let Some(dir) = log.parent() {
            crate::fsutil::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let built = b
            .build_input(name, &node.installable, &log, run.cancel)
            .map_err(|e| crate::error::chain(&e))?;
        on_b = Some((b.name(), built));
    }
    if !here {
        return Ok(on_b.map(|(_, paths)| paths).unwrap_or_default());
    }
    let nix = &run.backends.config().nix;
    let local = build(node, name, run.snapshot, nix, run.recorder, run.cancel)?;
    match on_b {
        Some((b, paths)) if paths != local => Err(format!(
            "input `{name}` built to {} on build host `{b}` but to {} here; `host` jobs and guest jobs would get different paths",
            shown(&paths),
            shown(&local)
        )),
        _ => Ok(local),
    }
}

fn shown(paths: &[StorePath]) -> String {
    paths
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn build(
    node: &PrepareNode,
    name: &str,
    workspace: &std::path::Path,
    nix: &crate::config::NixSettings,
    recorder: &Recorder,
    cancel: &Cancel,
) -> Result<Vec<StorePath>, String> {
    let gcroots = recorder.run.gcroots();
    let log = recorder.run.prepare_log(name);
    for dir in [Some(gcroots.as_path()), log.parent()]
        .into_iter()
        .flatten()
    {
        crate::fsutil::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let out_link = gcroots.join(format!("input-{name}"));
    let installable = installable_in(workspace, &node.installable);
    let build = NixBuild {
        installable: &installable,
        out_link: &out_link,
        cwd: workspace,
    };
    // With `[nix] cache`, inputs built here substitute from it too.
    let (options, key_error) = crate::nix::flake_jobs::cache_options(nix);
    if let Some(e) = key_error {
        crate::errln!("warning: {e}; input `{name}` does not trust the cache's paths");
    }
    let results = build
        .run_with(
            &Local,
            &log,
            Instant::now() + BUILD_TIMEOUT,
            cancel,
            &options,
        )
        .map_err(|e| e.to_string())?;
    Ok(results
        .into_iter()
        .flat_map(|r| r.outputs.into_values())
        .collect())
}
