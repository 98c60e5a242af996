//! JUnit, Markdown summaries, GitHub Actions output and terminal progress.

use std::path::Path;
use std::process::Command;

use crate::harness::{Repo, redact};

const CONFIG: &str = "[defaults]\nbackend = \"host\"\n\
[jobs.good]\ncommand = \"echo fine\"\n\
[jobs.bad]\ncommand = \"echo 'line <1> & \\\"2\\\"'; echo oops >&2; exit 4\"\n\
[jobs.after]\nneeds = [\"bad\"]\ncommand = \"true\"\n\
[targets.ci]\ndescription = \"All\"\njobs = [\"good\", \"bad\", \"after\"]\n\
[targets.quick]\njobs = [\"good\"]\n";

fn redact_numbers(text: &str) -> String {
    regex::Regex::new(r#"(time|duration)="[0-9.]+""#)
        .unwrap()
        .replace_all(text, "$1=\"[T]\"")
        .into_owned()
}

#[test]
fn junit_is_valid_and_carries_failures() {
    let repo = Repo::new(CONFIG);
    let junit = repo.path().join("out/junit.xml");
    std::fs::create_dir_all(junit.parent().unwrap()).unwrap();
    repo.pikaci(&["run", "ci", "quick", "--junit", junit.to_str().unwrap()])
        .expect(1);
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
    let check = Command::new("xmllint")
        .args(["--noout", "--schema", schema])
        .arg(&junit)
        .output();
    match check {
        Ok(out) => assert!(
            out.status.success(),
            "schema validation: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "xmllint is required in CI"
            );
            eprintln!("skipped schema validation: xmllint is not installed");
        }
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    insta::assert_snapshot!(redact_numbers(&redact(&xml, &repo)));
}

#[test]
fn markdown_summary_and_step_summary() {
    let repo = Repo::new(CONFIG);
    let summary = repo.path().join("summary.md");
    let step = repo.path().join("step.md");
    std::fs::write(&step, "earlier step\n").unwrap();
    let out = repo
        .command(&["run", "ci", "--summary", summary.to_str().unwrap()])
        .env("GITHUB_STEP_SUMMARY", &step)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&summary).unwrap();
    let redacted = regex::Regex::new(r"\b\d+(\.\d+)?(ms|s)\b")
        .unwrap()
        .replace_all(&redact(&text, &repo), "[D]")
        .into_owned();
    insta::assert_snapshot!(redacted);
    assert_eq!(
        std::fs::read_to_string(&step).unwrap(),
        format!("earlier step\n{text}"),
        "appended to the step summary"
    );
}

#[test]
fn github_actions_groups_logs_and_annotates_failures() {
    let repo = Repo::new(CONFIG);
    let out = repo
        .command(&["run", "ci", "--jobs", "1"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stdout = regex::Regex::new("[0-9a-f]{32}")
        .unwrap()
        .replace_all(&stdout, "T");
    assert!(
        stdout.contains("::group::good (passed)\n::stop-commands::T\nfine\n::T::\n::endgroup::"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "::group::bad (failed)\n::stop-commands::T\nline <1> & \"2\"\noops\n::T::\n::endgroup::"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("::error title=pikaci job bad::failed: exited with code 4"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("::error title=pikaci job good"),
        "{stdout}"
    );
    let jsonl = repo
        .command(&["run", "ci", "--output", "jsonl"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&jsonl.stdout).contains("::group::"),
        "machine output stays machine-readable"
    );
}

/// A job's log cannot issue workflow commands: GitHub reads `::error::…`, `::add-mask::…`
/// or `::endgroup::` on any line of a step's output, so each log is printed between
/// `::stop-commands::TOKEN` and `::TOKEN::`, with a token the job cannot know.
#[test]
fn github_actions_log_lines_cannot_issue_workflow_commands() {
    let repo = Repo::new(
        "[defaults]\nbackend = \"host\"\n\n[jobs.sly]\ncommand = \"echo '::endgroup::'; echo '::error title=x::injected'\"\n",
    );
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            let out = repo
                .command(&["run", "sly"])
                .env("GITHUB_ACTIONS", "true")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stop = regex::Regex::new(
                r"(?s)::group::sly \(passed\)\n::stop-commands::([0-9a-f]{32,})\n::endgroup::\n::error title=x::injected\n::([0-9a-f]+)::\n::endgroup::",
            )
            .unwrap();
            let caps = stop.captures(&stdout).unwrap_or_else(|| panic!("{stdout}"));
            assert_eq!(&caps[1], &caps[2], "{stdout}");
            caps[1].to_string()
        })
        .collect();
    assert_ne!(tokens[0], tokens[1], "a token is new each time");
}

#[test]
fn terminal_shows_live_progress() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "script (util-linux) is required in CI"
        );
        return;
    }
    let repo = Repo::new("[defaults]\nbackend = \"host\"\n[jobs.slow]\ncommand = \"sleep 1.5\"\n");
    let pikaci = env!("CARGO_BIN_EXE_pikaci");
    let out = Command::new("script")
        .args(["-qfec", &format!("{pikaci} run slow"), "/dev/null"])
        .current_dir(repo.path())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let screen = String::from_utf8_lossy(&out.stdout);
    // A spinner line with the job, its phase and elapsed time was drawn while it ran...
    assert!(screen.contains("slow run"), "{screen}");
    assert!(
        screen.contains("\u{1b}["),
        "terminal control sequences are used: {screen}"
    );
    // ...and the plain `start` line of non-terminal output was not.
    assert!(!screen.contains("start  slow"), "{screen}");
    assert!(screen.contains("pass   slow"), "{screen}");
}

