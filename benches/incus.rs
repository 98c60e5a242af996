//! `cargo bench --bench incus`: a trivial job through `pikaci run` on the Incus backend
//! against `benches/incus-by-hand.sh` doing the same launch/exec/delete by hand, runs
//! interleaved, medians and their ratio printed (goal: pikaci <= 1.1x). Needs the
//! testbed's incusd and image: `eval "$(bash scripts/testbed/incus.sh)"`.

#[path = "util.rs"]
mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use util::{git, median, ms, run_ok};

const RUNS: usize = 10;

fn main() {
    if util::not_benchmarking("incus") {
        return;
    }
    let Ok(image) = std::env::var("PIKACI_TEST_INCUS_IMAGE") else {
        println!("incus: skipped (run `eval \"$(bash scripts/testbed/incus.sh)\"` first)");
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
    let (mut by_hand, mut through_pikaci): (Vec<Duration>, Vec<Duration>) = (vec![], vec![]);
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
        let ours = timed(
            Command::new(pikaci)
                .args(["run", "trivial", "--output", "jsonl"])
                .current_dir(repo.path()),
        );
        if round > 0 {
            by_hand.push(hand);
            through_pikaci.push(ours);
        }
    }
    let (hand, ours) = (median(by_hand), median(through_pikaci));
    println!(
        "trivial Incus job: {:.0} ms through `pikaci run` vs {:.0} ms by hand: {:.2}x (goal <= 1.1x)",
        ms(ours),
        ms(hand),
        ours.as_secs_f64() / hand.as_secs_f64()
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
