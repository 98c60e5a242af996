//! Many hosts (`[hosts.NAME]`): jobs spread over the two own-store testbed hosts within
//! their slots, a job pinned by a label, a host that is down from the start, and a host
//! that goes away under a running job (a TCP relay in front of it is cut).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Repo, TestHost, own_store_host, port_of, testbed_microvm};

/// A TCP relay on a free port of this machine to `target`: cutting it closes every
/// connection through it and drops new ones, as a host that goes away does.
#[derive(Clone)]
struct Relay {
    port: u16,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    cut: Arc<AtomicBool>,
    /// Bytes sent towards `target`, and the count at which the relay cuts itself.
    sent: Arc<AtomicUsize>,
    limit: usize,
}

impl Relay {
    fn to(target: u16) -> Relay {
        Relay::cutting_after(target, usize::MAX)
    }

    /// A relay that cuts itself once `limit` bytes went towards `target`: past the
    /// handshake and the probe, in the middle of sending the workspace.
    fn cutting_after(target: u16, limit: usize) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            port: listener.local_addr().unwrap().port(),
            streams: Arc::default(),
            cut: Arc::default(),
            sent: Arc::default(),
            limit,
        };
        let accepting = relay.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                // After the cut, every connection is dropped as it comes.
                if accepting.cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut all = accepting.streams.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                accepting.pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                );
                accepting.pipe(server, client, false);
            }
        });
        relay
    }

    /// Closes every connection and drops new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn pipe(&self, mut from: TcpStream, mut to: TcpStream, counted: bool) {
        let relay = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = from.read(&mut buf) {
                if counted && relay.sent.fetch_add(n, Ordering::SeqCst) + n > relay.limit {
                    relay.cut();
                    break;
                }
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

/// A port of this machine nothing listens on.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `(start, end, host)` of each job of the newest run that ran, in ms since the epoch.
fn spans(repo: &Repo, jobs: &[&str]) -> Vec<(i64, i64, String)> {
    let ms = |v: &serde_json::Value| {
        let text = v.as_str().expect("a time");
        epoch_ms(text)
    };
    jobs.iter()
        .map(|job| {
            let (status, _) = repo.job(job);
            assert_eq!(status["status"], "passed", "{job}: {status}");
            let host = status["host"].as_str().expect("a host").to_string();
            (ms(&status["started_at"]), ms(&status["finished_at"]), host)
        })
        .collect()
}

/// Milliseconds since the epoch of an RFC 3339 time as pikaci writes it.
fn epoch_ms(text: &str) -> i64 {
    let at = humantime::parse_rfc3339(text).unwrap();
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The most jobs of `spans` on `host` at any one moment.
fn peak(spans: &[(i64, i64, String)], host: Option<&str>) -> usize {
    let on: Vec<_> = spans
        .iter()
        .filter(|s| host.is_none_or(|h| s.2 == h))
        .collect();
    on.iter()
        .map(|(start, _, _)| {
            on.iter()
                .filter(|(s, e, _)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn jobs_spread_over_two_hosts_within_their_slots_and_a_label_pins_one() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let hosts = [
        TestHost {
            name: "a",
            url: own_store_host(0).unwrap(),
            slots: Some(1),
            labels: vec!["fast"],
        },
        TestHost {
            name: "b",
            url: own_store_host(1).unwrap(),
            slots: Some(1),
            labels: vec![],
        },
    ];
    let jobs = "[jobs.j1]\ncommand = \"sleep 3\"\n[jobs.j2]\ncommand = \"sleep 3\"\n\
                [jobs.j3]\ncommand = \"sleep 3\"\n[jobs.pinned]\ncommand = \"sleep 3\"\nruns-on = [\"fast\"]\n";
    let repo = Repo::new(&testbed.pool_config(work.path(), &hosts, jobs));
    let run = repo.pikaci(&["run", "j1", "j2", "j3", "pinned"]);
    run.expect(0);
    let spans = spans(&repo, &["j1", "j2", "j3", "pinned"]);
    let on = |host: &str| spans.iter().filter(|s| s.2 == host).count();
    assert_eq!(on("a") + on("b"), 4);
    assert!(
        on("a") >= 1 && on("b") >= 1,
        "both hosts ran jobs: {spans:?}"
    );
    assert_eq!(repo.job("pinned").0["host"], "a", "runs-on = [\"fast\"]");
    // Slots hold on each host, and with jobs waiting, both hosts were busy at once.
    assert_eq!(peak(&spans, Some("a")), 1, "{spans:?}");
    assert_eq!(peak(&spans, Some("b")), 1, "{spans:?}");
    assert_eq!(
        peak(&spans, None),
        2,
        "no host sat idle while jobs waited: {spans:?}"
    );
    let hosts_json = repo.read_json(&repo.latest_run().join("hosts.json"));
    let names: Vec<&str> = hosts_json
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        hosts_json[0]["labels"]
            .as_array()
            .unwrap()
            .contains(&"x86_64-linux".into()),
        "{hosts_json}"
    );
    // Each host set itself up once: one runner log each.
    for host in ["a", "b"] {
        let log = repo
            .latest_run()
            .join(format!("prepare/microvm-runner-{host}.log"));
        assert!(log.exists(), "{}", log.display());
    }
    assert!(
        run.stdout().contains(" on a") && run.stdout().contains(" on b"),
        "{}",
        run.stdout()
    );
}

#[test]
fn a_host_down_from_the_start_leaves_its_jobs_to_the_others() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let hosts = [
        TestHost {
            name: "a",
            url: own_store_host(0).unwrap(),
            slots: Some(2),
            labels: vec![],
        },
        TestHost {
            name: "gone",
            url: format!("ssh://pikaci-test@127.0.0.1:{dead}"),
            slots: Some(4),
            labels: vec![],
        },
    ];
    let jobs = "[jobs.j1]\ncommand = \"true\"\n[jobs.j2]\ncommand = \"true\"\n";
    let repo = Repo::new(&testbed.pool_config(work.path(), &hosts, jobs));
    let run = repo.pikaci(&["run", "j1", "j2", "--output", "jsonl"]);
    run.expect(0);
    for job in ["j1", "j2"] {
        assert_eq!(repo.job(job).0["host"], "a");
    }
    let down: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["type"] == "host_down")
        .collect();
    assert_eq!(down.len(), 1, "{}", run.stdout());
    assert_eq!(down[0]["host"], "gone");
    assert!(
        down[0]["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{down:?}"
    );
    let hosts_json = repo.read_json(&repo.latest_run().join("hosts.json"));
    assert!(hosts_json[1]["down"].as_str().is_some(), "{hosts_json}");
}

#[test]
fn a_job_whose_only_host_is_down_is_an_error_naming_each_host() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let hosts = [
        TestHost {
            name: "a",
            url: own_store_host(0).unwrap(),
            slots: Some(1),
            labels: vec![],
        },
        TestHost {
            name: "gpu",
            url: format!("ssh://pikaci-test@127.0.0.1:{dead}"),
            slots: Some(1),
            labels: vec!["gpu"],
        },
    ];
    let jobs = "[jobs.train]\ncommand = \"true\"\nruns-on = [\"gpu\"]\n";
    let repo = Repo::new(&testbed.pool_config(work.path(), &hosts, jobs));
    repo.pikaci(&["run", "train"]).expect(3);
    let (status, _) = repo.job("train");
    assert_eq!(status["status"], "error");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("no host can run it: a lacks `gpu`; gpu is down (")
            && message.contains("Connection refused"),
        "{message}"
    );
}

#[test]
fn a_host_that_goes_away_under_a_job_is_named_and_the_job_runs_again_elsewhere() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let relay = Relay::to(port_of(&own_store_host(1).unwrap()));
    // `far` has the more free slots, so the job goes there first.
    let hosts = [
        TestHost {
            name: "far",
            url: format!("ssh://pikaci-test@127.0.0.1:{}", relay.port),
            slots: Some(2),
            labels: vec![],
        },
        TestHost {
            name: "near",
            url: own_store_host(0).unwrap(),
            slots: Some(1),
            labels: vec![],
        },
    ];
    let jobs = "[jobs.long]\ncommand = \"echo started; sleep 20; echo done\"\nretries = 1\n";
    let repo = Repo::new(&testbed.pool_config(work.path(), &hosts, jobs));
    let child = repo
        .command(&["run", "long"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // guest.log arrives only when the job is over; the `run` phase event comes live, and
    // the phase lasts at least the command's 20 s (the guest boots within it too).
    let runs = || repo.state().join("runs");
    let running_on_far = crate::harness::eventually(Duration::from_secs(120), || {
        let Some(run) = std::fs::read_dir(runs()).ok().and_then(|mut d| d.next()) else {
            return false;
        };
        let events = std::fs::read_to_string(run.unwrap().path().join("events.jsonl"));
        events.is_ok_and(|events| {
            events.lines().any(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                event["type"] == "job_phase" && event["job"] == "long" && event["phase"] == "run"
            })
        })
    });
    assert!(running_on_far, "the job's guest runs on `far`");
    relay.cut();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, log) = repo.job("long");
    assert_eq!(status["status"], "passed");
    assert_eq!(status["host"], "near");
    assert!(log.contains("done"), "{log}");
    let attempts = status["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{status}");
    assert_eq!(attempts[0]["host"], "far");
    assert_eq!(attempts[0]["status"], "error");
    let message = attempts[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("host `far` failed while the job ran:"),
        "{message}"
    );
    let first = repo.latest_run().join("jobs/long/attempts/1");
    assert!(
        std::fs::read_to_string(first.join("status.json"))
            .unwrap()
            .contains("\"far\"")
    );
    assert!(stdout.contains("DOWN   host far:"), "{stdout}");
}

