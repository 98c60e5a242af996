//! `cargo bench --bench incus`: a trivial job through `pikaci run` on the Incus backend
//! against `benches/incus-by-hand.sh` doing the same launch/exec/delete by hand, runs
//! interleaved, medians and their ratios printed: the time until pikaci has recorded the
//! job's result (its `job_finished` line read from `--output jsonl`, written right after
//! the final status.json; goal <= 0.7x the script), and its whole process, which waits
//! for the instance's delete (issue 17). Needs the testbed's incusd and image:
//! `source scripts/env.sh && testbed incus`.

#[path = "util.rs"]
mod util;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{git, median, ms, run_ok};

const RUNS: usize = 10;

fn main() {
    if util::not_benchmarking("incus") {
        return;
    }
    let Ok(image) = std::env::var("PIKACI_TEST_INCUS_IMAGE") else {
        println!("incus: skipped (run `source scripts/env.sh && testbed incus` first)");
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let config = format!(
        "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
         instance-type = \"container\"\nguest-agent = \"/usr/local/bin/pikaci-guest\"\n\n\
         [jobs.trivial]\ncommand = \"true\"\n"
    );
    std::fs::write(repo.path().join("pikaci.toml"), config).unwrap();
    std::fs::write(repo.path().join(".gitignore"), ".pikaci/\n").unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "bench"]);

    // The script's inputs: a world-readable copy of the workspace and the same request.
    let work = tempfile::tempdir().unwrap();
    let workspace = work.path().join("workspace");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(repo.path())
            .arg(&workspace),
    );
    run_ok(Command::new("chmod").arg("-R").arg("a+rX").arg(&workspace));
    let request = work.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"schema_version":1,"job_id":"trivial","command":"true","timeout_secs":60,"run_as_root":false,"workdir":"/workspace","env":{},"path":[],"writable_workspace":false}"#,
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/incus-by-hand.sh");
    let pikaci = env!("CARGO_BIN_EXE_pikaci");

    let timed = |cmd: &mut Command| {
        let started = Instant::now();
        run_ok(cmd);
        started.elapsed()
    };
    let (mut by_hand, mut recorded, mut whole) = (vec![], vec![], vec![]);
    // One of each first, untimed: the image's first unpack on the storage pool.
    for round in 0..=RUNS {
        let hand = timed(
            Command::new("bash")
                .arg(script)
                .arg(&image)
                .arg(&workspace)
                .arg(&request)
                .arg(work.path()),
        );
        let (result, exited) = pikaci_run(Command::new(pikaci).current_dir(repo.path()));
        if round > 0 {
            by_hand.push(hand);
            recorded.push(result);
            whole.push(exited);
        }
    }
    let (hand, recorded, whole) = (median(by_hand), median(recorded), median(whole));
    let ratio = |d: Duration| d.as_secs_f64() / hand.as_secs_f64();
    println!(
        "trivial Incus job, result recorded: {:.0} ms into `pikaci run` vs {:.0} ms by hand: {:.2}x (goal <= 0.7x)",
        ms(recorded),
        ms(hand),
        ratio(recorded)
    );
    println!(
        "  whole `pikaci run` (waits for the delete): {:.0} ms: {:.2}x",
        ms(whole),
        ratio(whole)
    );
    // Where pikaci's time went, from the last run's record.
    let runs = repo.path().join(".pikaci/runs");
    let last = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(last.join("jobs/trivial/status.json")).unwrap())
            .unwrap();
    println!("  phases of the last run (ms): {}", status["phases"]);
}

/// Runs `pikaci run trivial --output jsonl` to its exit: how long until its
/// `job_finished` line came (the job's result is recorded by then), and until it exited.
fn pikaci_run(command: &mut Command) -> (Duration, Duration) {
    let started = Instant::now();
    let mut child = command
        .args(["run", "trivial", "--output", "jsonl"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("pikaci starts");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut recorded = None;
    for line in stdout.lines() {
        if recorded.is_none() && line.unwrap().contains("\"job_finished\"") {
            recorded = Some(started.elapsed());
        }
    }
    assert!(child.wait().unwrap().success(), "pikaci run failed");
    (recorded.expect("a job_finished event"), started.elapsed())
}
