//! `[nix] build-host`: the microVM runner is built once, on the build host, and copied
//! from there to the other guest hosts (own-store testbed hosts); a build host that cannot
//! be reached, a build that fails there, and a guest host that refuses the copy are
//! errors naming the build host and the guest host, with the failing side's last lines.

use std::path::Path;

use crate::harness::{
    MicrovmTestbed, Repo, TestHost, hosts_toml, is_root, known_hosts_for, own_store_host, port_of,
    redact, testbed_microvm, tools_flake,
};

/// A config whose microVM jobs run on `hosts` (name, url; one slot each, labelled with
/// its name), builds on `build_host`, then `rest`.
fn config(
    testbed: &MicrovmTestbed,
    work: &Path,
    hosts: &[(&str, String)],
    build_host: &str,
    rest: &str,
) -> String {
    let pool: Vec<TestHost> = hosts
        .iter()
        .map(|(name, url)| TestHost {
            name,
            url: url.clone(),
            slots: Some(1),
            labels: vec![name],
        })
        .collect();
    let rest = format!("[nix]\nbuild-host = \"{build_host}\"\n\n{rest}");
    testbed.pool_config(work, &pool, &rest)
}

/// A job pinned to host `on`.
fn job_on(name: &str, on: &str) -> String {
    format!("[jobs.{name}]\ncommand = \"echo ran-on-{on}\"\nruns-on = [\"{on}\"]\n\n")
}

fn build_host_log(repo: &Repo) -> String {
    std::fs::read_to_string(repo.latest_run().join("prepare/build-host.log")).unwrap_or_default()
}

/// Store hashes differ between machines (the runner fixture's kernel is the testbed's).
fn redact_store(text: &str, repo: &Repo) -> String {
    let text = regex::Regex::new(r"/nix/store/[0-9a-z]{32}-")
        .unwrap()
        .replace_all(text, "/nix/store/[HASH]-")
        .into_owned();
    let text = regex::Regex::new(r"runner-[0-9a-f]{16}\b")
        .unwrap()
        .replace_all(&text, "runner-[ID]")
        .into_owned();
    let text = regex::Regex::new(r"port \d+")
        .unwrap()
        .replace_all(&text, "port [PORT]")
        .into_owned();
    redact(&text, repo)
}

/// A job pinned to host `on` that runs input `tools`' program.
fn tools_job_on(name: &str, on: &str) -> String {
    format!(
        "[jobs.{name}]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\nruns-on = [\"{on}\"]\n\n"
    )
}

