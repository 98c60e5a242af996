//! The examples users copy: every `pikaci.toml` example in README.md and docs/ loads, and
//! the ones this machine runs cheaply (host jobs only) pass in a small Rust crate.

use std::path::Path;

use crate::harness::{Repo, Run};

/// The fenced ```toml blocks of a Markdown file, with the line each starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some((n + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A block is a pikaci config unless its first line names another file (`# Cargo.toml`).
fn is_pikaci_config(block: &str) -> bool {
    match block.lines().next().and_then(|l| l.strip_prefix("# ")) {
        Some(name) if name.ends_with(".toml") => name == "pikaci.toml",
        _ => true,
    }
}

fn examples() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut examples = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for (line, block) in toml_blocks(&text) {
            if is_pikaci_config(&block) {
                examples.push((format!("{name}:{line}"), block));
            }
        }
    }
    examples
}

/// A crate small enough to build in seconds, offline.
fn rust_repo(config: &str) -> Repo {
    let repo = Repo::new(config);
    repo.write(
        "Cargo.toml",
        "[package]\nname = \"example\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    repo.write(
        "src/lib.rs",
        "pub fn two() -> u32 { 2 }\n#[test]\nfn two_is_two() { assert_eq!(two(), 2); }\n",
    );
    repo.write(".gitignore", ".pikaci/\ntarget/\n");
    repo.commit("a crate");
    repo
}

#[test]
fn every_pikaci_toml_example_loads_and_host_examples_run() {
    let examples = examples();
    assert!(examples.len() >= 6, "found {}", examples.len());
    let mut ran = Vec::new();
    for (place, block) in &examples {
        let repo = rust_repo(block);
        let targets = repo.pikaci(&["targets"]);
        assert_eq!(
            targets.code(),
            0,
            "{place} does not load:\n{}",
            targets.stderr()
        );
        let listing = targets.stdout();
        let host_only = !listing.contains("[microvm]") && !listing.contains("[incus]");
        let has_jobs = listing.contains("[host]");
        if has_jobs && host_only && !block.contains("[inputs]") && !block.contains("secrets") {
            let mut command = repo.command(&["run", "--no-progress"]);
            let run = Run::of(&mut command);
            assert_eq!(
                run.code(),
                0,
                "{place} fails:\n{}\n{}",
                run.stdout(),
                run.stderr()
            );
            assert!(run.stdout().contains("passed"), "{place}: {}", run.stdout());
            ran.push(place.clone());
        }
    }
    assert!(
        ran.iter().any(|place| place.starts_with("README.md")),
        "the README's host example runs: {ran:?}"
    );
}

#[test]
fn the_readme_opens_with_the_repositorys_commands_and_sends_users_to_docs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let commands = "```sh\nbash scripts/demo.sh ";
    let top = readme.find("```").unwrap();
    assert!(
        readme[top..].starts_with(commands),
        "the two commands come first"
    );
    let development = &readme[readme.find("## Development").unwrap()..];
    let block = development.find("```").unwrap();
    assert!(development[block..].starts_with(commands));
    assert!(development.contains("bash scripts/test.sh"));
    for section in [
        "## Install",
        "## From zero to green",
        "nix run github:",
        "cargo install",
    ] {
        assert!(readme.contains(section), "{section}");
    }
    assert!(
        !readme.contains("../shared"),
        "users do not have the team's workspace"
    );
    assert!(readme.trim_end().lines().last().unwrap().contains("docs/"));
    // The toolchain the examples use is defined where they use it.
    assert!(readme.contains("packages.x86_64-linux.ci-toolchain ="));
}
