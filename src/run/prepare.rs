//! Prepare nodes: `nix build` of the run's inputs, GC roots under the run dir.

use std::time::Instant;

use super::recorder::Recorder;
use crate::cancel::Cancel;
use crate::nix::{BUILD_TIMEOUT, NixBuild, StorePath, installable_in};
use crate::plan::PrepareNode;
use crate::state::EventKind;
use crate::transport::Local;

/// Builds one installable; returns the store paths of its outputs.
pub fn build_input(
    node: &PrepareNode,
    workspace: &std::path::Path,
    recorder: &Recorder,
    cancel: &Cancel,
) -> Result<Vec<StorePath>, String> {
    let name = node.inputs[0].as_str();
    recorder.emit(EventKind::PrepareStarted {
        input: name.to_string(),
        installable: node.installable.clone(),
    });
    let started = Instant::now();
    // With what to grant, when a permission is what failed (a user without the daemon).
    let result = build(node, name, workspace, recorder, cancel).map_err(crate::hint::with_hint);
    recorder.emit(EventKind::PrepareFinished {
        input: name.to_string(),
        ok: result.is_ok(),
        duration_ms: started.elapsed().as_millis() as u64,
        message: result.as_ref().err().cloned(),
    });
    result
}

fn build(
    node: &PrepareNode,
    name: &str,
    workspace: &std::path::Path,
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
    let results = build
        .run(&Local, &log, Instant::now() + BUILD_TIMEOUT, cancel)
        .map_err(|e| e.to_string())?;
    Ok(results
        .into_iter()
        .flat_map(|r| r.outputs.into_values())
        .collect())
}