/// One build serves every host: the build host builds the runner and the jobs' input
/// once, the other guest host receives their closures (rooted for the run) and builds
/// nothing, this machine builds nothing either, and both hosts' jobs pass.
#[test]
fn a_build_host_serves_two_guest_hosts_with_one_runner_build() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // Own-store hosts 0 and 2 trust the test user: they take unsigned paths.
    let hosts = [
        ("b", own_store_host(0).unwrap()),
        ("c", own_store_host(2).unwrap()),
    ];
    let marker = format!("built-{:?}", std::time::SystemTime::now());
    let jobs = format!(
        "[inputs]\ntools = \"./tools#tools\"\n\n{}{}",
        tools_job_on("on-b", "b"),
        tools_job_on("on-c", "c")
    );
    let repo = Repo::new(&config(&testbed, work.path(), &hosts, "b", &jobs));
    repo.write("tools/flake.nix", &tools_flake("pikaci-test", &marker));
    repo.commit("tools");
    let run = repo.pikaci(&["run", "on-b", "on-c"]);
    let log = build_host_log(&repo);
    run.expect(0);
    for (job, host) in [("on-b", "b"), ("on-c", "c")] {
        let (status, guest) = repo.job(job);
        assert_eq!(status["status"], "passed", "{job}: {status}\n{log}");
        assert_eq!(status["host"], host, "{job}");
        assert_eq!(guest, format!("{marker}\n"), "{job} ran its input");
    }
    // The input: built once, on b, not here; c got its closure from b.
    assert_eq!(log.matches("nix build of input tools").count(), 1, "{log}");
    let local_root = repo.latest_run().join("gcroots/input-tools");
    assert!(
        !local_root.exists(),
        "built here too: {}",
        local_root.display()
    );
    let b_root = work
        .path()
        .join("b/gcroots/runs")
        .join(repo.latest_run_id());
    // A link into b's own store, which this machine does not see.
    let b_link = std::fs::read_link(b_root.join("input-tools")).expect("rooted on b for the run");
    assert!(
        b_link.to_string_lossy().ends_with("-pikaci-test-tools"),
        "{b_link:?}"
    );
    let inputs_c = std::fs::read_to_string(repo.latest_run().join("jobs/on-c/inputs.log")).unwrap();
    assert!(
        inputs_c.contains("input tools: 2 path(s) in its closure, 2 missing on ssh://"),
        "{inputs_c}"
    );
    let builds = log.matches("nix build of the microVM runner").count();
    assert_eq!(builds, 1, "one runner build for both hosts:\n{log}");
    assert!(
        log.contains("copied the microVM runner") && log.contains("to guest host `c`"),
        "{log}"
    );
    assert!(
        !log.contains("to guest host `b`"),
        "the build host copies nothing to itself:\n{log}"
    );
    let prepare = repo.latest_run().join("prepare");
    assert!(prepare.join("microvm-runner-b.log").exists());
    assert!(
        !prepare.join("microvm-runner-c.log").exists(),
        "no build on c"
    );
    // c built nothing (no runner out-link of its own); the copy is rooted for the run.
    let c_roots = work.path().join("c/gcroots");
    let links: Vec<String> = std::fs::read_dir(&c_roots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!links.iter().any(|l| l.starts_with("runner-")), "{links:?}");
    let run_roots = c_roots.join("runs").join(repo.latest_run_id());
    let rooted: Vec<_> = std::fs::read_dir(&run_roots)
        .unwrap()
        .map(|e| std::fs::read_link(e.unwrap().path()).unwrap())
        .collect();
    // The runner and the input, rooted on c for the run.
    let mut names: Vec<String> = rooted
        .iter()
        .map(|r| r.to_string_lossy().split_once('-').unwrap().1.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["pikaci-test-tools", "pikaci-testbed-runner"],
        "{rooted:?}"
    );
    // A second run finds the runner on c: nothing to send.
    repo.pikaci(&["run", "on-c"]).expect(0);
    let again = build_host_log(&repo);
    assert!(
        again.contains("to guest host `c`: 0 path(s)"),
        "the second run sends nothing:\n{again}"
    );
    // gc drops the runs' roots on every host, the build host's input roots too.
    repo.pikaci(&["gc"]).expect(0);
    assert!(!b_root.exists(), "{}", b_root.display());
    assert!(!run_roots.exists(), "{}", run_roots.display());
}

