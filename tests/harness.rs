//! A temp git repository with a `pikaci.toml`, and a builder that runs the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Repo {
    /// Removed with the repo.
    pub _tmp: tempfile::TempDir,
    /// The repository: the temp dir itself, or a directory inside it.
    pub root: PathBuf,
}

pub struct Run {
    pub output: Output,
}

impl Run {
    /// Runs a prepared command (for env or cwd the plain helpers do not set).
    pub fn of(command: &mut Command) -> Run {
        Run {
            output: command.output().expect("command runs"),
        }
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    /// A git repository whose first commit holds `pikaci.toml` and a `src/` file.
    pub fn new(config: &str) -> Repo {
        Repo::named("", config)
    }

    /// Like [`Repo::new`], in a directory called `name` inside the temp dir.
    pub fn named(name: &str, config: &str) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = match name {
            "" => dir.path().to_path_buf(),
            name => dir.path().join(name),
        };
        std::fs::create_dir_all(&root).unwrap();
        let repo = Repo { _tmp: dir, root };
        git(repo.path(), &["init", "-q", "-b", "main"]);
        repo.write(".gitignore", ".pikaci/\n");
        repo.write("pikaci.toml", config);
        repo.write("src/lib.rs", "pub fn x() {}\n");
        repo.commit("init");
        repo
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn commit(&self, message: &str) {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
    }

    pub fn state(&self) -> PathBuf {
        self.path().join(".pikaci")
    }

    pub fn pikaci(&self, args: &[&str]) -> Run {
        Run::of(&mut self.command(args))
    }

    /// The id of the newest run.
    pub fn latest_run_id(&self) -> String {
        self.latest_run()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pikaci"));
        cmd.current_dir(self.path())
            .args(args)
            .env_remove("PIKACI_STATE_DIR")
            .env_remove("GITHUB_ACTIONS");
        cmd
    }

    /// A job of the newest run: its status.json and its guest.log (empty if none).
    pub fn job(&self, name: &str) -> (serde_json::Value, String) {
        let dir = self.latest_run().join("jobs").join(name);
        let status = self.read_json(&dir.join("status.json"));
        // Every test that reads a message checks this: host steps show their command with
        // the script elided (`sh -c … NAME`); the whole script belongs in host.log.
        let message = status["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("sh -c '"),
            "the message of job `{name}` holds an embedded script: {message}"
        );
        let log = std::fs::read_to_string(dir.join("guest.log")).unwrap_or_default();
        (status, log)
    }

    /// Waits up to `limit` until the first run's `job` has `marker` in its host.log.
    pub fn wait_for_host_log(&self, job: &str, marker: &str, limit: std::time::Duration) -> bool {
        let host_log = || {
            std::fs::read_dir(self.state().join("runs"))
                .ok()?
                .next()?
                .ok()
                .and_then(|e| {
                    std::fs::read_to_string(e.path().join("jobs").join(job).join("host.log")).ok()
                })
        };
        eventually(limit, || host_log().is_some_and(|log| log.contains(marker)))
    }

    /// Starts `pikaci run JOB` and returns once the job has printed `marker` (in its
    /// `host.log`), so a test can interrupt it mid-job.
    pub fn start_until(&self, job: &str, marker: &str) -> std::process::Child {
        let child = self
            .command(&["run", job, "--output", "jsonl"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = self.wait_for_host_log(job, marker, std::time::Duration::from_secs(60));
        assert!(started, "{job} never printed {marker:?}");
        child
    }

    /// The newest run's directory.
    pub fn latest_run(&self) -> PathBuf {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.state().join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        runs.sort();
        runs.pop().expect("a run")
    }

    pub fn read_json(&self, path: &Path) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap()
    }
}

/// Replaces run ids, times, durations, hashes and temp paths so snapshots are stable.
pub fn redact(text: &str, repo: &Repo) -> String {
    let mut text = text.replace(&repo.path().display().to_string(), "[REPO]");
    let rules: &[(&str, &str)] = &[
        (r"\d{8}T\d{6}Z-\d{3}[0-9a-f]{4}", "[RUN]"),
        (r"ssh://[^@\s]+@[^:\s]+:\d+", "[SSH-HOST]"),
        (r"\.tmp-[A-Za-z0-9]{6}", ".tmp-[TMP]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
        (r"sha256-[A-Za-z0-9+/=]{44}", "[HASH]"),
        (r"\b[0-9a-f]{64}\b", "[HEX]"),
        (r"\b(\d+\.\d+s|\d+ms|\d+m\d\ds)\b", "[DUR]"),
        (r"\b[0-9a-f]{7,40}\b", "[REV]"),
    ];
    for (pattern, replacement) in rules {
        text = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&text, *replacement)
            .into_owned();
    }
    text
}

/// `$var`, which `scripts/testbed/<script>` exports, or None (the test skips) when that
/// testbed is not set up outside CI; in CI its absence fails the test.
pub fn testbed_var(var: &str, script: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    assert!(
        value.is_some() || std::env::var_os("CI").is_none(),
        "CI must run scripts/testbed/{script}"
    );
    if value.is_none() {
        eprintln!("skipped: {var} is not set (eval \"$(bash scripts/testbed/{script})\")");
    }
    value
}

/// The loopback sshd of scripts/testbed/sshd.sh.
pub fn testbed_ssh() -> Option<pikaci::transport::SshOptions> {
    let host = testbed_var("PIKACI_TEST_SSH_HOST", "sshd.sh")?;
    let rest = host.strip_prefix("ssh://").expect("ssh:// url");
    let (user, hostport) = rest.split_once('@').expect("user@host");
    let (hostname, port) = hostport.split_once(':').expect("host:port");
    Some(pikaci::transport::SshOptions {
        user: Some(user.into()),
        host: hostname.into(),
        port: Some(port.parse().expect("port")),
        identity: std::env::var_os("PIKACI_TEST_SSH_KEY").map(Into::into),
        known_hosts: std::env::var_os("PIKACI_TEST_SSH_KNOWN_HOSTS").map(Into::into),
        connect_timeout: std::time::Duration::from_secs(10),
    })
}

/// The microVM testbed from `scripts/testbed/microvm.sh` (a runner fixture flake and
/// virtiofsd), reached through the loopback sshd. `None` outside CI when not set up.
pub struct MicrovmTestbed {
    pub runner: String,
    pub virtiofsd: String,
    pub ssh: pikaci::transport::SshOptions,
    host: String,
}

/// The microVM testbed on a host with a Nix store of its own (own-store host 0), as a
/// remote host is: what every remote microVM test runs against.
pub fn testbed_microvm() -> Option<MicrovmTestbed> {
    testbed_microvm_shared_store()?.on_own_store_host(0)
}

/// The microVM testbed on the loopback sshd that shares this machine's store: only for
/// tests where sharing is the point (a runner given as a store path built here).
pub fn testbed_microvm_shared_store() -> Option<MicrovmTestbed> {
    let runner = testbed_var("PIKACI_TEST_RUNNER", "microvm.sh")?;
    Some(MicrovmTestbed {
        runner,
        virtiofsd: std::env::var("PIKACI_TEST_VIRTIOFSD").expect("PIKACI_TEST_VIRTIOFSD"),
        ssh: testbed_ssh()?,
        host: std::env::var("PIKACI_TEST_SSH_HOST").expect("PIKACI_TEST_SSH_HOST"),
    })
}

/// Host `n` (from 0) of scripts/testbed/hosts.sh: a loopback sshd whose sessions see a
/// Nix store of their own, as on a remote host. Hosts 0 and 2 trust the test user (they
/// may import unsigned paths); host 1 trusts only root. `None` outside CI when not set up.
pub fn own_store_host(n: usize) -> Option<String> {
    let hosts = testbed_var("PIKACI_TEST_OWN_STORE_HOSTS", "hosts.sh")?;
    let host = hosts.split_whitespace().nth(n);
    assert!(host.is_some(), "hosts.sh started no host {n}: {hosts}");
    host.map(str::to_string)
}

/// The SSH options of own-store host `n` ([`own_store_host`]): the loopback sshd's user
/// and key, the host's port and known_hosts.
pub fn own_store_ssh(n: usize) -> Option<pikaci::transport::SshOptions> {
    let host = own_store_host(n)?;
    let port = host.rsplit(':').next().expect("host:port");
    Some(pikaci::transport::SshOptions {
        port: Some(port.parse().expect("port")),
        known_hosts: Some(
            std::env::var("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS")
                .expect("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS")
                .into(),
        ),
        ..testbed_ssh()?
    })
}

/// A store fault of hosts.sh's faulty hosts: their store, fresh at each start, is a small
/// tmpfs, or a tmpfs mounted read-only.
#[derive(Clone, Copy)]
pub enum StoreFault {
    Full,
    ReadOnly,
}

impl MicrovmTestbed {
    /// The same testbed with its guests on the hosts.sh host whose store has `fault`.
    pub fn on_faulty_store_host(mut self, fault: StoreFault) -> Option<MicrovmTestbed> {
        let hosts = testbed_var("PIKACI_TEST_FAULTY_STORE_HOSTS", "hosts.sh")?;
        let n = match fault {
            StoreFault::Full => 0,
            StoreFault::ReadOnly => 1,
        };
        let host = hosts
            .split_whitespace()
            .nth(n)
            .expect("hosts.sh's faulty hosts");
        let port = host.rsplit(':').next().expect("host:port");
        self.ssh = pikaci::transport::SshOptions {
            port: Some(port.parse().expect("port")),
            ..own_store_ssh(0)?
        };
        self.host = host.to_string();
        Some(self)
    }

    /// The same testbed with its guests on own-store host `n` ([`own_store_host`]).
    pub fn on_own_store_host(mut self, n: usize) -> Option<MicrovmTestbed> {
        self.ssh = own_store_ssh(n)?;
        self.host = own_store_host(n)?;
        Some(self)
    }

    /// A `pikaci.toml` whose jobs run in microVMs on the loopback host, with pikaci's
    /// host-side files under `work_dir`, followed by `jobs`.
    pub fn config(&self, work_dir: &Path, jobs: &str) -> String {
        format!(
            "[defaults]\nbackend = \"microvm\"\nhost = \"{host}\"\nwork-dir = \"{work}\"\n\n{settings}{jobs}",
            host = self.host,
            work = work_dir.display(),
            settings = self.settings(self.ssh.known_hosts.as_ref().unwrap()),
        )
    }

    /// A `pikaci.toml` whose microVM jobs run on the pool `hosts` (each with a work dir
    /// of its own under `work`; the testbed's hosts share this machine's file system),
    /// reached through a known_hosts file written in `work`, followed by `rest`.
    pub fn pool_config(&self, work: &Path, hosts: &[TestHost], rest: &str) -> String {
        let ports: Vec<u16> = hosts.iter().map(|h| port_of(&h.url)).collect();
        let known = known_hosts_for(work, &ports);
        format!(
            "[defaults]\nbackend = \"microvm\"\n\n{}{}{rest}",
            self.settings(&known),
            hosts_toml(work, hosts),
        )
    }

    /// `[ssh]` and `[backends.microvm]` of the testbed.
    fn settings(&self, known_hosts: &Path) -> String {
        format!(
            "[ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\n\
             [backends.microvm]\nrunner = \"{runner}\"\nvirtiofsd = \"{virtiofsd}\"\nboot-timeout = \"60s\"\n\n",
            key = self.ssh.identity.as_ref().unwrap().display(),
            known = known_hosts.display(),
            runner = self.runner,
            virtiofsd = self.virtiofsd,
        )
    }
}

/// One `[hosts.NAME]` of a test's pool.
pub struct TestHost<'a> {
    pub name: &'a str,
    pub url: String,
    pub slots: Option<u32>,
    pub labels: Vec<&'a str>,
}

/// The `[hosts.NAME]` tables of `hosts`, each with a work dir of its own under `work`.
pub fn hosts_toml(work: &Path, hosts: &[TestHost]) -> String {
    hosts
        .iter()
        .map(|host| {
            let slots = host.slots.map_or(String::new(), |n| format!("slots = {n}\n"));
            format!(
                "[hosts.{name}]\nurl = \"{url}\"\n{slots}labels = {labels:?}\nwork-dir = \"{work}/{name}\"\n\n",
                name = host.name,
                url = host.url,
                labels = host.labels,
                work = work.display(),
            )
        })
        .collect()
}

/// The port of an `ssh://…:PORT` url.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A known_hosts file in `dir` naming `ports` of this machine under the key all hosts.sh
/// hosts share: the testbed's own file lists only the hosts its last start made, and a
/// relay in front of a host listens on a port of its own.
pub fn known_hosts_for(dir: &Path, ports: &[u16]) -> PathBuf {
    let file = std::env::var("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS").expect("hosts.sh");
    let text = std::fs::read_to_string(file).unwrap();
    let key = text
        .lines()
        .next()
        .expect("a host key")
        .split_once(' ')
        .unwrap()
        .1
        .to_string();
    let lines: String = ports
        .iter()
        .map(|port| format!("[127.0.0.1]:{port} {key}\n"))
        .collect();
    let path = dir.join("known_hosts");
    std::fs::write(&path, lines).unwrap();
    path
}

/// Processes whose command line or working directory mentions `dir`: what a job on
/// the host left behind (qemu runs in the job's runtime dir, virtiofsd names its share).
pub fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if !zombie && (cmdline.contains(&needle) || cwd.starts_with(&needle)) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// What is still running under `dir` once `within` has passed or nothing is: a killed
/// process runs on until the kernel schedules its exit, so a check made at once would
/// see processes that are already on their way out.
pub fn processes_left_under(dir: &Path, within: std::time::Duration) -> Vec<String> {
    let mut left = processes_under(dir);
    eventually_every(within, std::time::Duration::from_millis(50), || {
        left = processes_under(dir);
        left.is_empty()
    });
    left
}

/// Waits up to `limit` for `check` to hold.
pub fn eventually(limit: std::time::Duration, check: impl FnMut() -> bool) -> bool {
    eventually_every(limit, std::time::Duration::from_millis(100), check)
}

/// [`eventually`], looking every `every`: for a state that lasts only a moment.
pub fn eventually_every(
    limit: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(every);
    }
    check()
}

