//! The Incus backend end to end against the real incusd (containers; VMs need vsock,
//! which the test machines lack), with the image from `scripts/testbed/incus.sh`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Repo, Run, testbed_incus_image};

fn repo(image: &str, jobs: &str) -> Repo {
    let limits = "limits = { memory = \"256MiB\", processes = 200 }\n";
    Repo::new(&crate::harness::incus_config(image, limits, jobs))
}

fn incus(args: &[&str]) -> std::process::Output {
    std::process::Command::new("incus")
        .args(args)
        .output()
        .unwrap()
}

/// The testbed image's directory (metadata.tar + rootfs.tar) and a copy that differs
/// only in its metadata, so Incus gives it another fingerprint.
pub(crate) fn image_dirs(tmp: &Path) -> Option<(PathBuf, PathBuf)> {
    let first = PathBuf::from(crate::harness::testbed_var(
        "PIKACI_TEST_INCUS_IMAGE_DIR",
        "incus.sh",
    )?);
    let second = tmp.join("second");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(first.join("rootfs.tar"), second.join("rootfs.tar")).unwrap();
    let yaml = format!(
        "architecture: x86_64\ncreation_date: 1\nproperties:\n  description: {}\n",
        tmp.display()
    );
    let mut meta = tar::Builder::new(std::fs::File::create(second.join("metadata.tar")).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    meta.append_data(&mut header, "metadata.yaml", yaml.as_bytes())
        .unwrap();
    meta.finish().unwrap();
    Some((first, second))
}

/// The fingerprint Incus gives a split image: SHA-256 of metadata, then rootfs.
pub(crate) fn fingerprint(dir: &Path) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for file in ["metadata.tar", "rootfs.tar"] {
        hash.update(std::fs::read(dir.join(file)).unwrap());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes a test alias and the images only it used, however the test ends.
struct AliasGuard(String, Vec<String>);

impl Drop for AliasGuard {
    fn drop(&mut self) {
        incus(&["image", "alias", "delete", &self.0]);
        for image in &self.1 {
            // Refused (and kept) while another alias names it, e.g. the testbed's.
            let info = incus(&["query", &format!("/1.0/images/{image}")]);
            let record: serde_json::Value =
                serde_json::from_slice(&info.stdout).unwrap_or_default();
            if record["aliases"].as_array().is_some_and(|a| a.is_empty()) {
                incus(&["image", "delete", image]);
            }
        }
    }
}

/// The config of each instance of `run` still present.
fn instance_configs(run: &str) -> Vec<serde_json::Value> {
    let out = incus(&["list", "--format", "json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.into_iter()
        .filter(|i| i["config"]["user.pikaci.run"] == run)
        .map(|i| i["config"].clone())
        .collect()
}

fn instances_of(run: &str) -> usize {
    instance_configs(run).len()
}

#[test]
fn jobs_run_in_incus_containers_with_their_outcomes() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let repo = repo(
        &image,
        r#"
[jobs.pass]
command = "id -un; cat src/lib.rs; echo made > $PIKACI_ARTIFACTS/made.txt"

[jobs.fail]
command = "echo about to fail; exit 7"

[jobs.readonly]
root = true
command = "id -u; echo x > src/lib.rs"

[jobs.writable]
writable-workspace = true
command = "echo changed > src/lib.rs && cat src/lib.rs"

[jobs.slow]
timeout = "2s"
command = "echo started; sleep 300"
"#,
    );
    let started = Instant::now();
    repo.pikaci(&["run", "pass", "fail", "readonly", "writable", "slow"])
        .expect(1);
    assert!(started.elapsed() < Duration::from_secs(120));

    let (status, log) = repo.job("pass");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(status["backend"], "incus");
    assert_eq!(log, "pikaci\npub fn x() {}\n");
    for phase in [
        "launch.init",
        "launch.image",
        "launch.workspace",
        "launch.start",
        "launch.request",
        "run",
        "collect",
        "cleanup",
    ] {
        assert!(status["phases"][phase].is_u64(), "{phase}: {status}");
    }
    // Containers run processes once started; only VMs wait for their agent.
    assert!(status["phases"]["launch.ready"].is_null(), "{status}");
    let made = repo.latest_run().join("jobs/pass/artifacts/made.txt");
    assert_eq!(std::fs::read_to_string(made).unwrap(), "made\n");
    let image_used =
        std::fs::read_to_string(repo.latest_run().join("jobs/pass/incus-image")).unwrap();
    assert_eq!(
        image_used.trim().len(),
        64,
        "the fingerprint the instance came from"
    );

    let (status, log) = repo.job("fail");
    assert_eq!(
        (status["status"].as_str(), status["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert_eq!(log, "about to fail\n");

    let (status, log) = repo.job("readonly");
    assert_eq!(status["status"], "failed");
    assert!(
        log.starts_with("0\n") && log.contains("Read-only file system"),
        "{log}"
    );

    let (status, log) = repo.job("writable");
    assert_eq!(status["status"], "passed", "{log}");
    assert_eq!(log, "changed\n");

    let (status, log) = repo.job("slow");
    assert_eq!(status["status"], "timed_out", "{status}");
    assert_eq!(log, "started\n");

    let run = repo.latest_run_id();
    assert_eq!(instances_of(&run), 0, "every instance deleted");
}

#[test]
fn a_missing_image_alias_says_how_to_get_one() {
    if testbed_incus_image().is_none() {
        return;
    }
    // `incus image list` matches by prefix: an alias that only prefixes the real one
    // must not be taken for it.
    let repo = repo("pikaci/tes", "[jobs.a]\ncommand = \"true\"\n");
    repo.pikaci(&["run", "a"]).expect(3);
    let message = repo.job("a").0["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("no image has the alias `pikaci/tes`"),
        "{message}"
    );
    assert!(
        message.contains("pikaci image import --alias pikaci/tes"),
        "{message}"
    );
    assert!(!message.contains("scripts/testbed"), "{message}");
}

#[test]
fn sigint_and_sigterm_mid_job_cancel_it_and_delete_the_instance() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        cancel_mid_job(&image, signal);
    }
}

fn cancel_mid_job(image: &str, signal: rustix::process::Signal) {
    let repo = repo(
        image,
        "[jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
    );
    let mut child = repo.start_until("slow", "guest-is-up");
    let run = repo.latest_run();
    let run = run.file_name().unwrap().to_string_lossy();
    assert_eq!(instances_of(&run), 1);
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(repo.job("slow").0["status"], "cancelled");
    assert_eq!(instances_of(&run), 0, "{signal:?}: the instance is deleted");
}

#[test]
fn gc_deletes_the_instance_of_a_killed_run() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let repo = repo(
        &image,
        "[jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
    );
    let mut child = repo.start_until("slow", "guest-is-up");
    child.kill().unwrap();
    child.wait().unwrap();
    let run = repo.latest_run_id();
    let status = repo.pikaci(&["status", "latest", "--json"]);
    assert_eq!(status.json()["run"]["status"], "abandoned");
    let configs = instance_configs(&run);
    assert_eq!(configs.len(), 1, "a killed pikaci leaves its instance");
    // The limits of pikaci.toml were set at init (this testbed's cgroup v1 containers
    // cannot show them from inside).
    assert_eq!(configs[0]["limits.memory"], "256MiB");
    assert_eq!(configs[0]["limits.processes"], "200");
    let gc = repo.pikaci(&["gc"]);
    gc.expect(0);
    assert!(
        gc.stdout().contains("removed 1 Incus instance(s)"),
        "{}",
        gc.stdout()
    );
    assert_eq!(instances_of(&run), 0);
}

#[test]
fn an_image_built_by_nix_is_imported_under_its_alias_and_runs_jobs() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some((_, second)) = image_dirs(tmp.path()) else {
        return;
    };
    let alias = format!("pikaci/e2e-built-{}", std::process::id());
    let expected = fingerprint(&second);
    let _guard = AliasGuard(alias.clone(), vec![expected.clone()]);
    let repo = repo(&alias, "[jobs.a]\ncommand = \"echo in-the-new-image\"\n");
    // The flake's image output: the two files, copied by a derivation (no nixpkgs here).
    for file in ["metadata.tar", "rootfs.tar"] {
        std::fs::copy(second.join(file), repo.path().join(file)).unwrap();
    }
    repo.write(
        "flake.nix",
        r#"{
  outputs = { self }: {
    packages.x86_64-linux.incus-image = derivation {
      name = "pikaci-test-incus-image";
      system = "x86_64-linux";
      builder = "/bin/sh";
      metadata = ./metadata.tar;
      rootfs = ./rootfs.tar;
      args = [ "-c" "/bin/mkdir $out && /bin/cp $metadata $out/metadata.tar && /bin/cp $rootfs $out/rootfs.tar" ];
    };
  };
}
"#,
    );
    repo.commit("an image output");

    let built = repo.pikaci(&["image", "build"]);
    built.expect(0);
    let out = built.stdout().trim().to_string();
    assert!(out.starts_with("/nix/store/"), "{}", built.stdout());
    assert!(Path::new(&out).join("rootfs.tar").is_file());

    // Before the import the alias is missing; afterwards it names the built image.
    repo.pikaci(&["run", "a"]).expect(3);
    let imported = repo.pikaci(&["image", "import", "--alias", &alias]);
    imported.expect(0);
    assert!(
        imported
            .stdout()
            .contains(&format!("-> {} (imported)", &expected[..12])),
        "{}",
        imported.stdout()
    );
    repo.pikaci(&["run", "a"]).expect(0);
    let (_, log) = repo.job("a");
    assert_eq!(log, "in-the-new-image\n");
    let used = std::fs::read_to_string(repo.latest_run().join("jobs/a/incus-image")).unwrap();
    assert_eq!(used.trim(), expected);

    let list = repo.pikaci(&["image", "list"]);
    list.expect(0);
    let line = list
        .stdout()
        .lines()
        .find(|l| l.contains(&alias))
        .map(str::to_string);
    assert!(
        line.as_deref()
            .is_some_and(|l| l.starts_with(&expected[..12])),
        "{}",
        list.stdout()
    );

    // Pointing the alias back at the testbed image removes the built one: nothing uses
    // it any more. This import goes through the loopback SSH host when there is one.
    let testbed_dir = crate::harness::testbed_var("PIKACI_TEST_INCUS_IMAGE_DIR", "incus.sh");
    let mut import = repo.command(&["image", "import", "--alias", &alias, &testbed_dir.unwrap()]);
    if let (Ok(host), Ok(key), Ok(known)) = (
        std::env::var("PIKACI_TEST_SSH_HOST"),
        std::env::var("PIKACI_TEST_SSH_KEY"),
        std::env::var("PIKACI_TEST_SSH_KNOWN_HOSTS"),
    ) {
        import
            .env("PIKACI_HOST", host)
            .env("PIKACI_SSH_IDENTITY_FILE", key)
            .env("PIKACI_SSH_KNOWN_HOSTS_FILE", known);
    }
    let testbed = crate::harness::Run::of(&mut import);
    testbed.expect(0);
    assert!(
        testbed
            .stdout()
            .contains(&format!("removed the previous image {}", &expected[..12])),
        "{}",
        testbed.stdout()
    );
    assert!(
        !incus(&["query", &format!("/1.0/images/{expected}")])
            .status
            .success()
    );
    let _ = image;
}

#[test]
fn moving_the_alias_never_leaves_a_run_without_an_image() {
    let Some(_) = testbed_incus_image() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some((first, second)) = image_dirs(tmp.path()) else {
        return;
    };
    let (a, b) = (fingerprint(&first), fingerprint(&second));
    let alias = format!("pikaci/e2e-swap-{}", std::process::id());
    let _guard = AliasGuard(alias.clone(), vec![b.clone()]);
    let repo = repo(
        &alias,
        "[jobs.one]\ncommand = \"true\"\n\n[jobs.two]\ncommand = \"true\"\n",
    );
    // No `image build` yet: the default directory does not exist.
    let missing = repo.pikaci(&["image", "import", "--alias", &alias]);
    missing.expect(3);
    assert!(
        missing.stderr().contains("pikaci image build"),
        "{}",
        missing.stderr()
    );
    let import = |dir: &Path| {
        let run = repo.pikaci(&["image", "import", "--alias", &alias, dir.to_str().unwrap()]);
        assert_eq!(run.code(), 0, "{}{}", run.stdout(), run.stderr());
    };
    import(&first);

    // Runs look the alias up and create instances from it while it keeps moving.
    let runs = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            (0..4)
                .map(|_| {
                    let run = repo.pikaci(&["run"]);
                    let jobs: Vec<String> = ["one", "two"]
                        .iter()
                        .map(|job| {
                            std::fs::read_to_string(
                                repo.latest_run().join("jobs").join(job).join("incus-image"),
                            )
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                        })
                        .collect();
                    // What each job's agent printed, for a failure to show.
                    let logs: String = ["one", "two"]
                        .iter()
                        .map(|job| {
                            let dir = repo.latest_run().join("jobs").join(job);
                            let log = std::fs::read_to_string(dir.join("host.log"));
                            format!("--- {job} host.log: {log:?}\n")
                        })
                        .collect();
                    (run.code(), format!("{}{logs}", run.stdout()), jobs)
                })
                .collect::<Vec<_>>()
        });
        let mut swaps = 0;
        while !runner.is_finished() {
            import(if swaps % 2 == 0 { &second } else { &first });
            swaps += 1;
        }
        eprintln!("the alias moved {swaps} times during the runs");
        assert!(
            swaps >= 2,
            "the alias moved {swaps} time(s) during the runs"
        );
        runner.join().unwrap()
    });
    for (code, stdout, images) in runs {
        assert_eq!(code, 0, "{stdout}");
        for image in images {
            assert!(image == a || image == b, "{image}");
        }
    }
}

