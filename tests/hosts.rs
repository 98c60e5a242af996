//! `pikaci hosts` and `pikaci doctor` over a pool: the two own-store testbed hosts
//! (scripts/testbed/hosts.sh) and one dead host, a port nothing listens on. The live
//! hosts are listed with what their probe read, the dead one with why; both commands
//! name each host, and fail for the dead one. And a run spread over the two live hosts:
//! each report names the host each job ran on, and status the host that was down.

use std::time::{Duration, Instant};

use crate::harness::{
    Repo, Run, incus_config, own_store_host, own_store_ssh, testbed_incus_image, testbed_microvm,
};

/// A loopback port nothing listens on: bound once by the system's choice, then freed.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The pool: `store-a` and `store-b` (which declares `kvm` and two slots), and `dead`.
/// Its one microVM job makes doctor check the guest hosts.
fn pool_repo(work: &std::path::Path) -> Option<Repo> {
    let testbed = testbed_microvm()?;
    let ssh = own_store_ssh(0)?;
    let config = format!(
        "[defaults]\nbackend = \"microvm\"\nwork-dir = \"{work}\"\n\n\
         [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\
         connect-timeout = \"10s\"\n\n\
         [backends.microvm]\nrunner = \"{runner}\"\nvirtiofsd = \"{virtiofsd}\"\n\n\
         [hosts.store-a]\nurl = \"{a}\"\n\n\
         [hosts.store-b]\nurl = \"{b}\"\nslots = 2\nlabels = [\"kvm\"]\n\n\
         [hosts.dead]\nurl = \"ssh://{user}@127.0.0.1:{port}\"\n\n\
         [jobs.t]\ncommand = \"true\"\n",
        work = work.display(),
        key = ssh.identity.as_ref().unwrap().display(),
        known = ssh.known_hosts.as_ref().unwrap().display(),
        runner = testbed.runner,
        virtiofsd = testbed.virtiofsd,
        a = own_store_host(0)?,
        b = own_store_host(1)?,
        user = ssh.user.as_deref().unwrap(),
        port = dead_port(),
    );
    Some(Repo::new(&config))
}

#[test]
fn hosts_lists_the_live_hosts_with_their_facts_and_the_dead_one_with_why() {
    let work = tempfile::tempdir().unwrap();
    let Some(repo) = pool_repo(work.path()) else {
        return;
    };
    let started = Instant::now();
    let json = repo.pikaci(&["hosts", "--json"]);
    // One host did not answer: an infrastructure problem, exit code 3 (docs/running.md).
    json.expect(3);
    // Probed at once: the dead host's refusal does not wait for the others.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let hosts = json.json();
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dead", "store-a", "store-b"], "{hosts:#}");
    let dead = &hosts[0];
    assert_eq!(dead["reachable"], false, "{dead:#}");
    let why = dead["error"].as_str().unwrap();
    assert!(why.contains("Connection refused"), "{why}");
    assert!(!why.contains('\n'), "one line: {why}");
    for live in [&hosts[1], &hosts[2]] {
        assert_eq!(live["reachable"], true, "{live:#}");
        assert_eq!(live["system"], "x86_64-linux", "{live:#}");
        assert!(
            live["labels_detected"]
                .as_array()
                .unwrap()
                .contains(&"x86_64-linux".into())
        );
        assert!(live["nix"].as_str().unwrap().contains("2."), "{live:#}");
        assert!(live["free_kib"].as_u64().unwrap() > 0, "{live:#}");
        assert!(live["slots"].as_u64().unwrap() >= 1, "{live:#}");
        assert_eq!(live["work_dir"], work.path().to_str().unwrap());
    }
    let b = &hosts[2];
    assert_eq!(
        (b["slots"].as_u64(), &b["slots_configured"]),
        (Some(2), &true.into())
    );
    assert_eq!(b["labels_declared"], serde_json::json!(["kvm"]));
    // A declared `kvm` the probe does not find is a warning; found, none.
    let warned = !b["warnings"].as_array().unwrap().is_empty();
    assert_eq!(warned, b["kvm"] == false, "{b:#}");

    let text = repo.pikaci(&["hosts"]);
    text.expect(3);
    let out = text.stdout();
    assert!(out.contains("dead (ssh://"), "{out}");
    assert!(out.contains("): UNREACHABLE: "), "{out}");
    assert!(out.contains("store-a (ssh://"), "{out}");
    assert!(out.contains("  slots   2 (configured)"), "{out}");
    assert!(out.contains("kvm (declared)"), "{out}");
    assert!(out.contains("x86_64-linux"), "{out}");
    assert!(out.ends_with("2 of 3 host(s) reachable\n"), "{out}");

    // Without the dead host every host answers: exit code 0.
    let live = repo.pikaci(&["hosts", "--host", "store-a"]);
    live.expect(0);
    assert!(
        live.stdout().ends_with("1 of 1 host(s) reachable\n"),
        "{}",
        live.stdout()
    );
}

/// ssh processes still running whose command line names `port`.
fn ssh_processes_on(port: u16) -> Vec<String> {
    let needle = format!("\0-p\0{port}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).into_owned();
            (text.starts_with("ssh\0") && text.contains(&needle)).then(|| text.replace('\0', " "))
        })
        .collect()
}

