//! Commands that set pikaci up: doctor, init, completions, man.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, DoctorArgs, Global, InitArgs};
use super::context::load_config;
use crate::cancel::Cancel;
use crate::config::{CONFIG_FILE, parse_host};
use crate::doctor::{Outcome, run_checks};
use crate::error::Error;

pub fn doctor(global: &Global, args: DoctorArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let host = match &args.host {
        Some(text) => parse_host(text).map_err(Error::Usage)?,
        None => config.defaults.host.clone(),
    };
    let checks = run_checks(&config, &host, &Cancel::new());
    for check in &checks {
        crate::outln!("{check}");
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed > 0 {
        crate::outln!("{failed} of {} checks failed", checks.len());
        return Ok(1);
    }
    crate::outln!("all {} checks passed", checks.len());
    Ok(0)
}

pub fn init(args: InitArgs) -> Result<u8, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::infra("reading the current directory", e))?;
    let root = git_top(&cwd).unwrap_or(cwd);
    let path = root.join(CONFIG_FILE);
    if path.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    let text = starter(&root);
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| Error::infra(&format!("writing {}", path.display()), e))?;
    crate::outln!(
        "wrote {}; try `pikaci targets` and `pikaci run`",
        path.display()
    );
    Ok(0)
}

fn git_top(dir: &Path) -> Option<PathBuf> {
    let out = crate::git::git_text(dir, &["rev-parse", "--show-toplevel"]).ok()?;
    Some(PathBuf::from(out.trim()))
}

/// A commented starter that runs as written: jobs guessed from the files present.
fn starter(root: &Path) -> String {
    let mut jobs = String::new();
    let mut names = Vec::new();
    if root.join("Cargo.toml").exists() {
        names.extend(["clippy", "test"]);
        jobs.push_str(
            "[jobs.clippy]\ncommand = \"cargo clippy --all-targets -- -D warnings\"\n\
             writable-workspace = true   # cargo writes target/\n\n\
             [jobs.test]\ncommand = \"cargo test\"\nneeds = [\"clippy\"]\nwritable-workspace = true\n\n",
        );
    }
    if root.join("flake.nix").exists() {
        names.push("flake-check");
        jobs.push_str("[jobs.flake-check]\ncommand = \"nix flake check\"\n\n");
    }
    if names.is_empty() {
        names.push("hello");
        jobs.push_str("[jobs.hello]\ncommand = \"echo hello from $PIKACI_JOB; ls\"\n\n");
    }
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "# pikaci configuration. Reference: docs/configuration.md in the pikaci repository.\n\
         \n\
         [defaults]\n\
         # Where jobs run: \"host\" (no isolation, on this machine), \"microvm\" or \"incus\".\n\
         backend = \"host\"\n\
         # Deadline for each job; a job's own `timeout` overrides it.\n\
         timeout = \"20m\"\n\
         \n\
         # [inputs]\n\
         # toolchain = \".#ci-toolchain\"   # a Nix installable; jobs list it in `inputs`\n\
         \n\
         {jobs}\
         [targets.ci]\n\
         description = \"Everything\"\n\
         # paths = [\"src/**\"]   # run only when these files changed\n\
         jobs = [{}]\n",
        list.join(", ")
    )
}

pub fn completions(args: CompletionsArgs) -> Result<u8, Error> {
    // Into memory first: the generator panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "pikaci", &mut script);
    crate::console::out(&script);
    Ok(0)
}

pub fn man() -> Result<u8, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::infra("rendering the man page", e))?;
    crate::console::out(&page);
    Ok(0)
}
