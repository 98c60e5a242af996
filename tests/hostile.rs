//! Hostile input on every backend: a command full of shell syntax, unicode and control
//! characters runs exactly as written; an environment value likewise; non-UTF-8 output
//! is kept byte for byte; and the repository, state dir and host work dir live at paths
//! with spaces and quotes.

use std::path::Path;
use std::time::Duration;

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
    let left = crate::harness::processes_left_under(&work_dir, Duration::from_secs(10));
    assert_eq!(left, Vec::<String>::new(), "nothing left running");
    assert!(Path::new(&work_dir).join("gcroots").is_dir());
}

#[test]
fn incus_backend() {
    let Some(image) = crate::harness::testbed_incus_image() else {
        return;
    };
    let repo = Repo::named(AWKWARD, &crate::harness::incus_config(&image, "", JOB));
    check(&repo);
}

/// Runs `pikaci run JOB` and returns its exit code and peak resident memory in MiB
/// (VmHWM, read until it exits).
fn run_measuring_memory(repo: &Repo, job: &str) -> (i32, u64) {
    let mut child = repo
        .command(&["run", job, "--output", "jsonl"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        if let Some(exit) = child.try_wait().unwrap() {
            return (exit.code().unwrap_or(-1), peak_kib / 1024);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn big_job(mib: u64) -> String {
    format!(
        // `yes` ends by SIGPIPE, which fails a pipefail shell: the output is what counts.
        "[jobs.big]\ncommand = \"(yes 0123456789012345678901234567890123456789 || true) | head -c {}\"\n",
        mib << 20
    )
}

/// A job printing `mib` MiB: the log keeps all of it, pikaci's memory stays under
/// half of that.
fn check_big_output(repo: &Repo, mib: u64) {
    let (code, peak) = run_measuring_memory(repo, "big");
    assert_eq!(code, 0);
    let log = repo.latest_run().join("jobs/big/guest.log");
    assert_eq!(std::fs::metadata(log).unwrap().len(), mib << 20);
    eprintln!("pikaci's peak RSS with {mib} MiB of job output: {peak} MiB");
    assert!(peak < mib / 2, "peak RSS {peak} MiB");
}

#[test]
fn host_backend_big_output() {
    let repo = Repo::new(&format!("[defaults]\nbackend = \"host\"\n{}", big_job(200)));
    check_big_output(&repo, 200);
}

#[test]
fn incus_backend_big_output() {
    let Some(image) = crate::harness::testbed_incus_image() else {
        return;
    };
    let repo = Repo::new(&crate::harness::incus_config(&image, "", &big_job(200)));
    check_big_output(&repo, 200);
}

/// 96 MiB rather than 200: under TCG the guest writes its log at about 3 MiB/s.
#[test]
fn microvm_backend_big_output() {
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let repo = Repo::new(&testbed.config(work.path(), &big_job(96)));
    check_big_output(&repo, 96);
}