#[test]
fn silent_hosts_are_probed_at_once_and_cost_one_connect_timeout() {
    let Some(ssh) = own_store_ssh(0) else {
        return;
    };
    // Listening, never answering: ssh waits for a banner until its connect timeout.
    let silent: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = silent
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let mut config = format!(
        "[defaults]\nbackend = \"microvm\"\n\n\
         [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\
         connect-timeout = \"3s\"\n\n[jobs.t]\ncommand = \"true\"\n",
        key = ssh.identity.as_ref().unwrap().display(),
        known = ssh.known_hosts.as_ref().unwrap().display(),
    );
    for (n, port) in ports.iter().enumerate() {
        config.push_str(&format!(
            "\n[hosts.silent-{n}]\nurl = \"ssh://ci@127.0.0.1:{port}\"\n"
        ));
    }
    let repo = Repo::new(&config);
    let started = Instant::now();
    let run = repo.pikaci(&["hosts"]);
    let took = started.elapsed();
    run.expect(3);
    // One at a time, three would take at least 3 x 3s.
    assert!(took < Duration::from_secs(9), "{took:?}\n{}", run.stdout());
    assert!(
        run.stdout().ends_with("0 of 3 host(s) reachable\n"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        run.stdout().matches("UNREACHABLE").count(),
        3,
        "{}",
        run.stdout()
    );
    for port in ports {
        assert_eq!(ssh_processes_on(port), Vec::<String>::new(), "left behind");
    }
    drop(silent);
}

#[test]
fn doctor_names_each_host_in_its_checks_and_fails_for_the_dead_one() {
    let work = tempfile::tempdir().unwrap();
    let Some(repo) = pool_repo(work.path()) else {
        return;
    };
    let doctor = repo.pikaci(&["doctor"]);
    doctor.expect(1);
    let out = doctor.stdout();
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAIL  reach dead (ssh://")),
        "{out}"
    );
    for host in ["store-a", "store-b"] {
        let reach = format!("ok    reach {host} (ssh://");
        assert!(out.lines().any(|l| l.starts_with(&reach)), "{out}");
        let nix = format!("nix on {host} (ssh://");
        assert!(out.contains(&nix), "{out}");
    }
    // No host check without a host in its name (state dir and git are this machine's).
    for line in out
        .lines()
        .filter(|l| l.starts_with("ok") || l.starts_with("FAIL"))
    {
        let named = ["store-a", "store-b", "dead", "on local", "state dir"]
            .iter()
            .any(|h| line.contains(h));
        assert!(named, "a check that names no host: {line}\n{out}");
    }
    // `--host NAME` checks that host alone: the dead one is not tried.
    let one = repo.pikaci(&["doctor", "--host", "store-a"]);
    let out = one.stdout();
    assert!(!out.contains("dead"), "{out}");
    assert!(out.contains("reach store-a (ssh://"), "{out}");
}

#[test]
fn every_report_names_the_host_each_job_ran_on() {
    let (Some(image), Some(ssh)) = (testbed_incus_image(), own_store_ssh(0)) else {
        return;
    };
    let pool = format!(
        "[ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\n\
         [hosts.store-a]\nurl = \"{a}\"\nslots = 1\n\n[hosts.store-b]\nurl = \"{b}\"\nslots = 1\n\n\
         [hosts.dead]\nurl = \"ssh://{user}@127.0.0.1:{port}\"\n",
        key = ssh.identity.as_ref().unwrap().display(),
        known = ssh.known_hosts.as_ref().unwrap().display(),
        a = own_store_host(0).unwrap(),
        b = own_store_host(1).unwrap(),
        user = ssh.user.as_deref().unwrap(),
        port = dead_port(),
    );
    let jobs = "[jobs.one]\ncommand = \"true\"\n[jobs.two]\ncommand = \"true\"\n";
    let repo = Repo::new(&format!("{}\n{pool}", incus_config(&image, "", jobs)));
    let out = tempfile::tempdir().unwrap();
    let (junit, summary) = (out.path().join("junit.xml"), out.path().join("summary.md"));
    // In GitHub Actions, too: each job's log group and annotation name its host.
    let mut command = repo.command(&[
        "run",
        "one",
        "two",
        "-j",
        "2",
        "--junit",
        junit.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    command
        .env("GITHUB_ACTIONS", "true")
        .env_remove("GITHUB_STEP_SUMMARY");
    let run = Run::of(&mut command);
    run.expect(0);
    let status = repo.pikaci(&["status", "latest"]);
    // The dead host is down from the start: no job went there, and status says why.
    let down = status
        .stdout()
        .lines()
        .find(|l| l.starts_with("down     dead (ssh://"))
        .map(str::to_string);
    assert!(
        down.is_some_and(|l| l.contains("Connection refused")),
        "{}",
        status.stdout()
    );
    let json = repo.pikaci(&["status", "latest", "--json"]).json();
    let dead = json["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "dead"));
    assert!(dead.is_some_and(|h| h["down"].is_string()), "{json:#}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let markdown = std::fs::read_to_string(&summary).unwrap();
    for (n, job) in ["one", "two"].iter().enumerate() {
        let host = json["jobs"][n]["host"]
            .as_str()
            .unwrap_or_else(|| panic!("{json:#}"));
        assert!(["store-a", "store-b"].contains(&host), "{json:#}");
        let line = status
            .stdout()
            .lines()
            .find(|l| l.trim_start().starts_with(job))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(
            line.contains(&format!("[incus on {host}]")),
            "{}",
            status.stdout()
        );
        let pass = run
            .stdout()
            .lines()
            .find(|l| l.starts_with("pass") && l.contains(job))
            .map(str::to_string);
        let group = format!("::group::{job} (passed on {host})\n");
        assert!(run.stdout().contains(&group), "{}", run.stdout());
        assert!(
            pass.is_some_and(|l| l.ends_with(&format!(" on {host}"))),
            "{}",
            run.stdout()
        );
        let case = xml
            .split("<testcase ")
            .find(|c| c.starts_with(&format!("name=\"{job}\"")));
        let property = format!("<property name=\"host\" value=\"{host}\"/>");
        assert!(case.is_some_and(|c| c.contains(&property)), "{xml}");
        let row = format!("| `{job}` | ✅ passed |");
        let row = markdown
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_default();
        assert!(row.contains(&format!(" | incus | {host} | ")), "{markdown}");
    }
    assert!(markdown.contains("| backend | host |"), "{markdown}");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
    let lint = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", schema])
        .arg(&junit)
        .output();
    if let Ok(lint) = lint {
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}
