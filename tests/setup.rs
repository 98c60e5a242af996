//! doctor, init, completions and man through the real binary.

use std::path::Path;

use crate::harness::{Repo, Run, redact};

/// A PATH holding only `sh`, `git` and `nix`: every other tool doctor looks for is
/// missing, whatever this machine has installed.
fn minimal_path(dir: &Path) -> String {
    for tool in ["sh", "git", "nix"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let target = String::from_utf8_lossy(&found.stdout).trim().to_string();
        if !target.is_empty() {
            std::os::unix::fs::symlink(target, dir.join(tool)).unwrap();
        }
    }
    dir.display().to_string()
}

fn redact_versions(text: &str) -> String {
    let text = regex::Regex::new(r"git version [0-9.]+")
        .unwrap()
        .replace_all(text, "git version [V]");
    let text = regex::Regex::new(r"nix \(Nix\) [0-9.]+")
        .unwrap()
        .replace_all(&text, "nix (Nix) [V]");
    regex::Regex::new(r"/\S+/bin/(sh|git|nix)")
        .unwrap()
        .replace_all(&text, "[BIN]/$1")
        .into_owned()
}

#[test]
fn doctor_passes_for_the_host_backend_with_inputs() {
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n[inputs]\nt = \".#t\"\n[jobs.a]\ncommand = \"true\"\ninputs = [\"t\"]\n",
    );
    let run = repo.pikaci(&["doctor"]);
    run.expect(0);
    insta::assert_snapshot!(redact_versions(&redact(&run.stdout(), &repo)));
}

