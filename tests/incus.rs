//! The Incus backend end to end against the real incusd (containers; VMs need vsock,
//! which the test machines lack), with the image from `scripts/testbed/incus.sh`.

use std::time::{Duration, Instant};

use crate::harness::Repo;

fn image() -> Option<String> {
    crate::harness::testbed_var("PIKACI_TEST_INCUS_IMAGE", "incus.sh")
}

fn repo(image: &str, jobs: &str) -> Repo {
    Repo::new(&format!(
        "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
         instance-type = \"container\"\nguest-agent = \"/usr/local/bin/pikaci-guest\"\n\n{jobs}"
    ))
}

/// Instances of `run` still present.
fn instances_of(run: &str) -> Vec<String> {
    let out = std::process::Command::new("incus")
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .filter(|i| i["config"]["user.pikaci.run"] == run)
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn jobs_run_in_incus_containers_with_their_outcomes() {
    let Some(image) = image() else { return };
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

    let run = repo
        .latest_run()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        instances_of(&run),
        Vec::<String>::new(),
        "every instance deleted"
    );
}

#[test]
fn a_missing_image_alias_says_how_to_get_one() {
    if image().is_none() {
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
    assert!(message.contains("scripts/testbed/incus.sh"), "{message}");
}

#[test]
fn gc_deletes_the_instance_of_a_killed_run() {
    let Some(image) = image() else { return };
    let repo = repo(
        &image,
        "[jobs.slow]\ncommand = \"echo guest-is-up; sleep 300\"\n",
    );
    let mut child = repo
        .command(&["run", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        repo.wait_for_host_log("slow", "guest-is-up", Duration::from_secs(60)),
        "the job never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let run = repo
        .latest_run()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        instances_of(&run).len(),
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
    assert_eq!(instances_of(&run), Vec::<String>::new());
}
