//! `secrets = ["NAME"]`: the value comes from pikaci's environment, reaches the job's
//! environment on every backend, and appears in no record, event, log or artifact pikaci
//! writes (the job's own output of it is masked as `***`).

use std::path::Path;

use sha2::Digest;

use crate::harness::{Repo, Run};

const VALUE: &str = "s3cr3t-Value-7f2a";
const JOB: &str = r#"
[jobs.uses-secret]
secrets = ["PIKACI_TEST_TOKEN"]
command = "echo \"token: $PIKACI_TEST_TOKEN\"; printf %s \"$PIKACI_TEST_TOKEN\" | sha256sum | cut -c1-64 > \"$PIKACI_ARTIFACTS/digest\""
"#;

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Runs the job with the secret set and checks where it went; `also` are more
/// directories pikaci wrote to (a host work dir).
fn check(repo: &Repo, also: &[&Path]) {
    let run = Run::of(
        repo.command(&["run", "uses-secret", "--output", "jsonl"])
            .env("PIKACI_TEST_TOKEN", VALUE),
    );
    run.expect(0);
    let (status, log) = repo.job("uses-secret");
    assert_eq!(status["status"], "passed", "{status}");
    assert_eq!(log, "token: ***\n", "the job's own output is masked");
    let digest =
        std::fs::read_to_string(repo.latest_run().join("jobs/uses-secret/artifacts/digest"))
            .unwrap();
    let expected: String = sha2::Sha256::digest(VALUE.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest.trim(), expected, "the job saw exactly the value");
    assert!(!run.stdout().contains(VALUE) && !run.stderr().contains(VALUE));
    for dir in [&repo.state() as &Path].iter().chain(also) {
        let found = files_containing(dir, VALUE.as_bytes());
        assert!(found.is_empty(), "the secret is in {found:?}");
    }
    let request =
        std::fs::read_to_string(repo.latest_run().join("jobs/uses-secret/request.json")).unwrap();
    assert!(
        request.contains(r#""PIKACI_TEST_TOKEN": "***""#),
        "{request}"
    );
}

/// A PEM-like secret of four lines, and the ways a job commonly prints it other than
/// whole: lines joined by spaces (`echo $PEM`), some of its lines, `\n` turned into `\r`.
const PEM: &str = "-----BEGIN PIKACI TEST KEY-----\n\
MIIEpQIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\n\
q2ZlZmVhMTIzNDU2Nzg5MGFiY2RlZg==\n\
-----END PIKACI TEST KEY-----";
const PEM_JOB: &str = r#"
[jobs.uses-pem]
secrets = ["PIKACI_TEST_PEM"]
command = '''
echo "$PIKACI_TEST_PEM"
echo $PIKACI_TEST_PEM
printf '%s\n' "$PIKACI_TEST_PEM" | head -2
printf '%s\n' "$PIKACI_TEST_PEM" | tr '\n' '\r'; echo
'''
"#;

/// No line of the multi-line secret, in any of those forms, is in a file pikaci wrote
/// (`guest.log`, `host.log`, records) or in its output.
fn check_multiline(repo: &Repo, also: &[&Path]) {
    let run = Run::of(
        repo.command(&["run", "uses-pem", "--output", "jsonl"])
            .env("PIKACI_TEST_PEM", PEM),
    );
    run.expect(0);
    assert_eq!(repo.job("uses-pem").1, "***\n***\n***\n***\n***\r\n");
    let mut needles: Vec<String> = PEM.lines().map(str::to_string).collect();
    needles.push(PEM.split_whitespace().collect::<Vec<_>>().join(" "));
    needles.push(PEM.replace('\n', "\r"));
    for needle in &needles {
        assert!(
            !run.stdout().contains(needle.as_str()),
            "{needle:?} in stdout"
        );
        assert!(
            !run.stderr().contains(needle.as_str()),
            "{needle:?} in stderr"
        );
        for dir in [&repo.state() as &Path].iter().chain(also) {
            let found = files_containing(dir, needle.as_bytes());
            assert!(found.is_empty(), "{needle:?} is in {found:?}");
        }
    }
}

/// In a guest, an unprivileged job owns its artifacts dir alone and cannot read the
/// request (which holds the secrets' values).
const PEEK: &str = r#"
[jobs.peek]
command = "stat -c '%U %a' \"$PIKACI_ARTIFACTS\"; cat /run/pikaci/request.json > /dev/null 2>&1 && echo readable || echo unreadable"
"#;

fn check_guest_permissions(repo: &Repo) {
    repo.pikaci(&["run", "peek"]).expect(0);
    assert_eq!(repo.job("peek").1, "pikaci 700\nunreadable\n");
}

#[test]
fn host_backend() {
    let repo = Repo::new(&format!("[defaults]\nbackend = \"host\"\n{JOB}{PEM_JOB}"));
    check(&repo, &[]);
    check_multiline(&repo, &[]);
    // Without the variable the run does not start: the configuration asks for something
    // pikaci's environment lacks (exit 2), and the message says how to fix it.
    let runs_before = std::fs::read_dir(repo.state().join("runs"))
        .unwrap()
        .count();
    let run = repo.pikaci(&["run", "uses-secret"]);
    run.expect(2);
    insta::assert_snapshot!(crate::harness::redact(&run.stderr(), &repo), @"error: job `uses-secret` needs the secret `PIKACI_TEST_TOKEN`, which is not set in pikaci's environment; export it before `pikaci run` (e.g. `PIKACI_TEST_TOKEN=… pikaci run`), or remove it from jobs.uses-secret.secrets in [REPO]/pikaci.toml");
    let runs_after = std::fs::read_dir(repo.state().join("runs"))
        .unwrap()
        .count();
    assert_eq!(runs_before, runs_after, "no run is recorded");
}

#[test]
fn microvm_backend() {
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(work.path(), &format!("{JOB}{PEEK}{PEM_JOB}")));
    check(&repo, &[work.path()]);
    check_multiline(&repo, &[work.path()]);
    check_guest_permissions(&repo);
}

#[test]
fn incus_backend() {
    let Some(image) = crate::harness::testbed_incus_image() else {
        return;
    };
    let jobs = format!("{JOB}{PEEK}{PEM_JOB}");
    let repo = Repo::new(&crate::harness::incus_config(&image, "", &jobs));
    check(&repo, &[]);
    check_multiline(&repo, &[]);
    check_guest_permissions(&repo);
}
