//! Bringing a guest's `/artifacts` back: one tar stream from wherever the guest ran,
//! unpacked into the job's record dir, with `guest.log` and `result.json` moved beside
//! `artifacts/` where every backend keeps them.

use std::io::Seek;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::protocol::GuestResult;
use crate::transport::Transport;

/// How long bringing the artifacts back may take.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Runs `tar_argv` (a tar of the guest's `/artifacts` on stdout) through `transport` and
/// unpacks it with [`unpack`]. Not cancellable: collecting also follows a cancellation.
pub fn fetch(
    transport: &dyn Transport,
    tar_argv: &Argv,
    job_dir: &Path,
) -> Result<Option<GuestResult>, (&'static str, String)> {
    let collecting = |e: &dyn std::fmt::Display| ("collecting the artifacts", e.to_string());
    // Through a temporary file: artifacts and logs can be large.
    let mut tar = tempfile::tempfile().map_err(|e| collecting(&e))?;
    transport
        .run_into(
            tar_argv,
            &tar,
            Instant::now() + COLLECT_TIMEOUT,
            &Cancel::new(),
        )
        .map_err(|e| collecting(&e))?;
    tar.rewind().map_err(|e| collecting(&e))?;
    unpack(tar, job_dir)
}

/// Unpacks `tar` into `<job_dir>/artifacts`; returns the guest's result, if it wrote one.
pub fn unpack(
    tar: impl std::io::Read,
    job_dir: &Path,
) -> Result<Option<GuestResult>, (&'static str, String)> {
    let local = job_dir.join("artifacts");
    crate::fsutil::create_dir_all(&local)
        .map_err(|e| ("collecting the artifacts", e.to_string()))?;
    tar::Archive::new(tar)
        .unpack(&local)
        .map_err(|e| ("unpacking the artifacts", e.to_string()))?;
    for name in ["guest.log", "result.json"] {
        let from = local.join(name);
        if from.exists() {
            std::fs::rename(&from, job_dir.join(name))
                .map_err(|e| ("collecting the artifacts", e.to_string()))?;
        }
    }
    let result = job_dir.join("result.json");
    if !result.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&result).map_err(|e| ("reading result.json", e.to_string()))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        (
            "reading result.json",
            format!("the guest wrote an invalid result: {e}"),
        )
    })
}
