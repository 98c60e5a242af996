//! Store-path installables: `nix build --json` of a bare `/nix/store/…` path prints
//! `[{"path": …}]`, no `drvPath`; a runner or an input given that way works end to end.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Repo, processes_left_under, run_tool};

/// Builds `installable` and returns its one output path (None: no Nix, outside CI).
fn store_path_of(installable: &str) -> Option<String> {
    let out = run_tool(
        Command::new("nix")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["build", "--json", "--no-link", installable]),
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(json[0]["outputs"]["out"].as_str().unwrap().to_string())
}

/// A store path holding `bin/pikaci-store-hello`.
fn hello_in_store(dir: &Path) -> Option<String> {
    std::fs::write(
        dir.join("flake.nix"),
        r#"{ outputs = { self }: { hello = derivation {
  name = "pikaci-store-hello"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir -p $out/bin && echo 'echo hello from the store' > $out/bin/pikaci-store-hello && /bin/chmod +x $out/bin/pikaci-store-hello" ];
}; }; }"#,
    )
    .unwrap();
    store_path_of(&format!("path:{}#hello", dir.display()))
}

#[test]
fn an_input_that_is_a_store_path_is_rooted_and_on_path() {
    let flake = tempfile::tempdir().unwrap();
    let Some(hello) = hello_in_store(flake.path()) else {
        return;
    };
    let repo = Repo::new(&format!(
        "[defaults]\nbackend = \"host\"\n[inputs]\nhello = \"{hello}\"\n\
         [jobs.a]\ninputs = [\"hello\"]\ncommand = \"pikaci-store-hello\"\n"
    ));
    repo.pikaci(&["run", "a"]).expect(0);
    assert_eq!(repo.job("a").1, "hello from the store\n");
    let root = std::fs::read_link(repo.latest_run().join("gcroots/input-hello")).unwrap();
    assert_eq!(root, Path::new(&hello), "the out-link roots the store path");
}

#[test]
fn a_runner_that_is_a_store_path_boots() {
    // Built here: on a host with a store of its own the path would not exist.
    let Some(mut testbed) = crate::harness::testbed_microvm_shared_store() else {
        return;
    };
    let Some(runner) = store_path_of(&testbed.runner) else {
        return;
    };
    testbed.runner = runner;
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(work.path(), "[jobs.a]\ncommand = \"echo booted\"\n"));
    repo.pikaci(&["run", "a"]).expect(0);
    assert_eq!(repo.job("a").1, "booted\n");
    let left = processes_left_under(work.path(), Duration::from_secs(10));
    assert_eq!(left, Vec::<String>::new());
}