#[test]
fn an_agent_that_writes_no_result_is_reported() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    // `true` in place of the agent: it runs, and writes nothing.
    let repo = Repo::new(&format!(
        "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
         instance-type = \"container\"\nguest-agent = \"/bin/true\"\n\n\
         [jobs.a]\ncommand = \"echo never runs\"\n"
    ));
    repo.pikaci(&["run", "a"]).expect(3);
    let (status, _) = repo.job("a");
    assert_eq!(status["status"], "error");
    insta::assert_snapshot!(status["message"].as_str().unwrap(), @"the guest agent `/bin/true` ended without a result (`incus exec`: exit status: 0)");
    let run = repo.latest_run();
    assert_eq!(instances_of(&run.file_name().unwrap().to_string_lossy()), 0);
}

#[test]
fn an_agent_path_missing_from_the_image_is_named_with_the_fix() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let repo = Repo::new(&format!(
        "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
         instance-type = \"container\"\nguest-agent = \"/no/such/pikaci-guest\"\n\n\
         [jobs.a]\ncommand = \"echo never runs\"\n"
    ));
    repo.pikaci(&["run", "a"]).expect(3);
    let (status, _) = repo.job("a");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "the guest agent `/no/such/pikaci-guest` does not exist in the image `{image}`"
        )),
        "{message}"
    );
    assert!(message.contains("backends.incus.guest-agent"), "{message}");
    // What `incus exec` said is one command away.
    let host_log = repo.pikaci(&["logs", "latest", "--job", "a", "--host-log"]);
    host_log.expect(0);
}