#[test]
fn a_host_that_fails_during_setup_sends_its_jobs_to_another_host() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // The handshake and the probe send a few KB; the workspace below is 2 MB.
    let relay = Relay::cutting_after(port_of(&own_store_host(1).unwrap()), 256 * 1024);
    let hosts = [
        TestHost {
            name: "flaky",
            url: format!("ssh://pikaci-test@127.0.0.1:{}", relay.port),
            slots: Some(2),
            labels: vec![],
        },
        TestHost {
            name: "steady",
            url: own_store_host(0).unwrap(),
            slots: Some(1),
            labels: vec![],
        },
    ];
    let jobs = "[jobs.j1]\ncommand = \"wc -c < blob\"\n";
    let repo = Repo::new(&testbed.pool_config(work.path(), &hosts, jobs));
    let blob: String = (0..2 * 1024 * 1024 / 64)
        .map(|i| format!("{:064x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    repo.write("blob", &blob);
    repo.commit("blob");
    let run = repo.pikaci(&["run", "j1"]);
    run.expect(0);
    let (status, log) = repo.job("j1");
    assert_eq!(status["host"], "steady", "{status}");
    assert!(
        status.get("attempts").is_none(),
        "setup is not an attempt: {status}"
    );
    assert!(log.contains(&blob.len().to_string()), "{log}");
    let host_log =
        std::fs::read_to_string(repo.latest_run().join("jobs/j1/host.log")).unwrap_or_default();
    assert!(
        host_log.contains("host `flaky` failed before the guest started"),
        "{host_log}"
    );
    assert!(
        run.stdout().contains("DOWN   host flaky:"),
        "{}",
        run.stdout()
    );
}
