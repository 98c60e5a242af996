//! Settings a command line or environment may override, applied in one place after the
//! file is read: where guests run and how it is reached, and a prebuilt microVM runner.
//! Handy for a one-off run against another host, and for testbeds whose paths do not
//! belong in a committed `pikaci.toml`.

use std::path::PathBuf;

use std::collections::BTreeMap;

use super::{Config, PoolHost, parse_host};
use crate::ids::Id;

#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--host` / `PIKACI_HOST`.
    pub host: Option<String>,
    /// `--ssh-identity-file` / `PIKACI_SSH_IDENTITY_FILE`.
    pub ssh_identity_file: Option<PathBuf>,
    /// `--ssh-known-hosts-file` / `PIKACI_SSH_KNOWN_HOSTS_FILE`.
    pub ssh_known_hosts_file: Option<PathBuf>,
    /// `--microvm-runner` / `PIKACI_MICROVM_RUNNER`.
    pub microvm_runner: Option<String>,
}

impl Overrides {
    /// Applies the overrides; a bad host is an error naming where it came from.
    pub fn apply(&self, config: &mut Config) -> Result<(), String> {
        if let Some(host) = &self.host {
            config.hosts =
                one_host(config, host).map_err(|e| format!("--host / PIKACI_HOST: {e}"))?;
        }
        if let Some(path) = &self.ssh_identity_file {
            config.ssh.identity_file = Some(std::path::absolute(path).unwrap_or(path.clone()));
        }
        if let Some(path) = &self.ssh_known_hosts_file {
            config.ssh.known_hosts_file = Some(std::path::absolute(path).unwrap_or(path.clone()));
        }
        if let Some(runner) = &self.microvm_runner {
            config.backends.microvm.runner = Some(runner.clone());
        }
        Ok(())
    }
}

/// `--host NAME` keeps only that host of the pool; `--host URL` moves a pool of one there.
pub fn one_host(config: &Config, host: &str) -> Result<BTreeMap<Id, PoolHost>, String> {
    if let Some((name, pool_host)) = config.hosts.iter().find(|(name, _)| name.as_str() == host) {
        return Ok(BTreeMap::from([(name.clone(), pool_host.clone())]));
    }
    let names: Vec<&str> = config.hosts.keys().map(Id::as_str).collect();
    if config.hosts.len() > 1 {
        // Neither one of the pool's names nor, in a pool of several, a url: say which are.
        return Err(match parse_host(host) {
            Ok(_) => format!(
                "the config has several hosts; name one of them ({}) rather than a url",
                names.join(", ")
            ),
            Err(_) => format!(
                "no host `{host}` in the pool; its hosts: {}",
                names.join(", ")
            ),
        });
    }
    let spec = parse_host(host)?;
    let mut only = config.main_host().clone();
    only.spec = spec;
    Ok(BTreeMap::from([(only.name.clone(), only)]))
}

#[cfg(test)]
mod tests {
    use super::one_host;

    #[test]
    fn a_host_not_in_a_pool_of_several_is_answered_with_the_pools_names() {
        let text = "[jobs.t]\ncommand = \"true\"\n[hosts.a]\nurl = \"local\"\n[hosts.b]\nurl = \"local\"\n";
        let config = crate::config::parse(std::path::Path::new("pikaci.toml"), text).unwrap();
        let names = |host| {
            one_host(&config, host)
                .map(|h| h.into_keys().map(|k| k.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(names("b"), Ok(vec!["b".to_string()]));
        assert_eq!(
            names("nope"),
            Err("no host `nope` in the pool; its hosts: a, b".to_string())
        );
        assert_eq!(
            names("ssh://x@y"),
            Err(
                "the config has several hosts; name one of them (a, b) rather than a url"
                    .to_string()
            )
        );
    }
}