#[test]
fn doctor_names_what_vm_backends_miss_with_fixes() {
    let repo = Repo::new(
        "[backends.microvm]\nhypervisor = \"cloud-hypervisor\"\n[backends.incus]\nimage = \"pikaci/dev\"\n\
         [jobs.vm]\nbackend = \"microvm\"\ncommand = \"true\"\n[jobs.ct]\nbackend = \"incus\"\ncommand = \"true\"\n",
    );
    let bin = tempfile::tempdir().unwrap();
    let out = repo
        .command(&["doctor"])
        .env("PATH", minimal_path(bin.path()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = redact(&String::from_utf8_lossy(&out.stdout), &repo);
    // Whether this user may open /dev/kvm depends on the machine and the user (root here,
    // the test user elsewhere): the line is checked on its own.
    let kvm = regex::Regex::new(r"(?m)^(ok  |FAIL)  KVM on local: .*\n(      fix: .*\n)?").unwrap();
    let kvm_lines = kvm.find(&stdout).expect("a KVM check").as_str().to_string();
    if rustix::fs::access(
        "/dev/kvm",
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_err()
        && std::path::Path::new("/dev/kvm").exists()
    {
        assert!(
            kvm_lines.contains("this user may not open /dev/kvm")
                && kvm_lines.contains("usermod -aG kvm"),
            "{kvm_lines}"
        );
    }
    let stdout = kvm.replace(&stdout, "[KVM CHECK]\n");
    let stdout = regex::Regex::new(r"\d+ of \d+ checks failed")
        .unwrap()
        .replace(&stdout, "[N] of [M] checks failed");
    insta::assert_snapshot!(redact_versions(&stdout));
}

/// A state dir this user cannot write (a run as root made it root's, say): `run` stops
/// before it starts, naming the directory and the fix, and doctor says the same. Root may
/// write anywhere, so this runs as the test user only.
#[test]
fn an_unwritable_state_dir_is_named_with_its_fix() {
    if crate::harness::is_root() {
        eprintln!("skipped: root may write any directory");
        return;
    }
    let repo = Repo::new("[jobs.a]\nbackend = \"host\"\ncommand = \"true\"\n");
    let runs = repo.state().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let read_only = |mode| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    read_only(0o555);
    let run = repo.pikaci(&["run", "a"]);
    let doctor = repo.pikaci(&["doctor"]);
    read_only(0o755);
    run.expect(3);
    insta::assert_snapshot!(redact(&run.stderr(), &repo), @"
    error: cannot use the state dir [REPO]/.pikaci: this user cannot write [REPO]/.pikaci/runs
    hint: make [REPO]/.pikaci the user's (`sudo chown -R $USER [REPO]/.pikaci`, when a run as root made it), or choose another state dir with --state-dir or PIKACI_STATE_DIR
    ");
    doctor.expect(1);
    let line = doctor
        .stdout()
        .lines()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(redact(&line, &repo), @"
    FAIL  state dir [REPO]/.pikaci: this user cannot write [REPO]/.pikaci/runs
          fix: make [REPO]/.pikaci the user's (`sudo chown -R $USER [REPO]/.pikaci`, when a run as root made it), or choose another state dir with --state-dir or PIKACI_STATE_DIR
    ");
}

/// Nix used without its daemon by a user fails on the store's own files: the input's
/// error says to go through the nix-daemon.
#[test]
fn nix_without_the_daemon_says_to_use_it() {
    if crate::harness::is_root() || crate::harness::test_user().is_none() {
        eprintln!("skipped: needs the unprivileged test user");
        return;
    }
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n[inputs]\nt = \".#t\"\n[jobs.a]\ncommand = \"true\"\ninputs = [\"t\"]\n",
    );
    let run = Run::of(repo.command(&["run", "a"]).env("NIX_REMOTE", "local"));
    assert_eq!(run.code(), 3, "{}", run.stdout());
    assert!(
        run.stdout()
            .contains("hint: this user cannot write the Nix store")
            || run
                .stderr()
                .contains("hint: this user cannot write the Nix store"),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout(),
        run.stderr()
    );
}

#[test]
fn doctor_reaches_an_ssh_host() {
    let (Ok(host), Ok(key), Ok(known)) = (
        std::env::var("PIKACI_TEST_SSH_HOST"),
        std::env::var("PIKACI_TEST_SSH_KEY"),
        std::env::var("PIKACI_TEST_SSH_KNOWN_HOSTS"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run scripts/testbed/sshd.sh"
        );
        return;
    };
    let config = format!(
        "[ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\nconnect-timeout = \"3s\"\n\
         [jobs.vm]\nbackend = \"microvm\"\ncommand = \"true\"\n"
    );
    let repo = Repo::new(&config);
    let run = repo.pikaci(&["doctor", "--host", &host]);
    let text = run.stdout();
    assert!(
        text.contains(&format!("ok    reach {host}: connected")),
        "{text}"
    );
    assert!(
        text.contains(&format!("nix on {host}")),
        "checks ran on the ssh host: {text}"
    );
    let unreachable = host.rsplit_once(':').unwrap().0.to_string() + ":1";
    let run = repo.pikaci(&["doctor", "--host", &unreachable]);
    run.expect(1);
    assert!(
        run.stdout().contains(&format!("FAIL  reach {unreachable}")),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("fix: check the host"),
        "{}",
        run.stdout()
    );
}

#[test]
fn init_writes_a_config_that_loads_and_runs() {
    let repo = Repo::new("[jobs.x]\ncommand = \"true\"\n");
    std::fs::remove_file(repo.path().join("pikaci.toml")).unwrap();
    repo.write("Cargo.toml", "[package]\nname = \"x\"\n");
    repo.pikaci(&["init"]).expect(0);
    let text = std::fs::read_to_string(repo.path().join("pikaci.toml")).unwrap();
    insta::assert_snapshot!(text);
    let targets = repo.pikaci(&["targets"]);
    targets.expect(0);
    assert!(
        targets.stdout().contains("ci\tclippy, test"),
        "{}",
        targets.stdout()
    );
    let again = repo.pikaci(&["init"]);
    again.expect(2);
    assert!(again.stderr().contains("--force"), "{}", again.stderr());
    repo.pikaci(&["init", "--force"]).expect(0);
}

#[test]
fn init_without_known_files_runs_as_is() {
    let repo = Repo::new("[jobs.x]\ncommand = \"true\"\n");
    std::fs::remove_file(repo.path().join("pikaci.toml")).unwrap();
    repo.pikaci(&["init"]).expect(0);
    repo.pikaci(&["run"]).expect(0);
}

#[test]
fn render_guest_flake_depends_on_the_profile_only() {
    let flake = "[backends.microvm]\nvcpu = 2\nmemory = \"1GiB\"\npikaci-flake = \"github:example/pikaci\"\n";
    let a = Repo::new(&format!(
        "{flake}[jobs.a]\nbackend = \"microvm\"\ncommand = \"make\"\ntimeout = \"1m\"\n"
    ));
    let b = Repo::new(&format!(
        "{flake}[jobs.b]\nbackend = \"microvm\"\ncommand = \"make test\"\ntimeout = \"9m\"\nroot = true\n"
    ));
    let text = a.pikaci(&["render", "guest-flake"]);
    text.expect(0);
    let redacted = regex::Regex::new(r"(uid|gid) = \d+;")
        .unwrap()
        .replace_all(&text.stdout(), "$1 = [ID];")
        .into_owned();
    insta::assert_snapshot!(redacted);
    let hash = |repo: &Repo, extra: &[&str]| {
        let mut args = vec!["render", "guest-flake", "--hash"];
        args.extend_from_slice(extra);
        let run = repo.pikaci(&args);
        run.expect(0);
        run.stdout().trim().to_string()
    };
    assert_eq!(
        hash(&a, &[]),
        hash(&b, &[]),
        "other jobs, same profile, same runner"
    );
    assert_ne!(hash(&a, &[]), hash(&a, &["--vcpu", "4"]));
    let missing = Repo::new("[jobs.a]\ncommand = \"true\"\n");
    let run = missing.pikaci(&["render", "guest-flake"]);
    run.expect(2);
    assert!(run.stderr().contains("pikaci-flake"), "{}", run.stderr());
}

/// When scripts/test.sh runs the suite as its unprivileged user, it really is that user,
/// with no root left, reaching Nix through the daemon.
#[test]
fn the_suite_runs_as_the_unprivileged_test_user() {
    let Some(user) = crate::harness::test_user() else {
        return;
    };
    assert!(
        !crate::harness::is_root(),
        "PIKACI_TEST_USER={user}, yet root"
    );
    let whoami = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&whoami.stdout).trim(), user);
    assert_eq!(std::env::var("NIX_REMOTE").as_deref(), Ok("daemon"));
}
