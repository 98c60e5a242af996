//! Incus through an `incus remote` (issue 16, item 6): the server of
//! scripts/testbed/incus-remote.sh, a second incusd reached only over HTTPS on loopback,
//! a one-member cluster. Jobs run there with the workspace streamed in (never a disk
//! device with a source on this machine), `--target` places them on a member, a wrong
//! member is an error naming it, and doctor checks the remote and the members.

use std::time::{Duration, Instant};

use crate::harness::{Repo, Run, testbed_incus_image, testbed_var};

/// The remote and its one cluster member, as incus-remote.sh set them up for this user.
fn testbed_remote() -> Option<(String, String)> {
    let remote = testbed_var("PIKACI_TEST_INCUS_REMOTE", "incus-remote.sh")?;
    let member = testbed_var("PIKACI_TEST_INCUS_MEMBER", "incus-remote.sh")?;
    Some((remote, member))
}

fn repo(image: &str, incus: &str, jobs: &str) -> Repo {
    let settings = format!("limits = {{ memory = \"256MiB\", processes = 200 }}\n{incus}");
    Repo::new(&crate::harness::incus_config(image, &settings, jobs))
}

/// The remote's instances, as `incus list REMOTE: --format json` shows them.
fn remote_instances(remote: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("incus")
        .args(["list", &format!("{remote}:"), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The instances of this machine's own incusd (the CLI's default remote).
fn local_instances() -> Vec<serde_json::Value> {
    let out = std::process::Command::new("incus")
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn of_run<'a>(instances: &'a [serde_json::Value], run: &str) -> Vec<&'a serde_json::Value> {
    instances
        .iter()
        .filter(|i| i["config"]["user.pikaci.run"] == run)
        .collect()
}

/// Runs `pikaci run JOBS` in the background and returns the remote's record of the first
/// instance of a job `watched` seen running, with the run's result.
fn run_watching(
    repo: &Repo,
    remote: &str,
    jobs: &[&str],
    watched: &str,
) -> (Option<serde_json::Value>, Run) {
    let mut args = vec!["run"];
    args.extend(jobs);
    let child = repo
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("pikaci-{watched}-");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        seen = remote_instances(remote).into_iter().find(|i| {
            i["name"].as_str().is_some_and(|n| n.starts_with(&prefix)) && i["status"] == "Running"
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = child.wait_with_output().unwrap();
    (seen, Run { output })
}

#[test]
fn a_container_job_runs_through_the_remote_with_its_workspace_streamed_in() {
    let (Some(image), Some((remote, _))) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let repo = repo(
        &image,
        &format!("remote = \"{remote}\"\n"),
        r#"
[jobs.remote-pass]
command = "id -un; cat src/lib.rs; echo made > $PIKACI_ARTIFACTS/made.txt; sleep 4"

[jobs.remote-fail]
command = "echo about to fail; exit 7"
"#,
    );
    let (seen, run) = run_watching(
        &repo,
        &remote,
        &["remote-pass", "remote-fail"],
        "remote-pass",
    );
    run.expect(1);
    let (status, log) = repo.job("remote-pass");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(log, "pikaci\npub fn x() {}\n");
    assert!(status["phases"]["launch.workspace"].is_u64(), "{status}");
    let made = repo
        .latest_run()
        .join("jobs/remote-pass/artifacts/made.txt");
    assert_eq!(std::fs::read_to_string(made).unwrap(), "made\n");
    let (status, log) = repo.job("remote-fail");
    assert_eq!(status["exit_code"], 7, "{status}");
    assert_eq!(log, "about to fail\n");

    // It ran on the remote's server, with no device of its own: the workspace came in
    // through `incus exec`, not as a disk whose source is on this machine.
    let seen = seen.expect("the job's instance was seen running on the remote");
    let devices = seen["devices"].as_object().cloned().unwrap_or_default();
    assert!(devices.is_empty(), "devices of its own: {devices:?}");
    let run_id = repo.latest_run_id();
    assert_eq!(seen["config"]["user.pikaci.run"], run_id.as_str());
    // The image it came from is the remote's (incus-image is read from the instance).
    let used =
        std::fs::read_to_string(repo.latest_run().join("jobs/remote-pass/incus-image")).unwrap();
    let remote_image = std::process::Command::new("incus")
        .args([
            "image",
            "list",
            &format!("{remote}:{image}"),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let images: serde_json::Value = serde_json::from_slice(&remote_image.stdout).unwrap();
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["fingerprint"] == used.trim()),
        "{used} not among {images}"
    );
    assert!(
        of_run(&remote_instances(&remote), &run_id).is_empty(),
        "instances left on the remote"
    );
    assert!(
        of_run(&local_instances(), &run_id).is_empty(),
        "nothing ran on the local incusd"
    );
}

#[test]
fn a_job_goes_to_the_member_it_names_and_a_wrong_member_is_named_in_the_error() {
    let (Some(image), Some((remote, member))) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let repo = repo(
        &image,
        &format!("remote = \"{remote}\"\ntarget = \"{member}\"\n"),
        r#"
[jobs.placed]
command = "echo placed; sleep 4"

[jobs.misplaced]
incus-target = "pikaci-no-such-member"
command = "echo never"
"#,
    );
    let (seen, run) = run_watching(&repo, &remote, &["placed", "misplaced"], "placed");
    run.expect(3);
    let (status, log) = repo.job("placed");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(log, "placed\n");
    let seen = seen.expect("the job's instance was seen running on the remote");
    assert_eq!(seen["location"], member.as_str(), "{seen}");

    let (status, log) = repo.job("misplaced");
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(log, "");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(
            "Incus did not create it on cluster member `pikaci-no-such-member` \
             (jobs.misplaced.incus-target)"
        ) && message.contains(r#"Cluster member "pikaci-no-such-member" not found"#),
        "{message}"
    );
    // The whole command is in host.log: the member went to `incus init --target`.
    let host_log =
        std::fs::read_to_string(repo.latest_run().join("jobs/misplaced/host.log")).unwrap();
    assert!(
        host_log.contains(&format!("{remote}:{image}"))
            && host_log.contains("--target pikaci-no-such-member"),
        "{host_log}"
    );
    let run_id = repo.latest_run_id();
    assert!(
        of_run(&remote_instances(&remote), &run_id).is_empty(),
        "instances left on the remote"
    );
}

/// An image without a Nix store of its own would need the host's /nix/store mounted,
/// which a remote's server cannot see: an input is an error before the job starts.
#[test]
fn an_input_through_the_remote_needs_an_image_with_its_own_store() {
    let (Some(image), Some((remote, _))) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let repo = repo(
        &image,
        &format!("remote = \"{remote}\"\n"),
        "[inputs]\ntools = \"./tools#tools\"\n\n[jobs.with-tools]\ninputs = [\"tools\"]\ncommand = \"echo never\"\n",
    );
    repo.write(
        "tools/flake.nix",
        &crate::harness::tools_flake("pikaci-remote", "remote-tools"),
    );
    repo.commit("tools");
    repo.pikaci(&["run", "with-tools"]).expect(3);
    let (status, log) = repo.job("with-tools");
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(log, "");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "on Incus remote `{remote}`: its image has no Nix store of its own"
        )),
        "{message}"
    );
    let run_id = repo.latest_run_id();
    assert!(
        of_run(&remote_instances(&remote), &run_id).is_empty(),
        "instances left on the remote"
    );
}

