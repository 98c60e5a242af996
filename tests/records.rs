//! Records, listing, status, logs, rerun and gc through the real binary.

use crate::harness::{Repo, redact};

const CONFIG: &str = "[defaults]\nbackend = \"host\"\n\
[jobs.good]\ncommand = \"echo good\"\n\
[jobs.bad]\ncommand = \"echo bad; exit 3\"\n\
[targets.all]\ndescription = \"Both jobs\"\njobs = [\"good\", \"bad\"]\n";

fn redact_json(value: &serde_json::Value, repo: &Repo) -> serde_json::Value {
    let text = serde_json::to_string_pretty(value).unwrap();
    let text =
        redact(&text, repo).replace(&format!("\"pid\": {}", value["pid"]), "\"pid\": \"[PID]\"");
    let text = regex::Regex::new(r#""(duration_ms|pid)": \d+"#)
        .unwrap()
        .replace_all(&text, "\"$1\": \"[N]\"");
    let text = regex::Regex::new(r#""([a-z]+)": (\d+)(,?)\n(\s+)"#)
        .unwrap()
        .replace_all(&text, |c: &regex::Captures| {
            // phase timings vary run to run
            if ["workspace", "launch", "run", "stop", "collect", "cleanup"].contains(&&c[1]) {
                format!("\"{}\": \"[N]\"{}\n{}", &c[1], &c[3], &c[4])
            } else {
                c[0].to_string()
            }
        });
    serde_json::from_str(&text).unwrap()
}

#[test]
fn record_json_shapes() {
    let repo = Repo::new(CONFIG);
    repo.pikaci(&["run", "all"]).expect(1);
    let run = repo.latest_run();
    insta::assert_json_snapshot!(
        "run_json",
        redact_json(&repo.read_json(&run.join("run.json")), &repo)
    );
    insta::assert_json_snapshot!(
        "job_status_json",
        redact_json(&repo.read_json(&run.join("jobs/bad/status.json")), &repo)
    );
    insta::assert_json_snapshot!(
        "result_json",
        redact_json(&repo.read_json(&run.join("jobs/bad/result.json")), &repo)
    );
    let plan = repo.read_json(&run.join("plan.json"));
    insta::assert_json_snapshot!("plan_json", plan);
}

#[test]
fn human_output_when_not_a_terminal() {
    let repo = Repo::new(CONFIG);
    let run = repo.pikaci(&["run", "all", "--jobs", "1"]);
    run.expect(1);
    insta::assert_snapshot!(redact(&run.stdout(), &repo));
}

#[test]
fn runs_status_and_logs() {
    let repo = Repo::new(CONFIG);
    repo.pikaci(&["run", "all"]).expect(1);
    let runs = repo.pikaci(&["runs"]);
    runs.expect(0);
    assert!(runs.stdout().contains("failed"), "{}", runs.stdout());
    let status = repo.pikaci(&["status", "latest", "--json"]);
    status.expect(0);
    let json = status.json();
    assert_eq!(json["run"]["status"], "failed");
    assert_eq!(json["jobs"].as_array().unwrap().len(), 2);
    let logs = repo.pikaci(&["logs", "latest", "--job", "bad"]);
    logs.expect(0);
    assert_eq!(logs.stdout(), "bad\n");
    let all = repo.pikaci(&["logs", "latest"]);
    assert_eq!(all.stdout(), "==> bad <==\nbad\n==> good <==\ngood\n");
    repo.pikaci(&["logs", "no-such-run"]).expect(2);
}

#[test]
fn rerun_failed_reuses_the_recorded_snapshot() {
    let repo = Repo::new(CONFIG);
    repo.pikaci(&["run", "all"]).expect(1);
    let first = repo.read_json(&repo.latest_run().join("run.json"));
    // Change the workspace: a rerun must still see the recorded snapshot.
    repo.write("src/lib.rs", "changed\n");
    let rerun = repo.pikaci(&["rerun", "latest", "--failed", "--output", "json"]);
    rerun.expect(1);
    let json = rerun.json();
    assert_eq!(json["run"]["rerun_of"], first["run_id"]);
    assert_eq!(json["run"]["snapshot"]["id"], first["snapshot"]["id"]);
    let jobs: Vec<&str> = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["bad"], "only the failed job reran");
}

#[test]
fn gc_keeps_locked_runs_and_newest() {
    let repo = Repo::new(CONFIG);
    for _ in 0..3 {
        repo.pikaci(&["run", "good"]).expect(0);
    }
    let runs_dir = repo.state().join("runs");
    let mut runs: Vec<_> = std::fs::read_dir(&runs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    // Hold the oldest run's lock as a live pikaci would.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(runs[0].join("lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let gc = repo.pikaci(&["gc", "--keep", "1"]);
    gc.expect(0);
    assert!(runs[0].exists(), "locked run kept");
    assert!(!runs[1].exists(), "old unlocked run removed");
    assert!(runs[2].exists(), "newest run kept");
    assert!(gc.stdout().contains("in use"), "{}", gc.stdout());
    drop(lock);
    repo.pikaci(&["gc", "--keep", "0"]).expect(0);
    assert_eq!(std::fs::read_dir(&runs_dir).unwrap().count(), 0);
}

#[test]
fn corrupt_run_json_is_listed_with_its_path() {
    let repo = Repo::new(CONFIG);
    repo.pikaci(&["run", "good"]).expect(0);
    repo.pikaci(&["run", "good"]).expect(0);
    let broken = repo.latest_run();
    std::fs::write(broken.join("run.json"), "{ not json").unwrap();
    let runs = repo.pikaci(&["runs"]);
    runs.expect(0);
    let text = runs.stdout();
    assert!(
        text.contains("passed"),
        "the good run is still listed: {text}"
    );
    assert!(
        text.contains("unreadable")
            && text.contains(&broken.join("run.json").display().to_string()),
        "{text}"
    );
}

#[test]
fn dead_running_run_is_abandoned() {
    let repo = Repo::new(CONFIG);
    repo.pikaci(&["run", "good"]).expect(0);
    let run = repo.latest_run();
    let mut record = repo.read_json(&run.join("run.json"));
    record["status"] = "running".into();
    std::fs::write(run.join("run.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    let status = repo.pikaci(&["status", "latest", "--json"]);
    assert_eq!(status.json()["run"]["status"], "abandoned");
}

#[test]
fn logs_follow_streams_until_the_job_ends() {
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n[jobs.slow]\ncommand = \"for i in 1 2 3; do echo line $i; sleep 0.4; done\"\n",
    );
    let mut run = repo
        .command(&["run", "slow"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the run's directory (not the hidden one it is made under before it is
    // renamed into place), then follow while the job is still printing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let published =
        |entry: std::fs::DirEntry| !entry.file_name().to_string_lossy().starts_with('.');
    while !repo
        .state()
        .join("runs")
        .read_dir()
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(published)))
    {
        assert!(std::time::Instant::now() < deadline, "run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let follow = repo.pikaci(&["logs", "latest", "--job", "slow", "--follow"]);
    let run_status = run.wait().unwrap();
    assert!(run_status.success());
    follow.expect(0);
    assert_eq!(follow.stdout(), "line 1\nline 2\nline 3\n");
    let status = repo.read_json(&repo.latest_run().join("jobs/slow/status.json"));
    assert_eq!(
        status["status"], "passed",
        "follow returned only after the job ended"
    );
    repo.pikaci(&["logs", "latest", "--follow"]).expect(2);
}