/// A stand-in `incus` on PATH (fakes are for error paths): failures and JSON pikaci
/// cannot read end as errors that name the command and show what it said.
#[test]
fn incus_errors_and_malformed_json_are_reported() {
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("incus");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let repo = repo("pikaci/any", "[jobs.a]\ncommand = \"true\"\n");
    let mut messages = Vec::new();
    for script in [
        "#!/bin/sh
echo 'Error: The incus daemon is not running' >&2
exit 1
",
        "#!/bin/sh
echo '[{\"fingerprint\": 7'
",
    ] {
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = crate::harness::Run::of(repo.command(&["run", "a"]).env("PATH", &path));
        run.expect(3);
        messages.push(repo.job("a").0["message"].as_str().unwrap().to_string());
    }
    insta::assert_snapshot!(messages.join("\n---\n"), @"
    Incus setup failed: cannot list the Incus images: on local: `incus image list --project default pikaci/any --format json` failed (exit status: 1):
    Error: The incus daemon is not running
    ---
    Incus setup failed: `incus image list` printed JSON pikaci cannot read: invalid type: integer `7`, expected a string at line 1 column 18
    ");
}

/// Incus on an SSH host, and the connection dies mid-job (pikaci's ssh master
/// killed): the job is an error that says so, and the instance is still deleted.
#[test]
fn a_dropped_ssh_connection_is_an_error_and_the_instance_is_deleted() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    // A host with its own store, as a remote host is (it shares this machine's incusd).
    let Some(ssh) = crate::harness::own_store_ssh(0) else {
        return;
    };
    let host = crate::harness::own_store_host(0).unwrap();
    let repo = Repo::new(&format!(
        "[defaults]\nbackend = \"incus\"\nhost = \"{host}\"\n\n\
         [ssh]\nidentity-file = \"{}\"\nknown-hosts-file = \"{}\"\n\n\
         [backends.incus]\nimage = \"{image}\"\ninstance-type = \"container\"\n\
         guest-agent = \"/usr/local/bin/pikaci-guest\"\n\n\
         [jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
        ssh.identity.unwrap().display(),
        ssh.known_hosts.unwrap().display(),
    ));
    let mut child = repo.start_until("slow", "guest-is-up");
    let run = repo.latest_run();
    let run = run.file_name().unwrap().to_string_lossy().into_owned();
    crate::harness::kill_ssh_master(child.id());
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let (status, _) = repo.job("slow");
    assert_eq!(status["status"], "error");
    let message = crate::harness::redact(status["message"].as_str().unwrap(), &repo);
    insta::assert_snapshot!(message, @"the connection to [SSH-HOST] was lost while the job ran");
    assert_eq!(instances_of(&run), 0, "the instance is deleted");
}

