//! `pikaci init`: a commented starter `pikaci.toml` that passes as written.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::args::{Global, InitArgs};
use super::context::ignore_state;
use crate::config::CONFIG_FILE;
use crate::error::Error;
use crate::state::StateDir;

pub fn init(global: &Global, args: InitArgs) -> Result<u8, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::infra("reading the current directory", e))?;
    let path = match &global.config {
        Some(path) => cwd.join(path),
        None => git_top(&cwd)
            .unwrap_or_else(|| cwd.clone())
            .join(CONFIG_FILE),
    };
    if path.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    let root = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    crate::fsutil::create_dir_all(&root).map_err(|e| Error::infra("creating the directory", e))?;
    let text = starter(&root);
    write_with_umask(&path, text.as_bytes())
        .map_err(|e| Error::infra(&format!("writing {}", path.display()), e))?;
    let state = match &global.state_dir {
        Some(dir) => StateDir::new(cwd.join(dir)),
        None => StateDir::new(root.join(".pikaci")),
    };
    ignore_state(&state)?;
    let config = match &global.config {
        Some(_) => format!(" --config {}", path.display()),
        None => String::new(),
    };
    crate::outln!(
        "wrote {}; try `pikaci{config} targets` and `pikaci{config} run`",
        path.display()
    );
    Ok(0)
}

fn git_top(dir: &Path) -> Option<PathBuf> {
    let out = crate::git::git_text(dir, &["rev-parse", "--show-toplevel"]).ok()?;
    Some(PathBuf::from(out.trim()))
}

/// Atomically, with the mode a new file gets from the user's umask (a config is meant to
/// be committed and read by others, unlike pikaci's records).
fn write_with_umask(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".pikaci.toml.")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

const HEADER: &str = r#"# pikaci configuration; every key: `pikaci man pikaci.toml` (docs/configuration.md).
# Every job below runs on the host backend (no isolation, this machine's tools), so this
# file passes as written; `pikaci run` runs target `ci`, `pikaci run JOB` one job.

[defaults]
# Where jobs run: "host" (a snapshot of the repository on this machine), "microvm" or
# "incus" (a throwaway guest; docs/running.md).
backend = "host"
# Deadline for each job; a job's own `timeout` overrides it.
timeout = "20m"

"#;

const CARGO_JOBS: &str = r#"[jobs.clippy]
command = "cargo clippy --all-targets -- -D warnings"
writable-workspace = true   # cargo writes target/; the default workspace is read-only

[jobs.test]
command = "cargo test"
needs = ["clippy"]          # runs after clippy passed
writable-workspace = true

"#;

/// `--extra-experimental-features` so the job passes whether or not nix.conf enables
/// flakes; `--no-write-lock-file` because the workspace is read-only.
const FLAKE_JOB: &str = r#"[jobs.flake-check]
command = "nix --extra-experimental-features 'nix-command flakes' flake check --no-write-lock-file"

"#;

/// For a flake repository: how a guest job gets its tools, commented out because it
/// needs a flake output and a microVM host that this repository may not have yet.
fn flake_guest_variant(cargo: bool) -> String {
    let (paths, job, command) = if cargo {
        ("pkgs.cargo pkgs.rustc pkgs.gcc ", "test-vm", "cargo test")
    } else {
        ("", "hello-vm", "echo hello from a microVM; ls")
    };
    format!(
        r#"# In a microVM the host's tools are not there: jobs get theirs from Nix inputs, built
# once per run from this flake. To try it, add to flake.nix's outputs
#   packages.x86_64-linux.ci-toolchain = pkgs.buildEnv {{
#     name = "ci-toolchain";
#     paths = [ pkgs.bashInteractive pkgs.coreutils {paths}];
#   }};
# then uncomment these lines and run `pikaci doctor` and `pikaci run {job}`
# (docs/running.md: the microvm backend, and what its first run builds).
# [inputs]
# toolchain = ".#ci-toolchain"
#
# [jobs.{job}]
# backend = "microvm"
# command = "{command}"
# inputs = ["toolchain"]      # its bin/ is on the job's PATH
# writable-workspace = true

"#
    )
}

const HELLO_JOB: &str = r#"[jobs.hello]
command = "echo hello from $PIKACI_JOB; ls"

"#;

/// The starter for the repository at `root`: jobs guessed from the files present.
fn starter(root: &Path) -> String {
    let mut text = HEADER.to_string();
    let mut names = Vec::new();
    let cargo = root.join("Cargo.toml").exists();
    if cargo {
        names.extend(["clippy", "test"]);
        text.push_str(CARGO_JOBS);
    }
    let flake = root.join("flake.nix").exists();
    if flake {
        names.push("flake-check");
        text.push_str(FLAKE_JOB);
    }
    if names.is_empty() {
        names.push("hello");
        text.push_str(HELLO_JOB);
    }
    if flake {
        text.push_str(&flake_guest_variant(cargo));
    }
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    text.push_str(&format!(
        "[targets.ci]\n\
         description = \"Everything\"\n\
         # paths = [\"src/**\"]   # run only when these files changed\n\
         jobs = [{}]\n",
        list.join(", ")
    ));
    text
}