/// GNU time (its `%M` is the child's peak RSS from `wait4`, so other tests' processes do
/// not count), or None when it is not installed.
fn gnu_time() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("time"))
        .find(|time| {
            Command::new(time)
                .arg("--version")
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("GNU"))
        })
}

/// Runs `inner` under GNU `time` with its stdout in `stdout`; its exit code and peak RSS.
fn peak_rss(time: &Path, inner: &Command, stdout: &Path) -> (i32, u64) {
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(time);
    command
        .args(["-f", "%M", "-o"])
        .arg(rss.path())
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(inner.get_current_dir().unwrap())
        .stdout(std::fs::File::create(stdout).unwrap());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let status = command.status().unwrap();
    let kib = std::fs::read_to_string(rss.path()).unwrap();
    let kib = kib.lines().last().unwrap().trim().parse().unwrap();
    (status.code().unwrap_or(-1), kib)
}

const HUGE: &str = r#"
[defaults]
backend = "host"
[jobs.one-line]
command = '''head -c 300000000 /dev/zero | tr '\0' x; exit 1'''
[jobs.many-lines]
command = '''yes 'an ordinary line of job output, some sixty bytes long, again' | head -c 200000000; exit 1'''
"#;

/// One 300 MB line, and 200 MB of ordinary lines, from failing jobs: the JUnit report,
/// the GitHub Actions groups and the Markdown summary keep a bounded tail of each log
/// (a long line cut, with a marker), `pikaci logs` streams it whole, and pikaci's peak RSS
/// stays under 64 MiB throughout.
#[test]
fn huge_output_keeps_memory_bounded_in_reports_and_logs() {
    let Some(time) = gnu_time() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "GNU time is required in CI"
        );
        eprintln!("skipped: GNU time is not installed");
        return;
    };
    const LIMIT_KIB: u64 = 64 * 1024;
    let repo = Repo::new(HUGE);
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (junit, summary, stdout) = (
        out.join("junit.xml"),
        out.join("summary.md"),
        out.join("stdout"),
    );
    for (job, size) in [("one-line", 300_000_000), ("many-lines", 200_000_000)] {
        let mut run = repo.command(&[
            "run",
            job,
            "--junit",
            junit.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
        ]);
        run.env("GITHUB_ACTIONS", "true");
        let (code, kib) = peak_rss(&time, &run, &stdout);
        assert_eq!(code, 1, "{job}");
        eprintln!("{job}: `pikaci run` peaked at {kib} KiB");
        assert!(kib < LIMIT_KIB, "{job}: `pikaci run` peaked at {kib} KiB");
        let printed = std::fs::metadata(&stdout).unwrap().len();
        assert!(printed < 1 << 20, "{job}: {printed} bytes of GitHub groups");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(
            xml.len() < 256 << 10,
            "{job}: junit.xml of {} bytes",
            xml.len()
        );
        if job == "one-line" {
            assert!(xml.contains("xxxx"), "the tail of the line is kept");
            assert!(xml.contains("[pikaci: "), "the line is cut with a marker");
        }
        let (code, kib) = peak_rss(
            &time,
            &repo.command(&["logs", "latest", "--job", job]),
            &stdout,
        );
        assert_eq!(code, 0, "{job}");
        eprintln!("{job}: `pikaci logs` peaked at {kib} KiB");
        assert!(kib < LIMIT_KIB, "{job}: `pikaci logs` peaked at {kib} KiB");
        assert_eq!(
            std::fs::metadata(&stdout).unwrap().len(),
            size,
            "{job}: the whole log"
        );
        std::fs::remove_file(&stdout).unwrap();
    }
}
