//! Every kind of configuration error, through the real binary: exit code 2 and a
//! message naming file:line:col, the key and what is allowed.

use crate::harness::{Repo, redact};

fn config_error(config: &str) -> String {
    let repo = Repo::new(config);
    let run = repo.pikaci(&["run"]);
    run.expect(2);
    assert!(
        run.stdout().is_empty(),
        "nothing on stdout: {}",
        run.stdout()
    );
    redact(&run.stderr(), &repo)
}

#[test]
fn unknown_key() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\ntimout = \"1m\"\n"
    ));
}

#[test]
fn bad_id() {
    insta::assert_snapshot!(config_error("[jobs.\"../etc\"]\ncommand = \"true\"\n"));
}

#[test]
fn unknown_job_reference() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\n[targets.t]\njobs = [\"b\"]\n"
    ));
}

#[test]
fn unknown_input_reference() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\ninputs = [\"rust\"]\n"
    ));
}

#[test]
fn needs_cycle() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\nneeds = [\"b\"]\n[jobs.b]\ncommand = \"true\"\nneeds = [\"a\"]\n"
    ));
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\ntimeout = \"soon\"\n"
    ));
}

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pikaci"))
        .arg("run")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "[DIR]");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_target_on_command_line() {
    let repo = Repo::new("[jobs.a]\ncommand = \"true\"\nbackend = \"host\"\n");
    let run = repo.pikaci(&["run", "nope"]);
    run.expect(2);
    insta::assert_snapshot!(run.stderr());
}

#[test]
fn a_microvm_job_without_a_guest_flake_is_a_configuration_error() {
    // This binary is built by cargo, so it knows no flake of its own (a Nix build does).
    let repo = Repo::new("[jobs.vm]\nbackend = \"microvm\"\ncommand = \"true\"\n");
    let run = repo.pikaci(&["run"]);
    run.expect(2);
    insta::assert_snapshot!(redact(&run.stderr(), &repo), @r#"error: job `vm` uses the microvm backend, but this pikaci was not built with Nix and does not know the flake that provides `lib.mkGuest`; set `backends.microvm.pikaci-flake = "github:pikaci/pikaci"` (or your pinned reference) in [REPO]/pikaci.toml, or `backends.microvm.runner` (`--microvm-runner`) to a prebuilt runner (docs/nix.md)"#);
    assert!(!repo.state().join("runs").exists(), "nothing ran");
    // A prebuilt runner is enough: then the run starts (and fails later, here, for the
    // runner that does not exist; that is not a configuration error).
    let with_runner = repo.pikaci(&["run", "--microvm-runner", "path:/nonexistent#runner"]);
    assert_eq!(with_runner.code(), 3, "{}", with_runner.stderr());
}

#[test]
fn a_bad_incus_limit_value_says_what_is_allowed() {
    insta::assert_snapshot!(config_error(
        "[backends.incus]\nlimits = { \"bad key\" = true }\n"
    ));
}

#[test]
fn absurd_timeout() {
    insta::assert_snapshot!(config_error(
        "[jobs.a]\ncommand = \"true\"\ntimeout = \"18446744073709551615s\"\n"
    ));
}

#[test]
fn absurd_connect_timeout() {
    let error =
        config_error("[ssh]\nconnect-timeout = \"1000years\"\n[jobs.a]\ncommand = \"true\"\n");
    assert!(error.contains("pikaci.toml:2:19:"), "{error}");
    assert!(error.contains("must be at most 365 days"), "{error}");
}

#[test]
fn id_too_long_for_a_file_name() {
    let id = "j".repeat(300);
    insta::assert_snapshot!(config_error(&format!("[jobs.{id}]\ncommand = \"true\"\n")));
}
