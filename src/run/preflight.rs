//! What a plan needs from the configuration and pikaci's environment, checked before a
//! run starts: a missing secret or guest flake is the user's to fix (exit 2), not a job
//! that errors halfway through the run.

use crate::config::{BackendKind, Config};
use crate::plan::Plan;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "job `{job}` needs the secret `{name}`, which is not set in pikaci's environment; \
         export it before `pikaci run` (e.g. `{name}=… pikaci run`), or remove it from \
         jobs.{job}.secrets in {config}"
    )]
    MissingSecret {
        job: String,
        name: String,
        config: String,
    },
    #[error(
        "job `{job}` uses the microvm backend, but this pikaci was not built with Nix and \
         does not know the flake that provides `lib.mkGuest`; set \
         `backends.microvm.pikaci-flake = \"github:pikaci/pikaci\"` (or your pinned \
         reference) in {config}, or `backends.microvm.runner` (`--microvm-runner`) to a \
         prebuilt runner (docs/nix.md)"
    )]
    NoGuestFlake { job: String, config: String },
}

/// Checks every job the plan will execute (skipped jobs need nothing).
pub fn check(config: &Config, plan: &Plan) -> Result<(), PreflightError> {
    check_with(config, plan, crate::nix::BUILT_FROM, |name| {
        std::env::var_os(name).is_some()
    })
}

fn check_with(
    config: &Config,
    plan: &Plan,
    built_from: Option<&str>,
    is_set: impl Fn(&str) -> bool,
) -> Result<(), PreflightError> {
    let file = || config.path.display().to_string();
    let microvm = &config.backends.microvm;
    let has_guest =
        microvm.runner.is_some() || microvm.pikaci_flake.is_some() || built_from.is_some();
    for node in &plan.jobs {
        let job = &node.job;
        if let Some(name) = job.secrets.iter().find(|name| !is_set(name)) {
            return Err(PreflightError::MissingSecret {
                job: job.id.to_string(),
                name: name.clone(),
                config: file(),
            });
        }
        if job.backend == BackendKind::Microvm && !has_guest {
            return Err(PreflightError::NoGuestFlake {
                job: job.id.to_string(),
                config: file(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(config: &Config) -> Plan {
        Plan::build(config, &[], |_| None).unwrap()
    }

    #[test]
    fn secrets_must_be_set_and_microvm_jobs_need_a_guest() {
        let config = crate::config::parse(
            Path::new("/r/pikaci.toml"),
            "[jobs.a]\nbackend = \"host\"\ncommand = \"true\"\nsecrets = [\"TOKEN\"]\n",
        )
        .unwrap();
        let missing = check_with(&config, &plan(&config), None, |_| false).unwrap_err();
        assert_eq!(
            missing,
            PreflightError::MissingSecret {
                job: "a".into(),
                name: "TOKEN".into(),
                config: "/r/pikaci.toml".into()
            }
        );
        assert!(check_with(&config, &plan(&config), None, |_| true).is_ok());

        let vm = "[jobs.vm]\nbackend = \"microvm\"\ncommand = \"true\"\n";
        let config = crate::config::parse(Path::new("/r/pikaci.toml"), vm).unwrap();
        let err = check_with(&config, &plan(&config), None, |_| true).unwrap_err();
        assert!(err.to_string().contains("pikaci-flake"), "{err}");
        assert!(check_with(&config, &plan(&config), Some("github:x/y"), |_| true).is_ok());
        let pinned = format!("[backends.microvm]\npikaci-flake = \"path:/p\"\n{vm}");
        let config = crate::config::parse(Path::new("/r/pikaci.toml"), &pinned).unwrap();
        assert!(check_with(&config, &plan(&config), None, |_| true).is_ok());
    }
}
