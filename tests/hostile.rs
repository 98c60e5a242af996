//! Hostile input on every backend: a command full of shell syntax, unicode and control
//! characters runs exactly as written; an environment value likewise; non-UTF-8 output
//! is kept byte for byte; and the repository, state dir and host work dir live at paths
//! with spaces and quotes.

use std::path::Path;

use crate::harness::Repo;

/// A directory name that breaks naive quoting.
const AWKWARD: &str = "a dir with spaces, 'quotes' and $dollar";

const JOB: &str = r#"
[jobs.weird]
env = { WEIRD = "it's \"q\" $(nope) `nope` ünï\ttab\\" }
command = '''
cat > "$PIKACI_ARTIFACTS/got" <<'PIKACI_EOF'
it's "double" $(echo no) `echo no` $HOME \back\slash ünïcödé 日本語 ✓
second line	with a tab; and a ; semicolon | pipe & amp
PIKACI_EOF
printf '%s' "$WEIRD" > "$PIKACI_ARTIFACTS/env"
printf '\377\376not utf-8\n'
'''
"#;

fn check(repo: &Repo) {
    let run = repo.pikaci(&["run", "weird"]);
    run.expect(0);
    let dir = repo.latest_run().join("jobs/weird");
    let got = std::fs::read_to_string(dir.join("artifacts/got")).unwrap();
    assert_eq!(
        got,
        "it's \"double\" $(echo no) `echo no` $HOME \\back\\slash ünïcödé 日本語 ✓\n\
         second line\twith a tab; and a ; semicolon | pipe & amp\n"
    );
    let env = std::fs::read_to_string(dir.join("artifacts/env")).unwrap();
    assert_eq!(env, "it's \"q\" $(nope) `nope` ünï\ttab\\");
    let log = std::fs::read(dir.join("guest.log")).unwrap();
    assert_eq!(
        log, b"\xff\xfenot utf-8\n",
        "non-UTF-8 output kept as it was"
    );
    // Records stay valid JSON whatever the job printed.
    assert_eq!(repo.read_json(&dir.join("status.json"))["status"], "passed");
    let logs = repo.pikaci(&["logs", "latest", "--job", "weird"]);
    logs.expect(0);
}

#[test]
fn host_backend() {
    let repo = Repo::named(AWKWARD, &format!("[defaults]\nbackend = \"host\"\n{JOB}"));
    check(&repo);
}

#[test]
fn microvm_backend() {
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().join(AWKWARD);
    let repo = Repo::named(AWKWARD, &testbed.config(&work_dir, JOB));
    check(&repo);
    assert!(
        crate::harness::processes_under(&work_dir).is_empty(),
        "nothing left running"
    );
    assert!(Path::new(&work_dir).join("gcroots").is_dir());
}

#[test]
fn incus_backend() {
    let Some(image) = crate::harness::testbed_var("PIKACI_TEST_INCUS_IMAGE", "incus.sh") else {
        return;
    };
    let repo = Repo::named(
        AWKWARD,
        &format!(
            "[defaults]\nbackend = \"incus\"\n\n[backends.incus]\nimage = \"{image}\"\n\
             instance-type = \"container\"\nguest-agent = \"/usr/local/bin/pikaci-guest\"\n{JOB}"
        ),
    );
    check(&repo);
}