/// The three ways a build host fails a guest host's setup, each an error of the job that
/// names the build host, the guest host and the failing side's last lines.
#[test]
fn a_build_host_that_fails_names_itself_and_the_guest_host() {
    if is_root() {
        eprintln!("skipped: every host trusts root; the refusal needs the test user");
        return;
    }
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    // `runner`: the runner installable instead of the testbed's, if given.
    let message = |hosts: &[(&str, String)], build_host: &str, runner: Option<&str>| {
        let work = tempfile::tempdir().unwrap();
        let mut config = config(&testbed, work.path(), hosts, build_host, &job_on("j", "g"));
        if let Some(runner) = runner {
            config = config.replace(
                &format!("runner = \"{}\"", testbed.runner),
                &format!("runner = \"{runner}\""),
            );
        }
        let repo = Repo::new(&config);
        repo.write(
            "broken/flake.nix",
            "{ outputs = { self }: { packages.x86_64-linux.runner = derivation {\n\
             name = \"pikaci-test-broken-runner\"; system = \"x86_64-linux\";\n\
             builder = \"/bin/sh\"; args = [ \"-c\" \"echo the runner does not build >&2; exit 1\" ]; }; }; }\n",
        );
        // A runner no host has yet (the testbed's may be in any host's store already).
        let marker = format!("{:?}", std::time::SystemTime::now());
        repo.write(
            "unique/flake.nix",
            &format!(
                "{{ outputs = {{ self }}: {{ packages.x86_64-linux.runner = derivation {{\n\
                 name = \"pikaci-test-unique-runner\"; system = \"x86_64-linux\";\n\
                 builder = \"/bin/sh\"; args = [ \"-c\" \"echo '{marker}' > $out\" ]; }}; }}; }}\n"
            ),
        );
        repo.commit("runners");
        repo.pikaci(&["run", "j"]).expect(3);
        let (status, _) = repo.job("j");
        assert_eq!(status["status"], "error", "{status}");
        let message = status["message"].as_str().unwrap();
        redact_store(
            &message.replace(&work.path().display().to_string(), "[WORK]"),
            &repo,
        )
    };
    let host = |n| own_store_host(n).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let dead_url = format!("{}:{dead_port}", host(0).rsplit_once(':').unwrap().0);
    let unreachable = message(&[("g", host(0)), ("down", dead_url)], "down", None);
    let failed_build = message(
        &[("g", host(2)), ("b", host(0))],
        "b",
        Some("./broken#runner"),
    );
    // Own-store host 1 trusts only root: the test user's unsigned copy is refused.
    let refused = message(
        &[("g", host(1)), ("b", host(0))],
        "b",
        Some("./unique#runner"),
    );
    insta::assert_snapshot!([unreachable, failed_build, refused].join("\n--\n"));
}

/// Inputs built on the build host: one that fails to build there is the run's error
/// naming the input and the build host, with Nix's last lines; one that the guest host
/// refuses (it trusts only root) fails its job, naming the build host, the input and the
/// guest host, with Nix's reason.
#[test]
fn an_input_the_build_host_cannot_build_or_send_is_an_error_naming_it() {
    if is_root() {
        eprintln!("skipped: every host trusts root; the refusal needs the test user");
        return;
    }
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let hosts = [
        ("g", own_store_host(1).unwrap()),
        ("b", own_store_host(0).unwrap()),
    ];
    let marker = format!("refused-{:?}", std::time::SystemTime::now());
    let jobs = "[inputs]\ntools = \"./tools#tools\"\nbroken = \"./broken#broken\"\n\n\
                [jobs.j]\ninputs = [\"tools\"]\ncommand = \"pikaci-test-hello\"\nruns-on = [\"g\"]\n\n\
                [jobs.k]\ninputs = [\"broken\"]\ncommand = \"true\"\nruns-on = [\"g\"]\n";
    let with_build_host = config(&testbed, work.path(), &hosts, "b", jobs);
    let repo = Repo::new(&with_build_host.replace("[nix]\nbuild-host = \"b\"\n", ""));
    repo.write("tools/flake.nix", &tools_flake("pikaci-test", &marker));
    repo.write(
        "broken/flake.nix",
        "{ outputs = { self }: { packages.x86_64-linux.broken = derivation {\n\
         name = \"pikaci-test-broken\"; system = \"x86_64-linux\";\n\
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo the input does not build >&2; exit 1\" ]; }; }; }\n",
    );
    repo.commit("inputs");
    // First without a build host: g builds the runner itself (and refuses the input from
    // here), so that the run with the build host below finds the runner there and only
    // the input's copy from b is refused.
    repo.pikaci(&["run", "j"]).expect(3);
    repo.write("pikaci.toml", &with_build_host);
    repo.commit("build host");
    let run = repo.pikaci(&["run", "j"]);
    run.expect(3);
    let (status, _) = repo.job("j");
    assert_eq!(status["status"], "error", "{status}");
    let refused = status["message"].as_str().unwrap().to_string();
    let log = build_host_log(&repo);
    assert!(log.contains("nix build of input tools"), "{log}");
    repo.pikaci(&["run", "k"]).expect(3);
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    let failed_build = record["message"].as_str().unwrap().to_string();
    let shown = [failed_build, refused].join("\n--\n");
    let shown = shown.replace(&work.path().display().to_string(), "[WORK]");
    insta::assert_snapshot!(redact_store(&shown, &repo));
}

