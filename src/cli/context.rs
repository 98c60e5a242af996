//! What every command needs, resolved in one place: the config and the state dir.

use std::path::{Path, PathBuf};

use super::args::Global;
use crate::cancel::Cancel;
use crate::config::{self, Config};
use crate::error::Error;
use crate::state::StateDir;

pub fn load_config(global: &Global) -> Result<Config, Error> {
    let path = config_path(global)?;
    let mut config = config::load(&path)?;
    let overrides = config::Overrides {
        host: global.host.clone(),
        ssh_identity_file: global.ssh_identity_file.clone(),
        ssh_known_hosts_file: global.ssh_known_hosts_file.clone(),
        microvm_runner: global.microvm_runner.clone(),
    };
    overrides.apply(&mut config).map_err(Error::Usage)?;
    Ok(config)
}

/// `--state-dir`, else `$PIKACI_STATE_DIR` (clap reads both), else `.pikaci/` at the root.
/// Made absolute: snapshots exclude it by path, and jobs receive paths inside it.
pub fn state_dir(global: &Global, config: &Config) -> StateDir {
    let dir = global
        .state_dir
        .clone()
        .unwrap_or_else(|| config.root.join(".pikaci"));
    StateDir::new(std::path::absolute(&dir).unwrap_or(dir))
}

/// `--config`, else the nearest `pikaci.toml` from the current directory up; absolute.
fn config_path(global: &Global) -> Result<PathBuf, Error> {
    let path = match &global.config {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::infra("reading the current directory", e))?;
            config::find_config(&cwd)?
        }
    };
    Ok(std::path::absolute(&path).unwrap_or(path))
}

/// For commands that only read state (runs, status, logs, gc): the state dir without
/// reading the config. Where it is depends only on where `pikaci.toml` is, so a broken or
/// deleted file does not hide the records; without one, the nearest `.pikaci/` with runs.
pub fn state_only(global: &Global) -> Result<StateDir, Error> {
    if let Some(dir) = &global.state_dir {
        return Ok(StateDir::new(
            std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        ));
    }
    let found = config_path(global);
    let root = match (&found, &global.config) {
        (Ok(path), _) => path.parent().map(Path::to_path_buf),
        // `--config` named a file that is gone: its directory still holds the state.
        (Err(_), Some(path)) => std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
        (Err(_), None) => std::env::current_dir().ok().and_then(|cwd| {
            cwd.ancestors()
                .find(|dir| dir.join(".pikaci").join("runs").is_dir())
                .map(Path::to_path_buf)
        }),
    };
    match root {
        Some(root) => Ok(StateDir::new(root.join(".pikaci"))),
        None => Err(found.err().unwrap_or_else(|| {
            Error::Usage("cannot tell where the state directory is (pass --state-dir DIR)".into())
        })),
    }
}

/// Keeps the state dir out of git: a `.gitignore` of `*` inside it (which also ignores
/// itself), written once.
pub fn ignore_state(state: &StateDir) -> Result<(), Error> {
    let path = state.root().join(".gitignore");
    if path.exists() {
        return Ok(());
    }
    crate::fsutil::create_dir_all(state.root())
        .and_then(|()| std::fs::write(&path, "# pikaci's runs and caches\n*\n"))
        .map_err(|e| Error::infra(&format!("writing {}", path.display()), e))
}

pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A cancel token that Ctrl-C and SIGTERM trigger, for commands that run on the host.
pub fn cancel_on_signals() -> Result<Cancel, Error> {
    let cancel = Cancel::new();
    cancel
        .install_signal_handlers()
        .map_err(|e| Error::infra("installing signal handlers", e))?;
    Ok(cancel)
}
