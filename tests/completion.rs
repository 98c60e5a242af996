//! Shell completion: the scripts call back into pikaci, which completes from the
//! repository at hand (targets, jobs, runs).

use crate::harness::Repo;

const CONFIG: &str = "[defaults]\nbackend = \"host\"\n\
    [jobs.lint]\ncommand = \"true\"\n[jobs.unit-tests]\ncommand = \"echo tested\"\n\
    [targets.ci]\ndescription = \"what CI runs\"\njobs = [\"lint\", \"unit-tests\"]\n";

/// What `PIKACI_COMPLETE=fish pikaci -- ARGS` offers: the value column of each line.
fn offered(repo: &Repo, args: &[&str]) -> Vec<String> {
    let mut command = repo.command(&["--", "pikaci"]);
    command.args(args).env("PIKACI_COMPLETE", "fish");
    let out = crate::harness::Run::of(&mut command);
    out.expect(0);
    out.stdout()
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn every_shell_gets_a_script_that_calls_back_into_pikaci() {
    let repo = Repo::new(CONFIG);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = repo.pikaci(&["completions", shell]);
        out.expect(0);
        assert!(
            out.stdout().contains("PIKACI_COMPLETE"),
            "{shell}: {}",
            out.stdout()
        );
    }
}

#[test]
fn targets_jobs_and_runs_come_from_the_repository() {
    let repo = Repo::new(CONFIG);
    let names = offered(&repo, &["run", ""]);
    assert_eq!(names[..3], ["ci", "lint", "unit-tests"], "{names:?}");
    assert_eq!(offered(&repo, &["run", "un"]), ["unit-tests"]);
    assert!(offered(&repo, &["ru"]).contains(&"run".to_string()));

    repo.pikaci(&["run"]).expect(0);
    let runs = offered(&repo, &["status", ""]);
    assert_eq!(runs[0], "latest");
    let id = repo.latest_run();
    assert_eq!(runs[1], id.file_name().unwrap().to_string_lossy());
    let jobs = offered(&repo, &["logs", "latest", "--job", ""]);
    assert_eq!(jobs, ["lint", "unit-tests"]);

    // A broken pikaci.toml completes no names, and completion still answers.
    repo.write("pikaci.toml", "[jobs.a\n");
    let names = offered(&repo, &["run", ""]);
    assert!(names.iter().all(|n| n.starts_with('-')), "{names:?}");
}

#[test]
fn a_common_complete_variable_does_not_turn_a_run_into_completion() {
    let repo = Repo::new(CONFIG);
    let mut command = repo.command(&["targets"]);
    command.env("COMPLETE", "bash");
    let out = crate::harness::Run::of(&mut command);
    out.expect(0);
    assert!(out.stdout().starts_with("ci\t"), "{}", out.stdout());
}

#[test]
fn host_names_come_from_the_pool() {
    let pool = "[hosts.builder-a]\nurl = \"local\"\n[hosts.builder-b]\nurl = \"ssh://ci@b\"\n";
    let repo = Repo::new(&format!("{CONFIG}{pool}"));
    for args in [&["doctor", "--host", ""][..], &["hosts", "--host", ""]] {
        assert_eq!(offered(&repo, args), ["builder-a", "builder-b"], "{args:?}");
    }
}