/// An image with a Nix store of its own gets the input's closure imported from this
/// machine through the remote (`nix-store --export | incus exec REMOTE:… nix-store
/// --import`), and the job runs the input's program.
#[test]
fn an_input_through_the_remote_is_imported_into_the_instance_store() {
    let (Some(image), Some((remote, _))) = (
        testbed_var(
            "PIKACI_TEST_INCUS_REMOTE_NIX_IMAGE",
            "incus-remote.sh nix-image",
        ),
        testbed_remote(),
    ) else {
        return;
    };
    let marker = format!("remote-tools-{}", std::process::id());
    let repo = repo(
        &image,
        &format!("remote = \"{remote}\"\n"),
        "[inputs]\ntools = \"./tools#tools\"\n\n[jobs.with-tools]\ninputs = [\"tools\"]\ncommand = \"pikaci-remote-hello\"\n",
    );
    repo.write(
        "tools/flake.nix",
        &crate::harness::tools_flake("pikaci-remote", &marker),
    );
    repo.commit("tools");
    repo.pikaci(&["run", "with-tools"]).expect(0);
    let (status, log) = repo.job("with-tools");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(log, format!("{marker}\n"));
    let noted =
        std::fs::read_to_string(repo.latest_run().join("jobs/with-tools/inputs.log")).unwrap();
    assert!(
        noted.contains("a Nix store of its own; 2 path(s) imported from local"),
        "{noted}"
    );
    let run_id = repo.latest_run_id();
    assert!(
        of_run(&remote_instances(&remote), &run_id).is_empty(),
        "instances left on the remote"
    );
}

#[test]
fn doctor_checks_the_remote_and_the_members() {
    let (Some(image), Some((remote, member))) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let jobs = "[jobs.a]\ncommand = \"true\"\n";
    let good = repo(
        &image,
        &format!("remote = \"{remote}\"\ntarget = \"{member}\"\n"),
        jobs,
    );
    let doctor = good.pikaci(&["doctor"]);
    doctor.expect(0);
    let out = doctor.stdout();
    for line in [
        format!("Incus remote {remote} on local: known, at https://127.0.0.1:"),
        format!("Incus remote {remote}: incusd answers and trusts this client"),
        format!("Incus cluster member {member}: exists"),
    ] {
        assert!(out.contains(&line), "{line}\n{out}");
    }

    let unknown = repo(&image, "remote = \"pikaci-no-such-remote\"\n", jobs);
    let doctor = unknown.pikaci(&["doctor"]);
    assert_ne!(doctor.code(), 0, "{}", doctor.stdout());
    let out = doctor.stdout();
    assert!(
        out.contains("Incus remote pikaci-no-such-remote on local: not known to this user's incus client")
            && out.contains("incus remote add pikaci-no-such-remote https://SERVER:8443 --token TOKEN --accept-certificate"),
        "{out}"
    );

    let wrong_member = repo(
        &image,
        &format!("remote = \"{remote}\"\ntarget = \"pikaci-no-such-member\"\n"),
        jobs,
    );
    let doctor = wrong_member.pikaci(&["doctor"]);
    assert_ne!(doctor.code(), 0, "{}", doctor.stdout());
    let out = doctor.stdout();
    assert!(
        out.contains("Incus cluster member pikaci-no-such-member:")
            && out.contains("incus cluster list"),
        "{out}"
    );
}

