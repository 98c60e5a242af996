//! The NAR serialisation of a tree, streamed into sha256: what `nix hash path` prints.
//! Snapshots are not named by it (see the module above); the tests use it to show that a
//! tree, here or on a host, is exactly the workspace.
//! Names and symlink targets are bytes (Nix allows any but `/` and NUL in a name), so
//! this does not go through `str` as the `nix-nar` crate does.
//!
//! Format: every string is its length (u64, little-endian), its bytes, and zero padding
//! to a multiple of 8. A node is `( type regular [executable ""] contents <bytes> )`,
//! `( type symlink target <bytes> )` or `( type directory entry ( name N node <node> )… )`
//! with entries sorted by name bytes.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::SnapshotError;
use crate::cancel::Cancel;

/// sha256 of the NAR serialisation of `path`, in SRI form (`sha256-<base64>`).
pub fn nar_hash(path: &Path) -> Result<String, SnapshotError> {
    nar_hash_cancellable(path, &Cancel::new())
}

pub fn nar_hash_cancellable(path: &Path, cancel: &Cancel) -> Result<String, SnapshotError> {
    let mut nar = Nar {
        hasher: Sha256::new(),
        cancel,
        buf: vec![0; 1 << 16],
    };
    nar.bytes(b"nix-archive-1");
    nar.node(path)?;
    Ok(format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(nar.hasher.finalize())
    ))
}

struct Nar<'a> {
    hasher: Sha256,
    cancel: &'a Cancel,
    /// One read buffer for every file: most files of a tree are small, and a fresh
    /// buffer for each would cost more to clear than the file costs to read.
    buf: Vec<u8>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Nar<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self.pad(bytes.len() as u64);
    }

    fn pad(&mut self, len: u64) {
        let rest = (8 - len % 8) % 8;
        self.hasher.update(&[0u8; 8][..rest as usize]);
    }

    fn node(&mut self, path: &Path) -> Result<(), SnapshotError> {
        if self.cancel.is_cancelled() {
            return Err(SnapshotError::Cancelled);
        }
        let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
        self.bytes(b"(");
        self.bytes(b"type");
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path).map_err(io_err(path))?;
            self.bytes(b"symlink");
            self.bytes(b"target");
            self.bytes(target.as_os_str().as_bytes());
        } else if meta.is_dir() {
            self.bytes(b"directory");
            let mut names: Vec<_> = fs::read_dir(path)
                .map_err(io_err(path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(io_err(path))?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                self.bytes(b"entry");
                self.bytes(b"(");
                self.bytes(b"name");
                self.bytes(name.as_bytes());
                self.bytes(b"node");
                self.node(&path.join(&name))?;
                self.bytes(b")");
            }
        } else if meta.is_file() {
            self.bytes(b"regular");
            if meta.permissions().mode() & 0o100 != 0 {
                self.bytes(b"executable");
                self.bytes(b"");
            }
            self.bytes(b"contents");
            self.contents(path, meta.len())?;
        } else {
            return Err(SnapshotError::Nar {
                path: path.to_path_buf(),
                detail: "neither a file, a directory nor a symlink".into(),
            });
        }
        self.bytes(b")");
        Ok(())
    }

    /// The length (from the `lstat` just made) is written first, so the file must hold
    /// exactly that many bytes.
    fn contents(&mut self, path: &Path, len: u64) -> Result<(), SnapshotError> {
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        self.hasher.update(len.to_le_bytes());
        let mut read = 0u64;
        loop {
            if self.cancel.is_cancelled() {
                return Err(SnapshotError::Cancelled);
            }
            let n = file.read(&mut self.buf).map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.hasher.update(&self.buf[..n]);
        }
        if read != len {
            return Err(SnapshotError::Nar {
                path: path.to_path_buf(),
                detail: format!("changed size while hashed ({len} then {read} bytes)"),
            });
        }
        self.pad(len);
        Ok(())
    }
}
