//! doctor predicts the run: for each misconfiguration, `pikaci doctor` fails exactly when
//! `pikaci run` fails for that reason, and both name the same cause. Against the real
//! testbed (incusd with its container image; the microVM runner fixture over the loopback
//! sshd), as root and as the unprivileged test user.

use crate::harness::{Repo, Run, incus_config, testbed_incus_image, testbed_microvm};

/// What doctor and the run must both do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Pass,
    /// Both fail, and both name this cause.
    Fail(&'static str),
    /// Both pass, or both fail naming this cause (it depends on the machine: whether
    /// `sudo -n` works for this user).
    Agree(&'static str),
}

struct Case {
    name: &'static str,
    config: String,
    expect: Expect,
}

const JOB: &str = "[jobs.t]\ncommand = \"true\"\n";

/// doctor's failed checks with their fixes.
fn doctor_failures(doctor: &Run) -> String {
    let mut failed = Vec::new();
    let mut in_failure = false;
    for line in doctor.stdout().lines() {
        if line.starts_with("FAIL") {
            in_failure = true;
        } else if !line.starts_with("      ") {
            in_failure = false;
        }
        if in_failure {
            failed.push(line.to_string());
        }
    }
    failed.join("\n")
}

/// Everything the run said about why it failed: its output and the job's message.
fn run_failure(repo: &Repo, run: &Run) -> String {
    // A run stopped by its configuration has no record.
    let has_runs = repo.state().join("runs").is_dir();
    let status = has_runs.then(|| repo.latest_run().join("jobs/t/status.json"));
    let message = status
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|status| status["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    format!("{}\n{}\n{message}", run.stdout(), run.stderr())
}

/// Runs doctor and the run for each case; returns what disagreed.
fn disagreements(cases: Vec<Case>) -> Vec<String> {
    let mut wrong = Vec::new();
    for case in cases {
        let repo = Repo::new(&case.config);
        let doctor = repo.pikaci(&["doctor"]);
        let run = repo.pikaci(&["run", "t"]);
        let (doctor_ok, run_ok) = (doctor.code() == 0, run.code() == 0);
        let context = || {
            format!(
                "case `{}`: doctor exit {}, run exit {}\ndoctor:\n{}\nrun:\n{}",
                case.name,
                doctor.code(),
                run.code(),
                doctor.stdout(),
                crate::harness::tail_lines(&run_failure(&repo, &run), 15)
            )
        };
        let cause = match case.expect {
            Expect::Pass if doctor_ok && run_ok => continue,
            Expect::Agree(_) if doctor_ok && run_ok => continue,
            Expect::Pass => {
                wrong.push(context());
                continue;
            }
            Expect::Fail(cause) | Expect::Agree(cause) => cause,
        };
        let named =
            doctor_failures(&doctor).contains(cause) && run_failure(&repo, &run).contains(cause);
        if doctor_ok || run_ok || !named {
            wrong.push(format!(
                "expected both to fail naming `{cause}`; {}",
                context()
            ));
        }
    }
    wrong
}

#[test]
fn doctor_and_incus_runs_agree() {
    let Some(image) = testbed_incus_image() else {
        return;
    };
    let config = |settings: &str| incus_config(&image, settings, JOB);
    let cases = vec![
        Case {
            name: "the testbed's configuration",
            config: config(""),
            expect: Expect::Pass,
        },
        Case {
            name: "sudo = true",
            config: config("sudo = true\n"),
            expect: Expect::Agree("sudo"),
        },
        Case {
            name: "a missing profile",
            config: config("profiles = [\"default\", \"pikaci-no-such-profile\"]\n"),
            expect: Expect::Fail("pikaci-no-such-profile"),
        },
        Case {
            name: "a wrong guest-agent",
            config: incus_config(&image, "", JOB)
                .replace("/usr/local/bin/pikaci-guest", "/no/such/pikaci-guest"),
            expect: Expect::Fail("/no/such/pikaci-guest"),
        },
        Case {
            name: "a container image with the default instance-type",
            config: config("").replace("instance-type = \"container\"\n", ""),
            expect: Expect::Fail("instance-type"),
        },
        Case {
            name: "an unknown project",
            config: config("project = \"pikaci-no-such-project\"\n"),
            expect: Expect::Fail("pikaci-no-such-project"),
        },
    ];
    let wrong = disagreements(cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    // doctor's trial instances are gone, like the run's.
    let list = std::process::Command::new("incus")
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let instances: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let left: Vec<&serde_json::Value> = instances
        .iter()
        .filter(|i| i["config"]["user.pikaci.run"] == "doctor")
        .map(|i| &i["name"])
        .collect();
    assert!(left.is_empty(), "doctor left instances: {left:?}");
}

#[test]
fn doctor_and_microvm_runs_agree() {
    let Some(testbed) = testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = testbed.config(work.path(), JOB);
    let mut cases = vec![
        // A runner brings its own hypervisor: one not on PATH is no failure.
        Case {
            name: "a prebuilt runner, cloud-hypervisor not installed",
            config: config.replace(
                "[backends.microvm]\n",
                "[backends.microvm]\nhypervisor = \"cloud-hypervisor\"\n",
            ),
            expect: Expect::Pass,
        },
        Case {
            name: "a runner that does not exist",
            config: config.replace("#runner", "#pikaci-no-such-runner"),
            expect: Expect::Fail("pikaci-no-such-runner"),
        },
        Case {
            name: "virtiofsd not installed",
            config: config.replace(
                &format!("virtiofsd = \"{}\"", testbed.virtiofsd),
                "virtiofsd = \"/no/such/virtiofsd\"",
            ),
            expect: Expect::Fail("/no/such/virtiofsd"),
        },
    ];
    // Without a runner, a pikaci not built by its flake needs `pikaci-flake`.
    let without_runner = regex::Regex::new(r#"(?m)^runner = .*\n"#)
        .unwrap()
        .replace(&config, "")
        .into_owned();
    let probe = Repo::new(&without_runner);
    if !probe
        .pikaci(&["doctor"])
        .stdout()
        .contains("ok    pikaci-flake")
    {
        cases.push(Case {
            name: "no runner and no pikaci-flake",
            config: without_runner,
            expect: Expect::Fail("pikaci-flake"),
        });
    }
    let wrong = disagreements(cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
