//! `pikaci doctor`: checks, on the CI host and the guest host, what each configured
//! backend needs, and says how to fix what is missing.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{BackendKind, Config, HostSpec};
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

fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        outcome: Outcome::Ok,
        detail: detail.into(),
        fix: None,
    }
}

/// A failed check. When `detail` shows a permission this user lacks, the fix is how to
/// grant it (the hint pikaci's own errors carry, src/hint.rs).
fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
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

/// Runs every check the configuration needs. `host` overrides `defaults.host`.
pub fn run_checks(config: &Config, host: &HostSpec, cancel: &Cancel) -> Vec<Check> {
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
        .filter(|b| *b != BackendKind::Host)
        .collect();
    if guests.is_empty() {
        return checks;
    }
    let transport = match crate::transport::connect(host, &config.ssh, cancel) {
        Ok(transport) => {
            if *host != HostSpec::Local {
                checks.push(ok(format!("reach {host}"), "connected"));
            }
            transport
        }
        Err(e) => {
            let fix = "check the host, user, port, [ssh] identity-file and known-hosts-file; try `ssh -v` by hand";
            checks.push(fail(format!("reach {host}"), crate::error::chain(&e), fix));
            return checks;
        }
    };
    let on = transport.host();
    if guests.contains(&BackendKind::Microvm) {
        checks.push(nix(transport.as_ref(), &on));
        let virtiofsd_fix = "install virtiofsd (e.g. `cargo install virtiofsd --locked` with libseccomp-dev and libcap-ng-dev)";
        checks.push(on_path(
            transport.as_ref(),
            &config.backends.microvm.virtiofsd,
            &on,
            virtiofsd_fix,
        ));
        let hypervisor = hypervisor_program(&config.backends.microvm.hypervisor);
        let fix = format!(
            "install the {} hypervisor on the host",
            config.backends.microvm.hypervisor
        );
        checks.push(on_path(transport.as_ref(), &hypervisor, &on, &fix));
        checks.push(kvm(transport.as_ref(), &on));
    }
    if guests.contains(&BackendKind::Incus) {
        checks.extend(incus(transport.as_ref(), &on, config));
    }
    checks
}

fn run(transport: &dyn Transport, argv: Argv) -> Result<String, String> {
    let cancel = Cancel::new();
    transport
        .run(&argv, b"", Instant::now() + STEP, &cancel)
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .map_err(|e| {
            // The check's name already says where it ran.
            let text = crate::error::chain(&e);
            let prefix = format!("on {}: ", transport.host());
            text.strip_prefix(&prefix)
                .map_or(text.clone(), str::to_string)
        })
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

fn on_path(transport: &dyn Transport, program: &str, on: &str, fix: &str) -> Check {
    let name = format!("{program} on {on}");
    let argv = Argv::new("sh").args(["-c", COMMAND_PRESENT, "sh", program]);
    match run(transport, argv) {
        Ok(path) => ok(name, path),
        Err(_) => fail(name, "not found on PATH", fix),
    }
}

fn nix(transport: &dyn Transport, on: &str) -> Check {
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

fn kvm(transport: &dyn Transport, on: &str) -> Check {
    let name = format!("KVM on {on}");
    let test = |script: &str| run(transport, Argv::new("sh").args(["-c", script])).is_ok();
    if !test("test -e /dev/kvm") {
        return fail(
            name,
            "/dev/kvm is missing",
            "enable virtualisation (KVM) in the firmware or the outer hypervisor",
        );
    }
    if !test("test -r /dev/kvm && test -w /dev/kvm") {
        let hint = crate::hint::KVM_DENIED;
        return fail(name, hint.missing, hint.grant);
    }
    ok(name, "/dev/kvm is usable")
}

fn incus(transport: &dyn Transport, on: &str, config: &Config) -> Vec<Check> {
    let settings = &config.backends.incus;
    let name = format!("incus on {on}");
    let fix = "install Incus and start incusd; the user needs access to its socket";
    if let Err(e) = run(transport, Argv::new("incus").args(["query", "/1.0"])) {
        return vec![fail(name, e, fix)];
    }
    let mut checks = vec![ok(name, "incusd answers")];
    let alias = &settings.image;
    let name = format!("image alias {alias} in project {}", settings.project);
    let list = Argv::new("incus").args([
        "image",
        "list",
        "--project",
        &settings.project,
        alias,
        "--format",
        "json",
    ]);
    let fix =
        "build and import the guest image: pikaci image build && pikaci image import --alias ALIAS";
    checks.push(match run(transport, list) {
        Ok(json) => match exact_alias(&json, alias) {
            Ok(0) => fail(name, "no image has exactly this alias", fix),
            Ok(1) => ok(name, "present"),
            Ok(n) => fail(
                name,
                format!("{n} images have this alias"),
                "remove all but one",
            ),
            Err(e) => fail(
                name,
                format!("incus printed JSON pikaci cannot read: {e}"),
                fix,
            ),
        },
        Err(e) => fail(name, e, fix),
    });
    checks
}

/// How many images carry exactly `alias` (the list filter also matches prefixes).
fn exact_alias(json: &str, alias: &str) -> Result<usize, String> {
    let images: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(images
        .iter()
        .filter(|image| {
            image["aliases"]
                .as_array()
                .is_some_and(|aliases| aliases.iter().any(|a| a["name"] == alias))
        })
        .count())
}

/// The program microvm.nix runs for a hypervisor name.
fn hypervisor_program(hypervisor: &str) -> String {
    match hypervisor {
        "qemu" => format!("qemu-system-{}", std::env::consts::ARCH),
        "kvmtool" => "lkvm".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_must_match_exactly() {
        let json =
            r#"[{"aliases":[{"name":"pikaci/dev-old"}]},{"aliases":[{"name":"pikaci/dev"}]}]"#;
        assert_eq!(exact_alias(json, "pikaci/dev"), Ok(1));
        assert_eq!(exact_alias(json, "pikaci/de"), Ok(0));
        assert!(exact_alias("{oops", "x").is_err());
    }

    #[test]
    fn hypervisor_programs() {
        assert_eq!(hypervisor_program("cloud-hypervisor"), "cloud-hypervisor");
        assert!(hypervisor_program("qemu").starts_with("qemu-system-"));
    }
}
