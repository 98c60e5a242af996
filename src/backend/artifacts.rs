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
const COLLECT_TIMEOUT: Duration = crate::transport::Step::Collect.duration();
/// How often the tar is asked for when its stream arrives incomplete.
const FETCH_ATTEMPTS: usize = 3;

/// Runs `tar_argv` (a tar of the guest's `/artifacts` on stdout) through `transport` and
/// unpacks it with [`unpack`]. Not cancellable: collecting also follows a cancellation.
///
/// `incus exec` now and then exits 0 having passed on none of a quick command's output
/// (Incus 6.0, about 1 in 200 under load), so a stream without tar's end marker is asked
/// for again rather than read as "no result".
pub fn fetch(
    transport: &dyn Transport,
    tar_argv: &Argv,
    job_dir: &Path,
) -> Result<Option<GuestResult>, ArtifactsError> {
    let mut sizes = Vec::new();
    while sizes.len() < FETCH_ATTEMPTS {
        // Through a temporary file: artifacts and logs can be large.
        let mut tar = tempfile::tempfile().map_err(ArtifactsError::Spool)?;
        transport.run_into(
            tar_argv,
            &tar,
            Instant::now() + COLLECT_TIMEOUT,
            &Cancel::new(),
        )?;
        if ends_like_a_tar(&mut tar).map_err(ArtifactsError::Spool)? {
            tar.rewind().map_err(ArtifactsError::Spool)?;
            return unpack(tar, job_dir);
        }
        sizes.push(tar.metadata().map_err(ArtifactsError::Spool)?.len());
    }
    Err(ArtifactsError::Incomplete {
        command: tar_argv.summary(),
        host: transport.host(),
        sizes,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    #[error(transparent)]
    Fetch(#[from] crate::transport::TransportError),
    #[error("cannot keep the tar stream in a temporary file")]
    Spool(#[source] std::io::Error),
    #[error(
        "`{command}` on {host} printed an incomplete tar stream {} times ({} bytes)",
        sizes.len(),
        sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    )]
    Incomplete {
        command: String,
        host: String,
        sizes: Vec<u64>,
    },
    #[error("cannot unpack the artifacts into {}", path.display())]
    Unpack {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the guest wrote an invalid result")]
    BadResult(#[source] serde_json::Error),
}

/// Whether `file` is whole blocks ending in tar's end marker (two zero blocks): a stream
/// cut short, empty included, is not.
fn ends_like_a_tar(file: &mut std::fs::File) -> std::io::Result<bool> {
    const BLOCK: u64 = 512;
    let len = file.metadata()?.len();
    if len < 2 * BLOCK || len % BLOCK != 0 {
        return Ok(false);
    }
    let mut tail = [0u8; 2 * BLOCK as usize];
    file.seek(std::io::SeekFrom::End(-(2 * BLOCK as i64)))?;
    std::io::Read::read_exact(file, &mut tail)?;
    Ok(tail.iter().all(|&b| b == 0))
}

/// Unpacks `tar` into `<job_dir>/artifacts`; returns the guest's result, if it wrote one.
pub fn unpack(
    tar: impl std::io::Read,
    job_dir: &Path,
) -> Result<Option<GuestResult>, ArtifactsError> {
    let local = job_dir.join("artifacts");
    let unpacking = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArtifactsError::Unpack { path, source }
    };
    crate::fsutil::create_dir_all(&local).map_err(unpacking(&local))?;
    tar::Archive::new(tar)
        .unpack(&local)
        .map_err(unpacking(&local))?;
    for name in ["guest.log", "result.json"] {
        let from = local.join(name);
        if from.exists() {
            std::fs::rename(&from, job_dir.join(name)).map_err(unpacking(job_dir))?;
        }
    }
    let result = job_dir.join("result.json");
    if !result.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&result).map_err(unpacking(&result))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(ArtifactsError::BadResult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Local;

    /// A guest's artifacts dir with a result in it, and an argv that prints its tar
    /// only from the `good`-th call on (the calls before print nothing and exit 0).
    fn guest(good: usize) -> (tempfile::TempDir, Argv) {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        let result = GuestResult::error(std::time::SystemTime::now(), "from the guest".into());
        std::fs::write(
            artifacts.join("result.json"),
            serde_json::to_vec(&result).unwrap(),
        )
        .unwrap();
        let script = r#"echo x >> "$1/calls"; [ "$(wc -l < "$1/calls")" -ge "$2" ] && tar -C "$1/artifacts" -cf - . ; true"#;
        let argv = Argv::new("sh")
            .args(["-c", script, "guest"])
            .arg(dir.path())
            .arg(good.to_string());
        (dir, argv)
    }

    fn calls(dir: &tempfile::TempDir) -> usize {
        std::fs::read_to_string(dir.path().join("calls"))
            .unwrap()
            .lines()
            .count()
    }

    #[test]
    fn an_empty_stream_is_asked_for_again() {
        let (guest, argv) = guest(3);
        let job = tempfile::tempdir().unwrap();
        let result = fetch(&Local, &argv, job.path()).unwrap().expect("a result");
        assert_eq!(result.message.as_deref(), Some("from the guest"));
        assert_eq!(calls(&guest), 3);
    }

    #[test]
    fn a_stream_that_stays_empty_is_an_error_not_a_missing_result() {
        let (guest, argv) = guest(usize::MAX);
        let job = tempfile::tempdir().unwrap();
        let why = fetch(&Local, &argv, job.path()).unwrap_err().to_string();
        assert!(
            why.ends_with("printed an incomplete tar stream 3 times (0, 0, 0 bytes)"),
            "{why}"
        );
        assert_eq!(calls(&guest), FETCH_ATTEMPTS);
    }

    #[test]
    fn only_whole_tars_end_like_a_tar() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(600);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "guest.log", &[7u8; 600][..])
            .unwrap();
        let whole = builder.into_inner().unwrap();
        let check = |bytes: &[u8]| {
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, bytes).unwrap();
            ends_like_a_tar(&mut file).unwrap()
        };
        assert!(check(&whole));
        // GNU tar pads to a 10 KiB record with more zero blocks.
        assert!(check(&[&whole[..], &[0u8; 8192][..]].concat()));
        assert!(!check(b""));
        // Cut before the end marker, at a block boundary and within a block.
        assert!(!check(&whole[..whole.len() - 1024]));
        assert!(!check(&whole[..whole.len() - 100]));
    }
}
