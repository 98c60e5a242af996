//! Timing and process helpers shared by the benchmarks.

#![allow(dead_code)] // each bench uses its own subset

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median and quartiles of the ratios `subject[i] / yardstick[i]` of runs made in
/// alternating pairs: each ratio is taken within its pair, so a slow stretch of a shared
/// machine slows both sides of it instead of one side's median.
pub fn pair_ratios(subject: &[Duration], yardstick: &[Duration]) -> PairRatios {
    assert_eq!(subject.len(), yardstick.len(), "pairs");
    let mut ratios: Vec<f64> = subject
        .iter()
        .zip(yardstick)
        .map(|(s, y)| s.as_secs_f64() / y.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    PairRatios {
        median: at(2),
        low: at(1),
        high: at(3),
    }
}

pub struct PairRatios {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl std::fmt::Display for PairRatios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}x (pairs' ratios, quartiles {:.2}-{:.2}x)",
            self.median, self.low, self.high
        )
    }
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
