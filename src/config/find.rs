use std::path::{Path, PathBuf};

use super::ConfigError;

pub const CONFIG_FILE: &str = "pikaci.toml";

/// Walks up from `start` to the first directory holding `pikaci.toml`.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfigError::NotFound {
            start: start.to_path_buf(),
        })
}