/// The output of a tool the tests check with, or None (the test skips) when it is not
/// installed, which CI does not allow.
pub fn run_tool(command: &mut Command) -> Option<Output> {
    match command.output() {
        Ok(out) => Some(out),
        Err(e) => {
            let tool = command.get_program().to_string_lossy().into_owned();
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} is required in CI: {e}"
            );
            None
        }
    }
}

/// `nix-instantiate --eval --strict --json` of `expr` in `dir`, or None (the test skips)
/// without Nix outside CI. Nix rejecting the expression fails the test.
pub fn nix_eval_json(expr: &str, dir: &Path) -> Option<serde_json::Value> {
    let out = run_tool(
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "-E", expr])
            .current_dir(dir),
    )?;
    assert!(
        out.status.success(),
        "nix rejected:\n{expr}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// `text` parses with the real Nix parser (skipped without Nix outside CI).
pub fn assert_nix_parses(text: &str) {
    let Some(out) = run_tool(Command::new("nix-instantiate").args(["--parse", "-E", text])) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Kills the SSH master connection among `pid`'s children: every session on it ends as
/// a dropped connection would end it.
pub fn kill_ssh_master(pid: u32) {
    for child in children_of(pid) {
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("ControlMaster=yes") {
            let child = rustix::process::Pid::from_raw(child as i32).unwrap();
            let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
        }
    }
}

/// A `pikaci.toml` whose jobs run in containers of the testbed's Incus `image`, with
/// `settings` added to `[backends.incus]`, followed by `jobs`.
/// The container image alias of `scripts/testbed/incus.sh`; `None` outside CI when it
/// is not set up.
pub fn testbed_incus_image() -> Option<String> {
    testbed_var("PIKACI_TEST_INCUS_IMAGE", "incus.sh")
}

pub fn incus_config(image: &str, settings: &str, jobs: &str) -> String {
    format!(
        "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
         instance-type = \"container\"\nguest-agent = \"/usr/local/bin/pikaci-guest\"\n\
         {settings}\n{jobs}"
    )
}

/// Whether the tests run as root. scripts/test.sh runs the suite as an unprivileged user
/// (scripts/testbed/user.sh), as people run pikaci; the cases that need root are in
/// tests/root_only.rs and run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// For a root-only test: true when it may go on. Without root it skips outside CI and
/// fails in CI, where scripts/test.sh runs `root_only::` as root.
#[track_caller]
pub fn require_root(needs: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "root-only test ({needs} needs root): it belongs in tests/root_only.rs, which scripts/test.sh runs as root"
    );
    eprintln!("skipped: {needs} needs root");
    false
}

/// The unprivileged test user of scripts/testbed/user.sh when the suite runs as it.
pub fn test_user() -> Option<String> {
    std::env::var("PIKACI_TEST_USER").ok()
}

/// The last `n` lines of `text`, for assertion messages.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A flake whose `tools` (`NAME-tools`, with `bin/NAME-hello`) has a dependency of its own
/// (a closure of two paths), unique by `marker` so that no store has it from an earlier run.
pub fn tools_flake(name: &str, marker: &str) -> String {
    format!(
        r#"{{
  outputs = {{ self }}:
    let
      system = "x86_64-linux";
      dep = derivation {{
        name = "{name}-dep";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "echo {marker} > $out" ];
      }};
    in {{
      packages.${{system}}.tools = derivation {{
        name = "{name}-tools";
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" ''
          /bin/mkdir -p $out/bin
          printf '#!/bin/sh\ncat ${{dep}}\n' > $out/bin/{name}-hello
          /bin/chmod +x $out/bin/{name}-hello
        '' ];
      }};
    }};
}}
"#
    )
}

/// Nix is installed by scripts/setup.sh; outside CI a machine without it skips.
pub fn nix_available() -> bool {
    let found = std::process::Command::new("nix")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "nix is required in CI"
    );
    if !found {
        eprintln!("skipped: nix is not installed");
    }
    found
}
