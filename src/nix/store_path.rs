use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const STORE_DIR: &str = "/nix/store";
const HASH_LEN: usize = 32;
const NIX32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// An absolute path directly under `/nix/store`, named `<32 nix32 chars>-<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct StorePath(PathBuf);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{}` is not a Nix store path (expected {STORE_DIR}/<hash>-<name>)", path.display())]
pub struct NotAStorePath {
    pub path: PathBuf,
}

impl StorePath {
    pub fn new(path: impl Into<PathBuf>) -> Result<StorePath, NotAStorePath> {
        let path = path.into();
        let valid = path.parent() == Some(Path::new(STORE_DIR))
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| {
                    let (hash, rest) = name.split_at(name.len().min(HASH_LEN));
                    hash.len() == HASH_LEN
                        && hash.chars().all(|c| NIX32.contains(c))
                        && rest.len() > 1
                        && rest.starts_with('-')
                });
        if valid {
            Ok(StorePath(path))
        } else {
            Err(NotAStorePath { path })
        }
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for StorePath {
    type Error = NotAStorePath;
    fn try_from(path: PathBuf) -> Result<Self, Self::Error> {
        StorePath::new(path)
    }
}

impl From<StorePath> for PathBuf {
    fn from(path: StorePath) -> PathBuf {
        path.0
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_store_paths_only() {
        assert!(StorePath::new("/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-hello-2.12").is_ok());
        for bad in [
            "/nix/store/short-hello",
            "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd",
            "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-hello/bin",
            "/tmp/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-hello",
            "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-e",
        ] {
            assert!(StorePath::new(bad).is_err(), "{bad}");
        }
    }
}
