//! What every command needs, resolved in one place: the config and the state dir.

use super::args::Global;
use crate::cancel::Cancel;
use crate::config::{self, Config};
use crate::error::Error;
use crate::state::StateDir;

pub fn load_config(global: &Global) -> Result<Config, Error> {
    let path = match &global.config {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::infra("reading the current directory", e))?;
            config::find_config(&cwd)?
        }
    };
    let path = std::path::absolute(&path).unwrap_or(path);
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

/// For commands that only read state: the state dir without requiring a valid config
/// when `--state-dir` or `$PIKACI_STATE_DIR` names it.
pub fn state_only(global: &Global) -> Result<StateDir, Error> {
    match &global.state_dir {
        Some(dir) => Ok(StateDir::new(
            std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        )),
        None => load_config(global).map(|c| state_dir(global, &c)),
    }
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
