//! The content-addressed store under `<cache>`:
//! `objects/<hh>/<rest>[-x]` hold file contents once (read-only; `-x` for executables,
//! because hard links share their mode), `snapshots/<nar-hex>/` are published trees of
//! hard links to objects, `manifests/<digest>` map a file list to its NAR hash, and
//! `tmp/` holds trees being built. Publishing is a rename, so no half-built tree is seen.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use super::SnapshotError;

pub struct Store {
    pub root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn snapshot_dir(&self, nar_hex: &str) -> PathBuf {
        self.root.join("snapshots").join(nar_hex)
    }

    pub fn object_path(&self, hash: &str, executable: bool) -> PathBuf {
        let suffix = if executable { "-x" } else { "" };
        self.root
            .join("objects")
            .join(&hash[..2])
            .join(format!("{}{suffix}", &hash[2..]))
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.root.join("manifests").join(digest)
    }

    pub fn manifest(&self, digest: &str) -> Option<String> {
        fs::read_to_string(self.manifest_path(digest))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn set_manifest(&self, digest: &str, nar_hash: &str) -> Result<(), SnapshotError> {
        let path = self.manifest_path(digest);
        let dir = path.parent().unwrap_or(&self.root);
        crate::fsutil::create_dir_all(dir).map_err(io_err(dir))?;
        crate::fsutil::write_atomic(&path, nar_hash.as_bytes()).map_err(io_err(&path))
    }

    /// Adds `source` to the store unless its content is there already; returns its
    /// sha256 (hex). Content is streamed, never held in memory whole.
    pub fn add_file(&self, source: &Path, executable: bool) -> Result<String, SnapshotError> {
        let hash = hash_file(source)?;
        let object = self.object_path(&hash, executable);
        if object.exists() {
            return Ok(hash);
        }
        let dir = object.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        fs::copy(source, tmp.path()).map_err(io_err(source))?;
        let mode = if executable { 0o555 } else { 0o444 };
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
            .map_err(io_err(&object))?;
        // Another process may have added the same object meanwhile; either copy is right.
        tmp.persist(&object).map_err(|e| SnapshotError::Io {
            path: object.clone(),
            source: e.error,
        })?;
        Ok(hash)
    }

    pub fn new_tmp_dir(&self) -> Result<tempfile::TempDir, SnapshotError> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Places a stored object at `dest` as a hard link (a copy when the object has run out
    /// of links).
    pub fn link_object(
        &self,
        hash: &str,
        executable: bool,
        dest: &Path,
    ) -> Result<(), SnapshotError> {
        let object = self.object_path(hash, executable);
        match fs::hard_link(&object, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => {
                fs::copy(&object, dest).map(|_| ()).map_err(io_err(dest))
            }
            Err(source) => Err(SnapshotError::Io {
                path: object,
                source,
            }),
        }
    }

    /// Makes `tree` read-only and renames it to `snapshots/<nar_hex>`. If that exists
    /// already (published by another process), `tree` is discarded.
    pub fn publish(
        &self,
        tree: tempfile::TempDir,
        nar_hex: &str,
    ) -> Result<PathBuf, SnapshotError> {
        let target = self.snapshot_dir(nar_hex);
        let parent = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        if target.exists() {
            return Ok(target);
        }
        set_dir_modes(tree.path(), 0o555)?;
        let built = tree.keep();
        match fs::rename(&built, &target) {
            Ok(()) => Ok(target),
            Err(_) if target.exists() => {
                let _ = remove_tree(&built);
                Ok(target)
            }
            Err(source) => {
                let _ = remove_tree(&built);
                Err(SnapshotError::Io {
                    path: target,
                    source,
                })
            }
        }
    }
}

/// sha256 of the NAR serialisation of `path`, in SRI form (`sha256-<base64>`), which is
/// what `nix hash path` prints.
pub fn nar_hash(path: &Path) -> Result<String, SnapshotError> {
    let mut encoder = nix_nar::Encoder::new(path).map_err(|e| SnapshotError::Nar {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = encoder.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
    ))
}

fn hash_file(path: &Path) -> Result<String, SnapshotError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(hex(&hasher.finalize()))
}

/// `sha256-<base64>` → lowercase hex, the snapshot directory name.
pub fn sri_to_hex(sri: &str) -> Option<String> {
    let b64 = sri.strip_prefix("sha256-")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bytes.len() == 32).then(|| hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Recreates a symlink of the workspace in the tree being built.
pub fn copy_symlink(source: &Path, dest: &Path) -> Result<(), SnapshotError> {
    let target = fs::read_link(source).map_err(io_err(source))?;
    symlink(&target, dest).map_err(io_err(dest))
}

fn set_dir_modes(root: &Path, mode: u32) -> Result<(), SnapshotError> {
    // Children first, so a read-only parent never blocks changing a child.
    let dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .contents_first(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    for dir in dirs {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err(&dir))?;
    }
    Ok(())
}

pub fn remove_tree(path: &Path) -> io::Result<()> {
    crate::state::remove_tree(path)
}
