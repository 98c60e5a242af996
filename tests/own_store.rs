//! Hosts with a Nix store of their own (scripts/testbed/hosts.sh): a microVM job's inputs,
//! built on this machine, reach the host's store before its guest starts, rooted for the
//! run; a host that refuses them fails the job as an infrastructure error.

use std::time::Duration;

use crate::harness::{
    MicrovmTestbed, Repo, StoreFault, eventually_every, is_root, kill_ssh_master, redact,
    testbed_microvm, tools_flake,
};

/// The `nix-store --import` that copies into `work`'s host (the host side of a copy), if
/// one runs: its parent, the import script, names the run's roots under `work`.
fn host_import_process(work: &std::path::Path) -> Option<rustix::process::Pid> {
    let work = work.as_os_str().as_encoded_bytes();
    let cmdline = |pid: &str| std::fs::read(format!("/proc/{pid}/cmdline")).ok();
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.to_string();
            if !contains(&cmdline(&pid)?, b"nix-store\0--import\0") {
                return None;
            }
            // `/proc/PID/stat`: `PID (COMM) STATE PPID …`, COMM in parentheses.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_string();
            contains(&cmdline(&ppid)?, work)
                .then(|| rustix::process::Pid::from_raw(pid.parse().ok()?))?
        })
}

struct Setup {
    repo: Repo,
    work: tempfile::TempDir,
    marker: String,
}

fn setup(testbed: &MicrovmTestbed, jobs: &str) -> Setup {
    let work = tempfile::tempdir().unwrap();
    let marker = format!(
        "made-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = testbed.config(
        work.path(),
        &format!("[inputs]\ntools = \"./tools#tools\"\n\n{jobs}"),
    );
    let repo = Repo::new(&config);
    repo.write("tools/flake.nix", &tools_flake("pikaci-test", &marker));
    repo.commit("tools");
    Setup { repo, work, marker }
}

impl Setup {
    /// Gives the job the input `big` instead of `tools`: 48 MB of random bytes, unique to
    /// this run.
    fn use_big_input(&self) {
        self.repo.write(
            "big/flake.nix",
            &format!(
                r#"{{
  outputs = {{ self }}: {{
    packages.x86_64-linux.big = derivation {{
      name = "pikaci-test-big";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo {marker} > /dev/null; /usr/bin/head -c 48000000 /dev/urandom > $out" ];
    }};
  }};
}}
"#,
                marker = self.marker
            ),
        );
        let config = std::fs::read_to_string(self.repo.path().join("pikaci.toml")).unwrap();
        self.repo.write(
            "pikaci.toml",
            &config.replace("tools = \"./tools#tools\"", "big = \"./big#big\""),
        );
        self.repo.commit("big");
    }
}

