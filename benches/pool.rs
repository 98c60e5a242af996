//! `cargo bench --bench pool`: what a second host costs the scheduling of a run. The same
//! four microVM jobs run on one own-store testbed host (4 slots) and on two (2 slots
//! each), in alternating pairs. The hosts share this machine's cores, so this measures
//! overhead, not speed-up: the time before the first job is placed (reaching and probing
//! the pool), and each job's `setup` phase (waiting for its host's connect, sync and
//! runner build), printed as ratios of two hosts to one.

mod util;

use std::path::Path;
use std::process::Command;

use util::{git, median, run_ok};

const JOBS: usize = 4;

fn main() {
    if util::not_benchmarking("pool") {
        return;
    }
    let var = |name: &str| std::env::var(name).ok();
    let (Some(hosts), Some(known), Some(key), Some(runner), Some(virtiofsd)) = (
        var("PIKACI_TEST_OWN_STORE_HOSTS"),
        var("PIKACI_TEST_OWN_STORE_KNOWN_HOSTS"),
        var("PIKACI_TEST_SSH_KEY"),
        var("PIKACI_TEST_RUNNER"),
        var("PIKACI_TEST_VIRTIOFSD"),
    ) else {
        println!("pool: skipped (set up the testbed: sshd.sh, microvm.sh and hosts.sh)");
        return;
    };
    let urls: Vec<&str> = hosts.split_whitespace().collect();
    let work = tempfile::tempdir().unwrap();
    let settings = format!(
        "[defaults]\nbackend = \"microvm\"\n[ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\
         [backends.microvm]\nrunner = \"{runner}\"\nvirtiofsd = \"{virtiofsd}\"\n"
    );
    let host = |name: &str, url: &str, slots: usize| {
        let dir = work.path().join(name);
        format!(
            "[hosts.{name}]\nurl = \"{url}\"\nslots = {slots}\nwork-dir = \"{}\"\n",
            dir.display()
        )
    };
    let jobs: String = (0..JOBS)
        .map(|i| format!("[jobs.j{i}]\ncommand = \"true\"\n"))
        .collect();
    let one = repo(
        work.path(),
        "one",
        &format!("{settings}{}{jobs}", host("a", urls[0], JOBS)),
    );
    let two = repo(
        work.path(),
        "two",
        &format!(
            "{settings}{}{}{jobs}",
            host("a", urls[0], JOBS / 2),
            host("b", urls[1], JOBS / 2)
        ),
    );
    let (mut first_one, mut setup_one, mut first_two, mut setup_two) =
        (vec![], vec![], vec![], vec![]);
    let pairs = 3;
    for _ in 0..pairs {
        let (first, setup) = measure(&one);
        first_one.push(first);
        setup_one.push(setup);
        let (first, setup) = measure(&two);
        first_two.push(first);
        setup_two.push(setup);
    }
    let (f1, f2) = (median(first_one), median(first_two));
    let (s1, s2) = (median(setup_one), median(setup_two));
    println!(
        "pool, {JOBS} microVM jobs, median of {pairs} pairs: until the first job is placed {:.0} ms on 1 host, {:.0} ms on 2 (ratio {:.2})",
        util::ms(f1),
        util::ms(f2),
        f2.as_secs_f64() / f1.as_secs_f64()
    );
    println!(
        "pool: setup phase per job {:.0} ms on 1 host, {:.0} ms on 2 (ratio {:.2})",
        util::ms(s1),
        util::ms(s2),
        s2.as_secs_f64() / s1.as_secs_f64()
    );
}

fn repo(work: &Path, name: &str, config: &str) -> std::path::PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pikaci.toml"), config).unwrap();
    std::fs::write(dir.join(".gitignore"), ".pikaci/\n").unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "bench"]);
    dir
}

/// Runs every job once: the time from the run's start to its first `job_started` event,
/// and the mean `setup` phase of its jobs.
fn measure(repo: &Path) -> (std::time::Duration, std::time::Duration) {
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_pikaci"))
            .args(["run", "--output", "jsonl"])
            .current_dir(repo),
    );
    let runs = repo.join(".pikaci/runs");
    let mut all: Vec<_> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    let run = all.pop().unwrap();
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let times: Vec<(String, f64)> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                seconds(e["time"].as_str().unwrap()),
            )
        })
        .collect();
    let started = times.iter().find(|(t, _)| t == "run_started").unwrap().1;
    let placed = times.iter().find(|(t, _)| t == "job_started").unwrap().1;
    let mut setup = 0u64;
    for i in 0..JOBS {
        let status = std::fs::read(run.join(format!("jobs/j{i}/status.json"))).unwrap();
        let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
        assert_eq!(status["status"], "passed", "{status}");
        setup += status["phases"]["setup"].as_u64().unwrap();
    }
    (
        std::time::Duration::from_secs_f64((placed - started).max(0.0)),
        std::time::Duration::from_millis(setup / JOBS as u64),
    )
}

/// Seconds since the epoch of an RFC 3339 time as pikaci writes it.
fn seconds(time: &str) -> f64 {
    let at = humantime::parse_rfc3339(time).unwrap();
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
