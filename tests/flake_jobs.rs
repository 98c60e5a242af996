//! Flake targets (`[targets.T] flake = ".#checks"`) against real Nix: each check is a
//! build job that passes or fails with nix's log, is `cached` on the next run (and built
//! again with `--no-cache-skip`); outputs are pushed to a `file://` cache, from which a
//! host with its own store substitutes them instead of building; an evaluation error
//! names the attribute; a failed push fails no job.

use std::path::Path;

use crate::harness::{Repo, known_hosts_for, nix_available, own_store_host, port_of, testbed_ssh};

/// Unique to this test's run, so that its derivations are new to every store.
fn marker() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A flake whose `checks.x86_64-linux` has `ok` (writes its output) and `bad` (fails),
/// each depending on `marker`.
fn checks_flake(marker: &str, bad: bool) -> String {
    let bad = if bad {
        r#"bad = mk "bad" "echo failing-on-purpose >&2; exit 1";"#
    } else {
        ""
    };
    format!(
        r#"{{
  outputs = {{ self }}: let
    mk = name: script: builtins.derivation {{
      name = "pikaci-flake-job-${{name}}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo {marker} >/dev/null; ${{script}}" ];
    }};
  in {{
    checks.x86_64-linux = {{
      ok = mk "ok" "echo building-ok; echo {marker} > $out";
      {bad}
    }};
  }};
}}
"#
    )
}

fn repo(config: &str, flake: &str) -> Repo {
    let repo = Repo::new(&format!("[defaults]\nbackend = \"host\"\n{config}"));
    repo.write("flake.nix", flake);
    repo.commit("flake");
    repo
}

fn nix_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env(
        "NIX_CONFIG",
        "experimental-features = nix-command flakes\nsubstituters =",
    )
}

fn run(repo: &Repo, args: &[&str]) -> crate::harness::Run {
    crate::harness::Run::of(nix_env(&mut repo.command(args)))
}

const TARGET: &str = "[targets.checks]\nflake = \".#checks\"\n\
    [jobs.after]\ncommand = \"echo after\"\nneeds = [\"checks.ok\"]\n\
    [targets.ci]\njobs = [\"after\"]\n";

#[test]
fn checks_pass_and_fail_with_their_logs_then_are_cached() {
    if !nix_available() {
        return;
    }
    let marker = marker();
    let repo = repo(TARGET, &checks_flake(&marker, true));
    let listed = run(&repo, &["targets"]);
    listed.expect(0);
    assert!(
        listed.stdout().contains("ok → checks.ok"),
        "{}",
        listed.stdout()
    );

    let junit = repo.path().join(".pikaci/junit.xml");
    let junit_arg = junit.to_string_lossy().into_owned();
    run(&repo, &["run", "--no-progress", "--junit", &junit_arg]).expect(1);
    let (ok, ok_log) = repo.job("checks.ok");
    assert_eq!(ok["status"], "passed", "{ok}");
    assert!(
        ok["phases"]["eval"].is_u64() && ok["phases"]["build"].is_u64(),
        "{ok}"
    );
    let (bad, bad_log) = repo.job("checks.bad");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(bad_log.contains("failing-on-purpose"), "{bad_log}");
    assert!(!ok_log.contains("failing-on-purpose"), "{ok_log}");
    let (after, _) = repo.job("after");
    assert_eq!(
        after["status"], "passed",
        "a TOML job runs after the check it needs"
    );
    let host_log =
        std::fs::read_to_string(repo.latest_run().join("jobs/checks.ok/host.log")).unwrap();
    assert!(host_log.contains("build --dry-run --json"), "{host_log}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"checks.bad\""), "{xml}");
    let plan = repo.read_json(&repo.latest_run().join("plan.json"));
    assert_eq!(plan["evaluations"][0]["attr_path"], "checks.x86_64-linux");
    assert!(plan["evaluations"][0]["duration_ms"].is_u64());

    run(&repo, &["run", "--no-progress", "checks.ok", "after"]).expect(0);
    let (ok, _) = repo.job("checks.ok");
    assert_eq!(ok["status"], "cached", "{ok}");
    assert!(ok["phases"].get("build").is_none(), "not built: {ok}");
    let (after, _) = repo.job("after");
    assert_eq!(
        after["status"], "passed",
        "cached counts as passed for needs"
    );
    let again = run(&repo, &["rerun", "latest", "--failed", "--no-progress"]);
    again.expect(0);
    let out = again.stdout();
    assert!(
        out.contains(": 0 job(s)"),
        "a cached job is not rerun: {out}"
    );

    run(
        &repo,
        &["run", "--no-progress", "--no-cache-skip", "checks.ok"],
    )
    .expect(0);
    let (ok, _) = repo.job("checks.ok");
    assert_eq!(ok["status"], "passed", "{ok}");
    assert!(ok["phases"]["build"].is_u64(), "{ok}");
}

#[test]
fn an_evaluation_error_is_a_configuration_error_naming_the_attribute() {
    if !nix_available() {
        return;
    }
    let flake = "{ outputs = { self }: { checks = throw \"no-checks-here\"; }; }\n";
    let repo = repo("[targets.checks]\nflake = \".#checks\"\n", flake);
    for args in [&["targets"][..], &["run", "--no-progress"][..]] {
        let out = run(&repo, args);
        out.expect(2);
        let err = out.stderr();
        assert!(err.contains("targets.checks.flake"), "{err}");
        assert!(err.contains("`.#checks`"), "{err}");
        assert!(err.contains("no-checks-here"), "nix's stderr: {err}");
    }
}