/// `backends.incus.sudo = true`: every `incus` runs through `sudo -n`, as on hosts where
/// only root may reach incusd. scripts/testbed/user.sh lets the test user run exactly
/// `incus` through sudo. An `incus` first on PATH that always fails proves the run went
/// through sudo, which finds the real one on its own secure path.
#[test]
fn incus_through_sudo() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    if std::process::Command::new("sudo")
        .args(["-n", "incus", "version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs `sudo -n incus` (scripts/testbed/user.sh)"
        );
        eprintln!("skipped: `sudo -n incus` is not allowed here");
        return;
    }
    let config = crate::harness::incus_config(
        &image,
        "sudo = true",
        "[jobs.who]\ncommand = \"id -un; cat src/lib.rs\"\n",
    );
    let repo = Repo::new(&config);
    let fake = tempfile::tempdir().unwrap();
    let incus = fake.path().join("incus");
    std::fs::write(&incus, "#!/bin/sh\necho 'not through sudo' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&incus, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Run::of(repo.command(&["run", "who"]).env("PATH", &path)).expect(0);
    let (status, log) = repo.job("who");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(log, "pikaci\npub fn x() {}\n");
    let run = repo.latest_run_id();
    assert_eq!(
        instances_of(&run),
        0,
        "the instance deleted through sudo too"
    );
}