/// Removes a test alias and its image from the remote, however the test ends.
struct RemoteImageGuard {
    remote: String,
    alias: String,
    fingerprint: String,
}

impl Drop for RemoteImageGuard {
    fn drop(&mut self) {
        let incus = |args: &[&str]| std::process::Command::new("incus").args(args).output();
        let _ = incus(&[
            "image",
            "alias",
            "delete",
            &format!("{}:{}", self.remote, self.alias),
        ]);
        let _ = incus(&[
            "image",
            "delete",
            &format!("{}:{}", self.remote, self.fingerprint),
        ]);
    }
}

/// `pikaci image import` uploads to the remote's server (`incus image import … REMOTE:`)
/// and `pikaci gc` deletes a killed run's instance there.
#[test]
fn images_and_gc_go_through_the_remote() {
    let (Some(image), Some((remote, _))) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some((_, second)) = crate::incus::image_dirs(tmp.path()) else {
        return;
    };
    let alias = format!("pikaci-remote/e2e-{}", std::process::id());
    let fingerprint = crate::incus::fingerprint(&second);
    let _guard = RemoteImageGuard {
        remote: remote.clone(),
        alias: alias.clone(),
        fingerprint: fingerprint.clone(),
    };
    let repo = repo(
        &image,
        &format!("remote = \"{remote}\"\n"),
        "[jobs.remote-slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
    );
    let second = second.display().to_string();
    repo.pikaci(&["image", "import", "--alias", &alias, &second])
        .expect(0);
    let listed = |on: &str| {
        let out = std::process::Command::new("incus")
            .args(["image", "list", &format!("{on}{alias}"), "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    };
    let there = listed(&format!("{remote}:"));
    assert_eq!(there.len(), 1, "{there:?}");
    assert_eq!(there[0]["fingerprint"], fingerprint.as_str());
    assert!(listed("").is_empty(), "imported into the local incusd too");
    let list = repo.pikaci(&["image", "list"]);
    list.expect(0);
    assert!(list.stdout().contains(&alias), "{}", list.stdout());

    let mut child = repo.start_until("remote-slow", "guest-is-up");
    child.kill().unwrap();
    child.wait().unwrap();
    let run = repo.latest_run_id();
    assert_eq!(
        of_run(&remote_instances(&remote), &run).len(),
        1,
        "a killed pikaci leaves its instance"
    );
    let gc = repo.pikaci(&["gc"]);
    gc.expect(0);
    assert!(
        gc.stdout().contains("removed 1 Incus instance(s)"),
        "{}",
        gc.stdout()
    );
    assert!(of_run(&remote_instances(&remote), &run).is_empty());
}

/// A remote the client knows whose server does not answer: doctor says so, with where
/// to look. The client config is a copy of this user's (its certificate) with one more
/// remote, on a loopback port where nothing listens.
#[test]
fn doctor_names_a_remote_that_does_not_answer() {
    let (Some(image), Some(_)) = (testbed_incus_image(), testbed_remote()) else {
        return;
    };
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap());
    let conf = tempfile::tempdir().unwrap();
    for file in ["client.crt", "client.key"] {
        std::fs::copy(
            home.join(".config/incus").join(file),
            conf.path().join(file),
        )
        .unwrap();
    }
    std::fs::write(
        conf.path().join("config.yml"),
        "default-remote: local\nremotes:\n  pikaci-dead:\n    addr: https://127.0.0.1:1\n    \
         protocol: incus\n    auth_type: tls\n",
    )
    .unwrap();
    let repo = repo(
        &image,
        "remote = \"pikaci-dead\"\n",
        "[jobs.a]\ncommand = \"true\"\n",
    );
    let doctor = Run::of(repo.command(&["doctor"]).env("INCUS_CONF", conf.path()));
    assert_ne!(doctor.code(), 0, "{}", doctor.stdout());
    let out = doctor.stdout();
    assert!(
        out.contains("Incus remote pikaci-dead on local: known, at https://127.0.0.1:1")
            && out.contains("FAIL  Incus remote pikaci-dead:")
            && out.contains("the remote's server does not answer"),
        "{out}"
    );
}
