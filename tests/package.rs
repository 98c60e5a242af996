//! The package builds as Nix builds it (nix/package.nix): its check phase runs the unit
//! tests in the build sandbox, whose conditions this reproduces for the unit test binary
//! cargo built: not root, `HOME=/homeless-shelter` (which does not exist), a `PATH` of
//! only stdenv's tools and the package's `nativeCheckInputs`, a network namespace of its
//! own (only `lo`), `CI` unset, and a private `TMPDIR` (the sandbox's /build).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::harness::{is_root, testbed_var};

/// The programs each `nativeCheckInputs` entry puts on the sandbox's PATH.
const PROGRAMS: &[(&str, &[&str])] = &[
    ("git", &["git"]),
    ("shellcheck", &["shellcheck"]),
    ("util-linux", &["flock"]),
];

/// The Debian packages holding what stdenv puts on every build's PATH (coreutils,
/// findutils, diffutils, sed, grep, awk, tar, gzip, bzip2, make, bash, patch, xz, file).
const STDENV: &[&str] = &[
    "coreutils",
    "findutils",
    "diffutils",
    "sed",
    "grep",
    "gawk",
    "mawk",
    "tar",
    "gzip",
    "bzip2",
    "make",
    "bash",
    "patch",
    "xz-utils",
    "file",
];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The names in package.nix's `nativeCheckInputs = [ … ];`.
fn native_check_inputs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("nix/package.nix")).unwrap();
    let list = regex::Regex::new(r"nativeCheckInputs = \[([^\]]*)\]")
        .unwrap()
        .captures(&text)
        .expect("nix/package.nix sets nativeCheckInputs");
    list[1].split_whitespace().map(str::to_string).collect()
}

/// A directory of links to the programs the sandbox would have.
fn sandbox_path(dir: &Path) {
    let mut programs: Vec<(String, String)> = Vec::new();
    for package in STDENV {
        let Ok(out) = Command::new("dpkg").args(["-L", package]).output() else {
            continue;
        };
        for file in String::from_utf8_lossy(&out.stdout).lines() {
            if file.starts_with("/usr/bin/") || file.starts_with("/bin/") {
                let name = file.rsplit('/').next().unwrap().to_string();
                programs.push((name, file.to_string()));
            }
        }
    }
    for input in native_check_inputs() {
        let (_, names) = PROGRAMS
            .iter()
            .find(|(attr, _)| *attr == input)
            .unwrap_or_else(|| {
                panic!("add the programs of nativeCheckInputs' `{input}` to PROGRAMS")
            });
        for name in *names {
            programs.push((name.to_string(), which(name)));
        }
    }
    // stdenv's bash is also its `sh` (Debian's sh is dash).
    if let Some((_, bash)) = programs.iter().find(|(name, _)| name == "bash") {
        programs.push(("sh".into(), bash.clone()));
    }
    let mut linked = BTreeSet::new();
    for (name, target) in programs {
        if Path::new(&target).is_file() && linked.insert(name.clone()) {
            std::os::unix::fs::symlink(&target, dir.join(&name)).unwrap();
        }
    }
}

/// Where `name` is on this PATH; ShellCheck as nixpkgs has it (0.11) when setup.sh
/// installed that one.
fn which(name: &str) -> String {
    if let (Ok(newer), "shellcheck") = (std::env::var("PIKACI_TEST_SHELLCHECK_NEW"), name) {
        return newer;
    }
    let out = Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", name])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !found.is_empty(),
        "{name} (a nativeCheckInput) is not installed"
    );
    found
}

/// `program` under the sandbox's conditions: an own network namespace, and not root
/// (root drops to nobody; a user keeps its own uid in a user namespace).
fn sandboxed(program: &str, path: &Path, tmp: &Path) -> Command {
    let mut command = Command::new("unshare");
    if is_root() {
        command.args([
            "--net",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    } else {
        let uid = rustix::process::getuid().as_raw().to_string();
        let gid = rustix::process::getgid().as_raw().to_string();
        command.args(["--user", "--net", "--map-user", &uid, "--map-group", &gid]);
    }
    command
        .args(["env", "-i"])
        .arg(format!("PATH={}", path.display()))
        .arg("HOME=/homeless-shelter")
        .arg(format!("TMPDIR={}", tmp.display()))
        .arg(format!("NIX_BUILD_TOP={}", tmp.display()))
        .arg("TERM=xterm-256color")
        // package.nix's env: a snapshot that does not match fails.
        .arg("INSTA_UPDATE=no")
        .arg(program)
        .current_dir(repo_root());
    command
}

#[test]
fn unit_tests_pass_under_the_build_sandbox_conditions() {
    let Some(unit_tests) = testbed_var("PIKACI_TEST_UNIT_TESTS", "../test.sh") else {
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    sandbox_path(bin.path());
    let tmp = tempfile::tempdir().unwrap();
    if is_root() {
        std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
    }
    // The conditions hold: not root, no home, only loopback, no CI, no cargo or nix.
    let probe = sandboxed("sh", bin.path(), tmp.path())
        .args(["-c", "id -u; test -e \"$HOME\" || echo no-home; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo CI=${CI-unset}; command -v nix cargo || echo no-nix-cargo"])
        .output()
        .unwrap();
    let probe = format!(
        "{}{}",
        String::from_utf8_lossy(&probe.stdout),
        String::from_utf8_lossy(&probe.stderr)
    );
    let lines: Vec<&str> = probe.lines().collect();
    assert_ne!(lines.first(), Some(&"0"), "not root: {probe}");
    assert_eq!(
        &lines[1..],
        ["no-home", "lo", "CI=unset", "no-nix-cargo"],
        "{probe}"
    );
    let out = sandboxed(&unit_tests, bin.path(), tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the unit tests fail under the build sandbox's conditions:\n{}\n{}",
        crate::harness::tail_lines(&stdout, 60),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok."), "{stdout}");
}
