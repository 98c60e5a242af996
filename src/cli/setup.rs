//! Commands that set pikaci up: doctor, completions, man (init: `init.rs`).

use super::args::{CompletionsArgs, DoctorArgs, Global};
use super::context::{load_config, state_dir};
use crate::cancel::Cancel;
use crate::config::one_host;
use crate::doctor::{Outcome, run_checks};
use crate::error::Error;

pub fn doctor(global: &Global, args: DoctorArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let hosts = match &args.host {
        Some(text) => one_host(&config, text).map_err(|e| Error::Usage(format!("--host: {e}")))?,
        None => config.hosts.clone(),
    };
    let mut checks = run_checks(&config, hosts.values(), &Cancel::new());
    checks.insert(
        1,
        crate::doctor::state_dir(state_dir(global, &config).root()),
    );
    for check in &checks {
        crate::outln!("{check}");
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    crate::outln!("{}", summary(failed, checks.len()));
    Ok(if failed > 0 { 1 } else { 0 })
}

/// doctor's closing line.
fn summary(failed: usize, total: usize) -> String {
    match (failed, total) {
        (0, 0) => "nothing to check".into(),
        (0, 1) => "the 1 check passed".into(),
        (0, n) => format!("all {n} checks passed"),
        (1, 1) => "the 1 check failed".into(),
        (f, n) => format!("{f} of {n} checks failed"),
    }
}

/// The registration script of dynamic completion: the shell calls `pikaci` for the
/// candidates, so target, job and run names come from the repository at hand.
pub fn completions(args: CompletionsArgs) -> Result<u8, Error> {
    let name = args.shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let shell = shells
        .completer(&name)
        .ok_or_else(|| Error::Usage(format!("no completion support for {name}")))?;
    // Into memory first, then out without panicking on a closed pipe.
    let mut script = Vec::new();
    shell
        .write_registration(
            super::COMPLETE_VAR,
            "pikaci",
            "pikaci",
            "pikaci",
            &mut script,
        )
        .map_err(|e| Error::infra("writing the completion script", e))?;
    crate::console::out(&script);
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn doctor_counts_in_the_singular_and_the_plural() {
        assert_eq!(super::summary(0, 1), "the 1 check passed");
        assert_eq!(super::summary(0, 6), "all 6 checks passed");
        assert_eq!(super::summary(1, 1), "the 1 check failed");
        assert_eq!(super::summary(2, 6), "2 of 6 checks failed");
        assert_eq!(super::summary(0, 0), "nothing to check");
    }
}