/// A repo whose job `hello` runs in an Incus container (an image with a store of its
/// own) on guest host `g`, with an input `tools` that prints `marker`, built on build
/// host `b`; `nix` is added to `[nix]`. `None` without the testbed.
fn incus_job_with_an_input(work: &Path, nix: &str, marker: &str) -> Option<Repo> {
    let image = crate::harness::testbed_var("PIKACI_TEST_INCUS_NIX_IMAGE", "incus-nix.sh")?;
    let key = std::env::var("PIKACI_TEST_SSH_KEY").ok()?;
    let hosts = [("g", 2), ("b", 0)].map(|(name, n)| TestHost {
        name,
        url: own_store_host(n).unwrap(),
        slots: None,
        labels: vec![name],
    });
    let mut config = format!(
        "[defaults]\nbackend = \"incus\"\n\n\
         [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\n\
         [backends.incus]\nimage = \"{image}\"\ninstance-type = \"container\"\n\
         guest-agent = \"/usr/local/bin/pikaci-guest\"\n\
         limits = {{ memory = \"256MiB\", processes = 200 }}\n\n\
         [nix]\nbuild-host = \"b\"\n{nix}\n",
        known = known_hosts_for(work, &hosts.each_ref().map(|h| port_of(&h.url))).display(),
    );
    config.push_str(&hosts_toml(work, &hosts));
    config.push_str(
        "[inputs]\ntools = \"./tools#tools\"\n\n\
         [jobs.hello]\ninputs = [\"tools\"]\ncommand = \"pikaci-incus-hello\"\nruns-on = [\"g\"]\n",
    );
    let repo = Repo::new(&config);
    repo.write("tools/flake.nix", &tools_flake("pikaci-incus", marker));
    repo.commit("tools");
    Some(repo)
}

/// With `[nix] cache`, an input built on the build host is pushed to the cache from
/// there (it is not in this machine's store).
#[test]
fn an_input_built_on_the_build_host_is_pushed_from_there() {
    let work = tempfile::tempdir().unwrap();
    let cache_dir = work.path().join("cache");
    std::fs::create_dir(&cache_dir).unwrap();
    let nix = format!("cache = \"file://{}\"\n", cache_dir.display());
    let marker = format!("pushed-{:?}", std::time::SystemTime::now());
    let Some(repo) = incus_job_with_an_input(work.path(), &nix, &marker) else {
        return;
    };
    repo.pikaci(&["run", "hello"]).expect(0);
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    assert!(record["push"]["error"].is_null(), "{record}");
    let pushed: Vec<&str> = record["push"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(!pushed.is_empty(), "the input's output is pushed: {record}");
    for path in pushed {
        let hash = &path["/nix/store/".len()..][..32];
        assert!(
            cache_dir.join(format!("{hash}.narinfo")).is_file(),
            "{path} is in the cache"
        );
    }
}

/// An Incus job's input is built on the build host too, and reaches the guest host's
/// store from there, then the instance (an image with a store of its own: the testbed's
/// Incus server cannot mount an own-store host's `/nix/store`).
#[test]
fn an_incus_job_gets_its_input_from_the_build_host() {
    let work = tempfile::tempdir().unwrap();
    let marker = format!("incus-{:?}", std::time::SystemTime::now());
    let Some(repo) = incus_job_with_an_input(work.path(), "", &marker) else {
        return;
    };
    repo.pikaci(&["run", "hello"]).expect(0);
    let (status, log) = repo.job("hello");
    assert_eq!(status["status"], "passed", "{status}");
    assert!(log.starts_with(&format!("{marker}\n")), "{log}");
    let built = build_host_log(&repo);
    assert!(built.contains("nix build of input tools"), "{built}");
    assert!(!repo.latest_run().join("gcroots/input-tools").exists());
    let inputs = std::fs::read_to_string(repo.latest_run().join("jobs/hello/inputs.log")).unwrap();
    assert!(
        inputs.contains("input tools: 2 path(s) in its closure, 2 missing on ssh://"),
        "{inputs}"
    );
}
