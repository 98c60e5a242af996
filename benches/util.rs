//! Timing and process helpers shared by the benchmarks.

#![allow(dead_code)] // each bench uses its own subset

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .collect(),
    )
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn git(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            // No background `git gc`: the cp -a baseline copies .git while it would repack.
            .args([
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "-c",
                "gc.auto=0",
            ])
            .args(args),
    );
}

/// `cargo test --all-targets` also runs the bench binaries, without `--bench`: true
/// there, after saying how to run bench `name`.
pub fn not_benchmarking(name: &str) -> bool {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    if !benchmarking {
        println!("benchmarks run with `cargo bench --bench {name}`");
    }
    !benchmarking
}
