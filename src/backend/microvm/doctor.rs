//! `pikaci doctor` for microVM jobs: what a microVM run uses on its host. Always Nix (it
//! builds the runner there) and virtiofsd (the supervisor starts one per share); then
//! either the configured runner, or the pikaci flake the generated guest flake calls with
//! the hypervisor and KVM it needs. A runner brings its own hypervisor, so the hypervisor
//! and KVM are not checked with one.

use std::time::Duration;

use crate::argv::Argv;
use crate::backend::DoctorHost;
use crate::config::MicrovmSettings;
use crate::doctor::{Check, fail, nix, ok, on_path, run, run_within};
use crate::transport::Transport;

/// Evaluating a runner may evaluate a NixOS system.
const EVAL_STEP: Duration = Duration::from_secs(180);

pub fn checks(host: &DoctorHost) -> Vec<Check> {
    let settings = &host.config.backends.microvm;
    let (transport, on) = (host.transport, host.on);
    let mut checks = vec![nix(transport, on)];
    let virtiofsd_fix = "install virtiofsd (e.g. `cargo install virtiofsd --locked` with libseccomp-dev and libcap-ng-dev)";
    checks.push(on_path(transport, &settings.virtiofsd, on, virtiofsd_fix));
    match &settings.runner {
        Some(runner) => checks.push(runner_check(transport, runner, on)),
        None => {
            checks.push(pikaci_flake(settings));
            let hypervisor = hypervisor_program(&settings.hypervisor);
            let fix = format!(
                "install the {} hypervisor on the host, or set backends.microvm.runner",
                settings.hypervisor
            );
            checks.push(on_path(transport, &hypervisor, on, &fix));
            checks.push(kvm(transport, on));
        }
    }
    checks
}

/// The runner the run builds: an installable outside the repository is evaluated on the
/// host (one inside it, `.#…`, is built from the run's snapshot, which doctor lacks).
fn runner_check(transport: &dyn Transport, runner: &str, on: &str) -> Check {
    let name = format!("runner {runner}");
    if runner == "." || runner.starts_with(".#") || runner.starts_with("./") {
        return ok(
            name,
            "in the repository: built from the run's snapshot (not evaluated by doctor)",
        );
    }
    let fix = "set backends.microvm.runner to an installable that names a microvm.nix runner \
               (e.g. `path:/abs/flake#runner`), or remove it to use the generated guest flake";
    match run_within(transport, runner_eval_argv(runner), EVAL_STEP) {
        Ok(kind) if kind == "derivation" => ok(name, format!("evaluates on {on}")),
        Ok(kind) => fail(name, format!("is a {kind}, not a derivation"), fix),
        Err(e) => fail(name, format!("does not evaluate on {on}: {e}"), fix),
    }
}

/// `nix eval` of the runner's type, as the run's `nix build` would find it.
fn runner_eval_argv(runner: &str) -> Argv {
    Argv::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(["eval", "--raw"])
        .arg(runner)
        .args(["--apply", "r: r.type or (builtins.typeOf r)"])
}

/// The flake whose `lib.mkGuest` the generated guest flake calls.
fn pikaci_flake(settings: &MicrovmSettings) -> Check {
    let name = "pikaci-flake";
    match crate::nix::pikaci_flake(settings, None) {
        Ok(flake) => ok(name, flake),
        // The run stops with `NoPikaciFlake`, whose text is this detail and fix.
        Err(crate::nix::NoPikaciFlake) => fail(
            name,
            "not set, and this pikaci was not built by its flake, so it cannot name one for the guest",
            "set backends.microvm.pikaci-flake (the flake that provides lib.mkGuest, e.g. \
             `github:pikaci/pikaci/REV`) or backends.microvm.runner",
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
    fn hypervisor_programs() {
        assert_eq!(hypervisor_program("cloud-hypervisor"), "cloud-hypervisor");
        assert!(hypervisor_program("qemu").starts_with("qemu-system-"));
    }

    #[test]
    fn the_runner_is_evaluated_as_the_run_builds_it() {
        insta::assert_snapshot!(runner_eval_argv("path:/t/runner#runner"), @"nix --extra-experimental-features 'nix-command flakes' eval --raw 'path:/t/runner#runner' --apply 'r: r.type or (builtins.typeOf r)'");
    }
}