/// The job's result is recorded before its instance is deleted: the final record and
/// `job_finished` come first, the `cleanup` phase (the delete) after, timed into the
/// record by a later update that keeps the result. `pikaci run` still waits for the
/// delete before it exits, also when interrupted in that window.
#[test]
fn the_result_is_recorded_before_the_delete_which_the_run_still_awaits() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let repo = repo(&image, "[jobs.quick]\ncommand = \"echo hi\"\n");
    repo.pikaci(&["run", "quick"]).expect(0);
    let run = repo.latest_run_id();
    assert_eq!(instances_of(&run), 0, "deleted before the run exited");
    result_then_cleanup(&repo, "passed");

    // Ctrl-C once the result is out: the delete goes on and is awaited.
    let mut child = repo
        .command(&["run", "quick", "--output", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = std::io::BufRead::lines(stdout);
    let finished = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("\"job_finished\""));
    assert!(finished.is_some(), "no job_finished event");
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    let run = repo.latest_run_id();
    assert_eq!(
        instances_of(&run),
        0,
        "Ctrl-C after the result: still deleted"
    );
    // The result stays what it was: the interruption came after it.
    result_then_cleanup(&repo, "passed");

    // Nobody reading its output: the same.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = repo
        .command(&["run", "quick"])
        .stdout(writer)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        instances_of(&repo.latest_run_id()),
        0,
        "stdout closed: deleted"
    );
    result_then_cleanup(&repo, "passed");
}

/// The latest run's `quick` job ended with `status`, its `job_finished` event came
/// before its `cleanup` phase began, and the record holds the delete's time.
fn result_then_cleanup(repo: &Repo, status: &str) {
    let run = repo.latest_run();
    let record = repo.read_json(&run.join("jobs/quick/status.json"));
    assert_eq!(record["status"], status, "{record}");
    assert!(record["phases"]["cleanup"].is_u64(), "{record}");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("{events:?}"))
    };
    let finished = at(&|e| e["type"] == "job_finished");
    let cleanup = at(&|e| e["type"] == "job_phase" && e["phase"] == "cleanup");
    assert!(finished < cleanup, "{events:#?}");
    let time = |i: usize| humantime::parse_rfc3339(events[i]["time"].as_str().unwrap()).unwrap();
    assert!(time(finished) <= time(cleanup), "{events:#?}");
}