#[test]
fn a_failed_push_is_reported_and_the_exit_code_follows_the_jobs() {
    if !nix_available() {
        return;
    }
    let repo = repo("", &checks_flake(&marker(), false));
    // A cache under a regular file cannot be created, by root either.
    repo.write("not-a-dir", "");
    let cache = format!("file://{}/not-a-dir/cache", repo.path().display());
    let config = format!("[defaults]\nbackend = \"host\"\n[nix]\ncache = \"{cache}\"\n{TARGET}");
    repo.write("pikaci.toml", &config);
    repo.commit("cache");
    let out = run(&repo, &["run", "--no-progress", "checks"]);
    out.expect(0);
    assert!(out.stderr().contains("the push to"), "{}", out.stderr());
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    assert_eq!(record["status"], "passed");
    assert!(record["push"]["error"].as_str().is_some(), "{record}");
}

/// `nix key generate-secret` into `dir/cache.sec`.
fn signing_key(dir: &Path) -> std::path::PathBuf {
    let out = nix_env(&mut std::process::Command::new("nix"))
        .args(["key", "generate-secret", "--key-name", "pikaci-test-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("cache.sec");
    std::fs::write(&file, out.stdout).unwrap();
    file
}

/// Pushed here to a `file://` cache, signed; then a build host with its own store (which
/// trusts the test user, so it may add a substituter) fetches the output from the cache
/// instead of building it.
#[test]
fn an_own_store_host_substitutes_what_a_run_pushed() {
    if !nix_available() {
        return;
    }
    let (Some(url), Some(ssh)) = (own_store_host(0), testbed_ssh()) else {
        eprintln!("skipped: no own-store testbed host (scripts/testbed/hosts.sh)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // The host's daemon reads the cache: a directory everyone may read.
    let cache_dir = work.path().join("cache");
    std::fs::create_dir(&cache_dir).unwrap();
    let key = signing_key(work.path());
    let cache = format!("file://{}", cache_dir.display());
    let nix = format!(
        "[nix]\ncache = \"{cache}\"\nsigning-key-file = \"{}\"\n",
        key.display()
    );
    let repo = repo(&format!("{nix}{TARGET}"), &checks_flake(&marker(), false));
    run(&repo, &["run", "--no-progress", "checks"]).expect(0);
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    assert!(record["push"]["error"].is_null(), "{record}");
    assert_eq!(
        record["push"]["paths"].as_array().unwrap().len(),
        1,
        "{record}"
    );

    let known = known_hosts_for(work.path(), &[port_of(&url)]);
    let pool = format!(
        "[defaults]\nbackend = \"host\"\n\
         [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\
         [hosts.b]\nurl = \"{url}\"\nwork-dir = \"{work}/b\"\n\
         {nix}build-host = \"b\"\n{TARGET}",
        key = ssh.identity.unwrap().display(),
        known = known.display(),
        work = work.path().display(),
    );
    repo.write("pikaci.toml", &pool);
    repo.commit("on the build host");
    // In the cache, so `cached` unless forced; forced, the host substitutes.
    run(&repo, &["run", "--no-progress", "checks"]).expect(0);
    let (ok, _) = repo.job("checks.ok");
    assert_eq!(ok["status"], "cached", "{ok}");
    assert!(
        ok["message"].as_str().unwrap().contains("in the cache"),
        "{ok}"
    );
    run(
        &repo,
        &["run", "--no-progress", "--no-cache-skip", "checks"],
    )
    .expect(0);
    let (ok, log) = repo.job("checks.ok");
    assert_eq!(ok["status"], "passed", "{ok}\n{log}");
    assert_eq!(ok["host"], "b", "{ok}");
    assert!(
        log.contains("copying path") && log.contains(&format!("from '{cache}'")),
        "substituted from the cache: {log}"
    );
    assert!(!log.contains("building '"), "not built there: {log}");

    // A check new to every store builds on the build host and is pushed from there,
    // then signed in the cache from here.
    let fresh = marker();
    repo.write("flake.nix", &checks_flake(&fresh, false));
    repo.commit("a new check");
    run(&repo, &["run", "--no-progress", "checks"]).expect(0);
    let (ok, log) = repo.job("checks.ok");
    assert_eq!(ok["status"], "passed", "{ok}\n{log}");
    assert!(log.contains("building '"), "built on the build host: {log}");
    let record = repo.read_json(&repo.latest_run().join("run.json"));
    assert!(record["push"]["error"].is_null(), "{record}");
    let pushed = record["push"]["paths"][0].as_str().unwrap().to_string();
    assert!(pushed.ends_with("-pikaci-flake-job-ok"), "{record}");
    let hash = &pushed["/nix/store/".len()..][..32];
    let narinfo = std::fs::read_to_string(cache_dir.join(format!("{hash}.narinfo"))).unwrap();
    assert!(narinfo.contains("Sig: pikaci-test-1:"), "signed: {narinfo}");
}
