//! Incus jobs get their inputs (issue 15): the input's closure reaches the instance, from
//! the host's store for an image without a store of its own (the testbed image
//! `pikaci/test`), imported into the image's own store for one with Nix in it
//! (`pikaci-nix/test` of scripts/testbed/incus-nix.sh), on this machine and on a host
//! with a store of its own; an input the host cannot get fails the job before any
//! instance exists.

use crate::harness::{Repo, is_root, own_store_host, redact, testbed_var, tools_flake};

fn unique_marker() -> String {
    format!(
        "made-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Where the jobs run: this machine, or an SSH host (`[defaults] host` and `[ssh]`).
fn config(image: &str, host: Option<&str>, jobs: &str) -> String {
    let defaults = match host {
        None => "[defaults]\nbackend = \"incus\"\n".to_string(),
        Some(host) => format!(
            "[defaults]\nbackend = \"incus\"\nhost = \"{host}\"\n\n\
             [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n",
            key = std::env::var("PIKACI_TEST_SSH_KEY").expect("PIKACI_TEST_SSH_KEY"),
            known = std::env::var("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS")
                .expect("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS"),
        ),
    };
    format!(
        "{defaults}\n[backends.incus]\nimage = \"{image}\"\ninstance-type = \"container\"\n\
         guest-agent = \"/usr/local/bin/pikaci-guest\"\n\
         limits = {{ memory = \"256MiB\", processes = 200 }}\n\n\
         [inputs]\ntools = \"./tools#tools\"\n\n{jobs}"
    )
}

fn repo_with_tools(config: &str, marker: &str) -> Repo {
    let repo = Repo::new(config);
    repo.write("tools/flake.nix", &tools_flake("pikaci-incus", marker));
    repo.commit("tools");
    repo
}

fn inputs_log(repo: &Repo, job: &str) -> String {
    let path = repo.latest_run().join("jobs").join(job).join("inputs.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The instances of the latest run still present (the guest deletes its own).
fn instances_left(repo: &Repo) -> usize {
    let out = std::process::Command::new("incus")
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let run = repo.latest_run_id();
    list.iter()
        .filter(|i| i["config"]["user.pikaci.run"] == run.as_str())
        .count()
}

/// The job runs its input's command, which reads the input's dependency: the whole
/// closure is in the instance, and the input's bin dir is on the job's PATH.
fn assert_ran_with_input(repo: &Repo, job: &str, marker: &str) {
    let (status, log) = repo.job(job);
    assert_eq!(status["status"], "passed", "{job}: {status}\n{log}");
    assert!(
        log.starts_with(&format!("{marker}\n")),
        "{job} read its input's closure: {log}"
    );
    assert!(status["phases"]["launch.inputs"].is_u64(), "{status}");
    assert_eq!(instances_left(repo), 0, "the instance is deleted");
}

/// The testbed image has no store: the host's store is mounted read-only at /nix/store.
#[test]
fn an_incus_job_gets_its_input_from_the_host_store() {
    let Some(image) = testbed_var("PIKACI_TEST_INCUS_IMAGE", "incus.sh") else {
        return;
    };
    let marker = unique_marker();
    let repo = repo_with_tools(
        &config(
            &image,
            None,
            "[jobs.hello]\ninputs = [\"tools\"]\n\
             command = \"pikaci-incus-hello; touch /nix/store/x 2>/dev/null || echo read-only\"\n",
        ),
        &marker,
    );
    repo.pikaci(&["run", "hello"]).expect(0);
    assert_ran_with_input(&repo, "hello", &marker);
    let (_, log) = repo.job("hello");
    assert!(log.ends_with("read-only\n"), "{log}");
    let noted = inputs_log(&repo, "hello");
    assert!(
        noted.contains("no Nix store of its own; local's /nix/store mounted read-only"),
        "{noted}"
    );
}

/// An image with Nix and a store of its own keeps it: the closure is imported into it
/// (the image's own path is still there), on this machine or on an SSH host.
fn own_store_image_run(host: Option<&str>) {
    let Some(image) = testbed_var("PIKACI_TEST_INCUS_NIX_IMAGE", "incus-nix.sh") else {
        return;
    };
    let marker = unique_marker();
    let repo = repo_with_tools(
        &config(
            &image,
            host,
            "[jobs.hello]\ninputs = [\"tools\"]\n\
             command = \"pikaci-incus-hello; ls /nix/store | grep -c -- -pikaci-image-own\"\n",
        ),
        &marker,
    );
    repo.pikaci(&["run", "hello"]).expect(0);
    assert_ran_with_input(&repo, "hello", &marker);
    let (_, log) = repo.job("hello");
    assert_eq!(
        log,
        format!("{marker}\n1\n"),
        "the image's own store is not hidden"
    );
    let noted = inputs_log(&repo, "hello");
    assert!(
        noted.contains("a Nix store of its own; 2 path(s) imported from"),
        "{noted}"
    );
}

#[test]
fn an_incus_job_gets_its_input_imported_into_an_image_with_its_own_store() {
    own_store_image_run(None);
}

/// The host has a store of its own: the input reaches the host's store first
/// (`HostSession::ensure_inputs`), then the instance's from there.
#[test]
fn an_incus_job_on_a_host_with_its_own_store_gets_its_input() {
    let Some(host) = own_store_host(0) else {
        return;
    };
    own_store_image_run(Some(&host));
}

/// A host that refuses the input: the job is an infrastructure error naming the input,
/// its store path and the host, and no instance was ever made.
#[test]
fn an_input_the_host_refuses_fails_the_incus_job_before_any_instance() {
    if is_root() {
        eprintln!("skipped: every host trusts root; the refusal needs the test user");
        return;
    }
    let Some(image) = testbed_var("PIKACI_TEST_INCUS_IMAGE", "incus.sh") else {
        return;
    };
    let Some(host) = own_store_host(1) else {
        return;
    };
    let repo = repo_with_tools(
        &config(
            &image,
            Some(&host),
            "[jobs.hello]\ninputs = [\"tools\"]\ncommand = \"pikaci-incus-hello\"\n",
        ),
        &unique_marker(),
    );
    repo.pikaci(&["run", "hello"]).expect(3);
    let (status, _) = repo.job("hello");
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(status["failed_in"], "launch", "{status}");
    let message = status["message"].as_str().unwrap();
    let store = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-").unwrap();
    let shown = redact(&store.replace_all(message, "/nix/store/[HASH]-"), &repo);
    insta::assert_snapshot!(shown, @"
    job `hello` cannot start: input `tools` (/nix/store/[HASH]-pikaci-incus-tools) is not valid on [SSH-HOST]: copying its closure there failed (exit status: 1); last lines of the copy:
    error: cannot add path '/nix/store/[HASH]-pikaci-incus-dep' because it lacks a valid signature
    hint: the host's Nix takes unsigned store paths only from root and its `trusted-users`; add the SSH user to `trusted-users` in the host's nix.conf and restart its nix-daemon, or sign the paths where they are built (`secret-key-files`, here or on the build host) with a key the host's `trusted-public-keys` lists
    ");
    assert_eq!(instances_left(&repo), 0, "no instance was made");
}
