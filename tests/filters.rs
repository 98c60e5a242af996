//! Path filters against a base revision, through the real binary.

use crate::harness::{Repo, Run, git};

const CONFIG: &str = "[defaults]\nbackend = \"host\"\n\
[jobs.check-code]\ncommand = \"true\"\n\
[jobs.check-docs]\ncommand = \"true\"\n\
[targets.code]\npaths = [\"src/**\"]\njobs = [\"check-code\"]\n\
[targets.docs]\npaths = [\"docs/**\"]\njobs = [\"check-docs\"]\n";

fn statuses(repo: &Repo) -> serde_json::Value {
    repo.read_json(&repo.latest_run().join("run.json"))["jobs"].clone()
}

#[test]
fn explicit_base_skips_untouched_targets_with_a_reason() {
    let repo = Repo::new(CONFIG);
    let base = git(repo.path(), &["rev-parse", "HEAD"]);
    repo.write("src/more.rs", "// more\n");
    repo.commit("touch src");
    repo.pikaci(&["run", "--base", &base]).expect(0);
    let jobs = statuses(&repo);
    assert_eq!(jobs["check-code"], "passed");
    assert_eq!(jobs["check-docs"], "skipped");
    let docs = repo.read_json(&repo.latest_run().join("jobs/check-docs/status.json"));
    let reason = docs["message"].as_str().unwrap();
    assert!(
        reason.contains("docs/**") && reason.contains(&base[..7]),
        "{reason}"
    );
}

#[test]
fn clean_clone_of_a_commit_touching_src_runs_the_src_target() {
    let origin = Repo::new(CONFIG);
    origin.write("src/feature.rs", "// new\n");
    origin.commit("feature");
    let clone = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(origin.path())
        .arg(clone.path().join("c"))
        .status()
        .unwrap();
    assert!(status.success());
    let root = clone.path().to_path_buf();
    let repo = Repo { _tmp: clone, root };
    let run = Run::of(
        std::process::Command::new(env!("CARGO_BIN_EXE_pikaci"))
            .args(["run", "--output", "json"])
            .current_dir(repo.path().join("c")),
    );
    run.expect(0);
    let json: serde_json::Value = run.json();
    assert_eq!(json["run"]["jobs"]["check-code"], "passed");
    assert_eq!(json["run"]["jobs"]["check-docs"], "skipped");
}

#[test]
fn uncommitted_change_counts() {
    let repo = Repo::new(CONFIG);
    let base = git(repo.path(), &["rev-parse", "HEAD"]);
    repo.write("docs/guide.md", "# guide\n");
    repo.pikaci(&["run", "--base", &base]).expect(0);
    let jobs = statuses(&repo);
    assert_eq!(jobs["check-docs"], "passed");
    assert_eq!(jobs["check-code"], "skipped");
}

#[test]
fn named_job_ignores_filters_and_bad_base_is_usage_error() {
    let repo = Repo::new(CONFIG);
    let base = git(repo.path(), &["rev-parse", "HEAD"]);
    repo.pikaci(&["run", "check-docs", "--base", &base])
        .expect(0);
    assert_eq!(
        statuses(&repo)["check-docs"],
        "passed",
        "a job named directly always runs"
    );
    let run = repo.pikaci(&["run", "--base", "no-such-rev"]);
    run.expect(2);
    assert!(run.stderr().contains("no-such-rev"), "{}", run.stderr());
}