fn inputs_log(repo: &Repo, job: &str) -> String {
    let path = repo.latest_run().join("jobs").join(job).join("inputs.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The demo's failure, fixed: the input is valid on the host, closure and all, when the
/// guest starts; the next job that needs it sends nothing; the roots go with `pikaci gc`.
#[test]
fn a_microvm_job_gets_its_input_on_a_host_with_its_own_store() {
    let Some(testbed) = testbed_microvm().and_then(|t| t.on_own_store_host(0)) else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.first]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\n\n\
         [jobs.second]\nneeds = [\"first\"]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\n",
    );
    s.repo.pikaci(&["run", "second"]).expect(0);
    for job in ["first", "second"] {
        let (status, log) = s.repo.job(job);
        assert_eq!(status["status"], "passed", "{job}: {status}\n{log}");
        assert_eq!(
            log,
            format!("{}\n", s.marker),
            "{job} read its input's closure"
        );
    }
    let first = inputs_log(&s.repo, "first");
    assert!(
        first.starts_with("input tools: 2 path(s) in its closure, 2 missing on ssh://"),
        "{first}"
    );
    let second = inputs_log(&s.repo, "second");
    assert!(
        second.starts_with("input tools: 2 path(s) in its closure, 0 missing on ssh://"),
        "the second job copies nothing: {second}"
    );
    // Warm: one command on the host (which also roots the input for the run).
    let summary =
        regex::Regex::new(r"(?m)^sent (\d+) path\(s\) to \S+ in (\d+) round trip\(s\)").unwrap();
    let counts = |log: &str| {
        let c = summary
            .captures(log)
            .unwrap_or_else(|| panic!("no summary: {log}"));
        (c[1].to_string(), c[2].to_string())
    };
    assert_eq!(counts(&first), ("2".into(), "2".into()), "{first}");
    assert_eq!(counts(&second), ("0".into(), "1".into()), "{second}");
    // Rooted on the host for the run, under the host work dir's gcroots.
    let run = s.repo.latest_run_id();
    let roots = s.work.path().join("gcroots/runs").join(&run);
    let rooted: Vec<_> = std::fs::read_dir(&roots)
        .unwrap()
        .map(|e| std::fs::read_link(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(rooted.len(), 1, "{rooted:?}");
    assert!(
        rooted[0].to_string_lossy().ends_with("-pikaci-test-tools"),
        "{rooted:?}"
    );
    let gc = s.repo.pikaci(&["gc"]);
    gc.expect(0);
    assert!(
        !roots.exists(),
        "gc removes the roots of runs that are over"
    );
}

/// A host whose Nix does not trust the user refuses unsigned paths: the job does not
/// start, and says which input, which path, which host, and Nix's reason.
#[test]
fn a_refused_copy_is_an_infrastructure_error_naming_input_path_and_host() {
    if is_root() {
        eprintln!("skipped: every host trusts root; the refusal needs the test user");
        return;
    }
    let Some(testbed) = testbed_microvm().and_then(|t| t.on_own_store_host(1)) else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.first]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\n",
    );
    let run = s.repo.pikaci(&["run", "first"]);
    run.expect(3);
    let (status, _) = s.repo.job("first");
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(status["failed_in"], "launch", "{status}");
    let message = status["message"].as_str().unwrap();
    let store = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-").unwrap();
    let shown = redact(&store.replace_all(message, "/nix/store/[HASH]-"), &s.repo);
    insta::assert_snapshot!(shown, @"
    job `first` cannot start: input `tools` (/nix/store/[HASH]-pikaci-test-tools) is not valid on [SSH-HOST]: copying its closure there failed (exit status: 1); last lines of the copy:
    error: cannot add path '/nix/store/[HASH]-pikaci-test-dep' because it lacks a valid signature
    hint: the host's Nix takes unsigned store paths only from root and its `trusted-users`; add the SSH user to `trusted-users` in the host's nix.conf and restart its nix-daemon, or sign the paths where they are built (`secret-key-files`, here or on the build host) with a key the host's `trusted-public-keys` lists
    ");
    assert!(
        !s.work
            .path()
            .join("jobs")
            .join(s.repo.latest_run_id())
            .exists(),
        "no job dir: the guest never started"
    );
}

/// The SSH connection drops while an input's closure streams to the host: the job does
/// not start, and says the connection was lost during that input's copy.
#[test]
fn a_connection_dropped_during_the_copy_is_an_infrastructure_error() {
    let Some(testbed) = testbed_microvm().and_then(|t| t.on_own_store_host(0)) else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.first]\ninputs = [\"big\"]\ncommand = \"true\"\n",
    );
    // Unique to this run, so the host never has it from an earlier one.
    s.use_big_input();
    let mut child = s
        .repo
        .command(&["run", "first"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The host's `nix-store --import` is held still once it runs (the host's processes
    // are this machine's, in another mount namespace), so the drop lands mid-copy
    // however fast the stream is; it goes on, and ends, once the connection is gone.
    let mut importing = None;
    assert!(
        eventually_every(Duration::from_secs(120), Duration::from_millis(5), || {
            importing = host_import_process(s.work.path());
            importing.is_some()
        }),
        "the copy never started"
    );
    let import = importing.unwrap();
    let _ = rustix::process::kill_process(import, rustix::process::Signal::STOP);
    kill_ssh_master(child.id());
    let _ = rustix::process::kill_process(import, rustix::process::Signal::CONT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "an infrastructure error");
    let (record, _) = s.repo.job("first");
    assert_eq!(record["status"], "error", "{record}");
    let message = record["message"].as_str().unwrap();
    let store = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-").unwrap();
    let first_line = message.lines().next().unwrap();
    let shown = redact(
        &store.replace_all(first_line, "/nix/store/[HASH]-"),
        &s.repo,
    );
    insta::assert_snapshot!(shown, @"job `first` cannot start: input `big` (/nix/store/[HASH]-pikaci-test-big) is not valid on [SSH-HOST]: the connection was lost while its closure was copied (exit status: 255):");
}

/// A job whose input is bigger than the host's store has room for: the job does not
/// start, says which input, path and host, and Nix's "No space left on device".
#[test]
fn a_full_store_on_the_host_is_an_infrastructure_error() {
    let Some(testbed) = testbed_microvm().and_then(|t| t.on_faulty_store_host(StoreFault::Full))
    else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.first]\ninputs = [\"big\"]\ncommand = \"true\"\n",
    );
    // More than the store has room for beside the runner (hosts.sh: 48 MiB).
    s.use_big_input();
    s.repo.pikaci(&["run", "first"]).expect(3);
    let (status, _) = s.repo.job("first");
    assert_eq!(status["failed_in"], "launch", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("No space left on device"),
        "Nix's reason: {message}"
    );
    let first_line = message.lines().next().unwrap_or_default();
    let store = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-").unwrap();
    let shown = redact(
        &store.replace_all(first_line, "/nix/store/[HASH]-"),
        &s.repo,
    );
    insta::assert_snapshot!(shown, @"job `first` cannot start: input `big` (/nix/store/[HASH]-pikaci-test-big) is not valid on [SSH-HOST]: copying its closure there failed (exit status: 1); last lines of the copy:");
}

/// A host whose store is read-only: nothing can be built or added there. Its nix-daemon
/// drops every connection (its log says "Read-only file system"); the run names the
/// step and the host, with Nix's words and a hint to read the daemon's log.
#[test]
fn a_read_only_store_on_the_host_is_an_infrastructure_error() {
    let Some(testbed) =
        testbed_microvm().and_then(|t| t.on_faulty_store_host(StoreFault::ReadOnly))
    else {
        return;
    };
    let s = setup(
        &testbed,
        "[jobs.first]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\n",
    );
    s.repo.pikaci(&["run", "first"]).expect(3);
    let (status, _) = s.repo.job("first");
    assert_eq!(status["failed_in"], "setup", "{status}");
    let message = redact(status["message"].as_str().unwrap(), &s.repo);
    assert!(
        message
            .starts_with("microVM setup failed: cannot build the microVM runner: on [SSH-HOST]: "),
        "{message}"
    );
    let lines: Vec<&str> = message.lines().collect();
    let reason = lines[lines.len().saturating_sub(3)..].join("\n");
    insta::assert_snapshot!(reason, @"
    error: cannot open connection to remote store 'daemon': error: reading from file: Connection reset by peer
    (use '--show-trace' to show detailed location information)
    hint: the nix-daemon closed the connection without saying why (on the host that ran the command); read the daemon's log there (`journalctl -u nix-daemon`); a read-only or full store, or a broken nix.conf, fails every connection this way
    ");
}
