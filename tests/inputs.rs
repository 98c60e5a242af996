//! `[inputs]`: real `nix build --json -o GCROOT` of a flake with no inputs.

use crate::harness::{Repo, Run, nix_available};

fn repo_with_flake(config: &str) -> Repo {
    let repo = Repo::new(config);
    let flake =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/flake.nix")).unwrap();
    repo.write("tools/flake.nix", &flake);
    repo.commit("tools");
    repo
}

fn nix_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env(
        "NIX_CONFIG",
        "experimental-features = nix-command flakes\nsubstituters =",
    )
}

#[test]
fn inputs_are_built_once_rooted_and_put_on_path() {
    if !nix_available() {
        return;
    }
    let repo = repo_with_flake(
        "[defaults]\nbackend = \"host\"\n\
         [inputs]\ntools = \"./tools#tools\"\nsame = \"./tools#tools\"\n\
         [jobs.a]\ninputs = [\"tools\"]\ncommand = \"pikaci-demo-hello\"\n\
         [jobs.b]\ninputs = [\"same\"]\ncommand = \"command -v pikaci-demo-hello\"\n",
    );
    let run = Run::of(nix_env(
        &mut repo.command(&["run", "a", "b", "--output", "jsonl"]),
    ));
    run.expect(0);
    let builds = run.stdout().matches("\"type\":\"prepare_started\"").count();
    assert_eq!(builds, 1, "two inputs with one installable build once");
    let run = repo.latest_run();
    let log = std::fs::read_to_string(run.join("jobs/a/guest.log")).unwrap();
    assert!(
        log.starts_with("hello from a Nix-built input: /nix/store/"),
        "{log}"
    );
    let root = std::fs::read_link(run.join("gcroots/input-same")).unwrap();
    assert!(
        root.starts_with("/nix/store"),
        "GC root points into the store: {}",
        root.display()
    );
    let b_log = std::fs::read_to_string(run.join("jobs/b/guest.log")).unwrap();
    assert_eq!(
        b_log.trim(),
        root.join("bin/pikaci-demo-hello").display().to_string()
    );
}

#[test]
fn failing_build_is_an_infrastructure_error_with_the_log_tail() {
    if !nix_available() {
        return;
    }
    let repo = repo_with_flake(
        "[defaults]\nbackend = \"host\"\n\
         [inputs]\nbroken = \"./tools#does-not-exist\"\n\
         [jobs.a]\ninputs = [\"broken\"]\ncommand = \"true\"\n",
    );
    let run = Run::of(nix_env(&mut repo.command(&["run", "a"])));
    run.expect(3);
    let stdout = run.stdout();
    assert!(
        stdout.contains("does-not-exist"),
        "the nix error reaches the user: {stdout}"
    );
    let status = repo.read_json(&repo.latest_run().join("jobs/a/status.json"));
    assert_eq!(status["status"], "skipped");
    assert_eq!(status["message"], "not run: input `broken` did not build");
    let run = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(run["status"], "error");
    assert!(
        run["message"].as_str().unwrap().contains("build --json -o"),
        "{run}"
    );
}
