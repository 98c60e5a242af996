//! `pikaci doctor`: checks, on the CI host and the guest host, what each configured
//! backend needs, and says how to fix what is missing. The generic checks (git, Nix,
//! reaching the host) live here; each backend's own are reached through
//! [`crate::backend::descriptor`], so they check what that backend's run will use.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{BackendKind, Config, HostSpec, PoolHost};
use crate::transport::{Local, Transport};

/// Oldest Nix pikaci's `nix build --json -o` use is known to work with.
const MIN_NIX: (u32, u32) = (2, 8);
const STEP: Duration = crate::transport::Step::Probe.duration();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{label}  {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        outcome: Outcome::Ok,
        detail: detail.into(),
        fix: None,
    }
}

/// A failed check. When `detail` shows a permission this user lacks, the fix is how to
/// grant it (the hint pikaci's own errors carry, src/hint.rs).
pub(crate) fn fail(
    name: impl Into<String>,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    let detail = detail.into();
    let fix = match crate::hint::for_text(&detail) {
        Some(hint) => format!("{}: {}", hint.missing, hint.grant),
        None => fix.into(),
    };
    Check {
        name: name.into(),
        outcome: Outcome::Fail,
        detail,
        fix: Some(fix),
    }
}

/// This user can write the state dir `root` (a run as root may have made it root's).
pub fn state_dir(root: &std::path::Path) -> Check {
    let name = format!("state dir {}", root.display());
    match crate::hint::unwritable_state_dir(root) {
        None => ok(name, "writable"),
        Some(text) => {
            let (detail, fix) = text.split_once("\nhint: ").unwrap_or((&text, ""));
            fail(name, detail, fix)
        }
    }
}

/// Runs every check the configuration needs: on this machine, then on each of `hosts`.
pub fn run_checks<'a>(
    config: &Config,
    hosts: impl IntoIterator<Item = &'a PoolHost>,
    cancel: &Cancel,
) -> Vec<Check> {
    let backends: BTreeSet<BackendKind> = config.jobs.values().map(|j| j.backend).collect();
    let mut checks = vec![tool(
        &Local,
        "git",
        &["--version"],
        "local",
        "apt-get install git (or your system's package)",
    )];
    if !config.inputs.is_empty() {
        checks.push(nix(&Local, "local"));
    }
    let guests: Vec<BackendKind> = backends
        .iter()
        .copied()
        .filter(|b| crate::backend::descriptor(*b).on_host)
        .collect();
    if guests.is_empty() {
        return checks;
    }
    for host in hosts {
        checks.extend(host_checks(config, host, &guests, cancel));
    }
    checks
}

/// How checks name a pool host: `builder-a (ssh://ci@a)`; the implicit host of a config
/// without `[hosts]` by its url alone, as before pools.
fn host_label(host: &PoolHost, named: Option<&str>) -> String {
    match named {
        Some(name) => format!("{name} ({})", host.spec),
        None => host.spec.to_string(),
    }
}

/// The checks of the guest backends on one host, after reaching it. On a named host,
/// every check says which: those that do not name it already get ` on NAME`.
fn host_checks(
    config: &Config,
    host: &PoolHost,
    guests: &[BackendKind],
    cancel: &Cancel,
) -> Vec<Check> {
    let named = crate::report::ran_on::named_host(Some(host.name.as_str()));
    let on = host_label(host, named);
    let mut checks = Vec::new();
    let transport = match crate::transport::connect(&host.spec, &config.ssh, cancel) {
        Ok(transport) => {
            if host.spec != HostSpec::Local {
                checks.push(ok(format!("reach {on}"), "connected"));
            }
            transport
        }
        Err(e) => {
            let fix = "check the host, user, port, [ssh] identity-file and known-hosts-file; try `ssh -v` by hand";
            checks.push(fail(format!("reach {on}"), crate::error::chain(&e), fix));
            return checks;
        }
    };
    // The implicit host's checks say `on URL` as the transport names it, as before pools.
    let on = named.map_or_else(|| transport.host(), |_| on);
    let doctor_host = crate::backend::DoctorHost {
        config,
        transport: transport.as_ref(),
        on: &on,
        cancel,
    };
    for kind in guests {
        checks.extend((crate::backend::descriptor(*kind).doctor)(&doctor_host));
    }
    if let Some(name) = named {
        for check in checks.iter_mut().filter(|c| !c.name.contains(&on)) {
            check.name.push_str(&format!(" on {name}"));
        }
    }
    checks
}

/// Runs `argv` with doctor's step deadline; its trimmed stdout, or the error without the
/// `on HOST: ` the check's name already says.
pub(crate) fn run(transport: &dyn Transport, argv: Argv) -> Result<String, String> {
    run_within(transport, argv, STEP)
}

pub(crate) fn run_within(
    transport: &dyn Transport,
    argv: Argv,
    step: Duration,
) -> Result<String, String> {
    let cancel = Cancel::new();
    transport
        .run(&argv, b"", Instant::now() + step, &cancel)
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        // The check's name already says where it ran.
        .map_err(|e| e.without_host())
}
fn tool(transport: &dyn Transport, program: &str, args: &[&str], on: &str, fix: &str) -> Check {
    let name = format!("{program} on {on}");
    match run(transport, Argv::new(program).args(args)) {
        Ok(version) => ok(name, version.lines().next().unwrap_or("").to_string()),
        Err(e) => fail(name, e, fix),
    }
}

/// `sh -c COMMAND_PRESENT sh PROGRAM`: where PROGRAM is on the PATH, if it is.
pub(crate) const COMMAND_PRESENT: &str = r#"command -v "$1""#;

pub(crate) fn on_path(transport: &dyn Transport, program: &str, on: &str, fix: &str) -> Check {
    let name = format!("{program} on {on}");
    let argv = Argv::new("sh").args(["-c", COMMAND_PRESENT, "sh", program]);
    match run(transport, argv) {
        Ok(path) => ok(name, path),
        Err(_) => fail(name, "not found on PATH", fix),
    }
}

pub(crate) fn nix(transport: &dyn Transport, on: &str) -> Check {
    let name = format!("nix on {on}");
    let fix = "install Nix 2.8 or newer (Debian: apt-get install nix-bin)";
    let version = match run(transport, Argv::new("nix").arg("--version")) {
        Ok(version) => version,
        Err(e) => return fail(name, e, fix),
    };
    let numbers: Vec<u32> = version
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .split('.')
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    if numbers.len() < 2 || (numbers[0], numbers[1]) < MIN_NIX {
        return fail(
            name,
            format!("{version} is older than {}.{}", MIN_NIX.0, MIN_NIX.1),
            fix,
        );
    }
    let flakes = Argv::new("nix").args([
        "--extra-experimental-features",
        "nix-command flakes",
        "eval",
        "--expr",
        "1",
    ]);
    match run(transport, flakes) {
        Ok(_) => ok(name, format!("{version}, flakes usable")),
        Err(e) => fail(
            name,
            format!("{version}, but `nix eval` with flakes fails: {e}"),
            "check nix.conf and the Nix daemon",
        ),
    }
}
