//! `pikaci serve` over runs the real binary made with the `host` backend: it only reads,
//! never outside the state dir, carries 50 live followers during a run, and shows a
//! person in headless Chromium what failed, where the time went and the log as it grows.
//! Chromium is driven over WebDriver (ChromeDriver), not `--dump-dom`: the live log is one
//! page load watched over time (it grows in place, then the page turns to the final
//! status), which a one-shot dump cannot see.

mod http;
mod webdriver;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use crate::harness::{Repo, eventually};
use http::get;

const JOBS: &str = r#"[defaults]
backend = "host"
[jobs.ok]
command = 'echo fine; mkdir -p "$PIKACI_ARTIFACTS/sub"; echo kept > "$PIKACI_ARTIFACTS/sub/kept.txt"; ln -s "$SECRET" "$PIKACI_ARTIFACTS/out"; ln -s ../status.json "$PIKACI_ARTIFACTS/up"'
[jobs.ok.env]
SECRET = "SECRET_PATH"
[jobs.bad]
command = "echo broken; exit 3"
needs = ["ok"]
[jobs.slow]
command = "echo waiting; sleep 30"
timeout = "1s"
[jobs.live]
command = 'echo first; while [ ! -e "$GATE/go" ]; do sleep 0.1; done; echo second; while [ ! -e "$GATE/end" ]; do sleep 0.1; done; echo third'
[jobs.live.env]
GATE = "GATE_DIR"
[jobs.work]
command = 'while [ ! -e "$GATE/go" ]; do sleep 0.05; done; s=$(date +%s%N); for i in $(seq 1 30); do echo line $i; sleep 0.05; done; echo work_ms=$(( ($(date +%s%N) - s) / 1000000 ))'
[jobs.work.env]
GATE = "GATE_DIR"
"#;

const SECRET: &str = "TOPSECRET-4f1c";

/// A repo with one finished run of `ok` (passed), `bad` (failed) and `slow` (timed out),
/// a secret file outside its state dir, and a gate dir for the jobs that wait.
struct Fixture {
    repo: Repo,
    gate: PathBuf,
    run: String,
}

impl Fixture {
    fn new() -> Fixture {
        let gates = tempfile::tempdir().unwrap().keep();
        let secret = gates.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let config = JOBS
            .replace("SECRET_PATH", secret.to_str().unwrap())
            .replace("GATE_DIR", gates.to_str().unwrap());
        let repo = Repo::new(&config);
        repo.pikaci(&["run", "ok", "bad", "slow"]).expect(1);
        let run = repo.latest_run_id();
        Fixture {
            repo,
            gate: gates,
            run,
        }
    }

    fn open_gate(&self, name: &str) {
        std::fs::write(self.gate.join(name), "").unwrap();
    }

    fn close_gates(&self) {
        for name in ["go", "end"] {
            let _ = std::fs::remove_file(self.gate.join(name));
        }
    }

    /// Starts `pikaci run JOB` and returns once the new run's job is running.
    fn start(&self, job: &str) -> Running<'_> {
        let before = self.repo.latest_run_id();
        let child = self
            .repo
            .command(&["run", job, "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running {
            fixture: self,
            child,
        };
        let started = eventually(Duration::from_secs(60), || {
            let id = self.repo.latest_run_id();
            id != before && self.job_status(&id, job).as_deref() == Some("running")
        });
        assert!(started, "`pikaci run {job}` did not start it");
        running
    }

    fn job_status(&self, run: &str, job: &str) -> Option<String> {
        let path = self.state_job(run, job).join("status.json");
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        record["status"].as_str().map(str::to_string)
    }

    fn state_job(&self, run: &str, job: &str) -> PathBuf {
        self.repo
            .state()
            .join("runs")
            .join(run)
            .join("jobs")
            .join(job)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.gate);
    }
}

/// A `pikaci run` in progress; dropping it lets its job through every gate and waits, so
/// no job process outlives a failed test.
struct Running<'a> {
    fixture: &'a Fixture,
    child: Child,
}

impl Running<'_> {
    fn finish(mut self) -> std::process::ExitStatus {
        self.fixture.open_gate("go");
        self.fixture.open_gate("end");
        self.child.wait().unwrap()
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.fixture.open_gate("go");
        self.fixture.open_gate("end");
        let _ = self.child.wait();
    }
}

/// `pikaci serve` on a free loopback port, stopped on drop.
struct Server {
    child: Child,
    addr: String,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(repo: &Repo) -> Server {
        let mut child = repo
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every path under `dir` with its size and modification time: what a writer would change.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut entries: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.path().symlink_metadata().ok()?;
            Some((e.path().to_path_buf(), meta.len(), meta.modified().ok()?))
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn serve_only_reads_and_never_outside_the_state_dir() {
    let fx = Fixture::new();
    let server = Server::start(&fx.repo);
    let before = tree(&fx.repo.state());
    let run = &fx.run;
    let job = |j: &str, rest: &str| format!("/runs/{run}/jobs/{j}{rest}");
    let pages = [
        "/".to_string(),
        "/?status=failed".into(),
        format!("/runs/{run}"),
        "/runs/latest".into(),
        job("ok", ""),
        job("bad", ""),
        job("slow", ""),
        job("ok", "/guest.log"),
        job("ok", "/host.log"),
        job("ok", "/artifacts/sub/kept.txt"),
        "/api/runs".into(),
        format!("/api/runs/{run}"),
        format!("/api/runs/{run}/jobs/bad"),
        "/assets/style.css".into(),
        "/assets/live.js".into(),
    ];
    for page in &pages {
        let answer = get(&server.addr, page);
        assert_eq!(answer.status, 200, "{page}: {}", answer.text());
    }
    let kept = get(&server.addr, &job("ok", "/artifacts/sub/kept.txt"));
    assert_eq!(kept.text(), "kept\n");
    assert!(
        kept.head.contains("attachment; filename=\"kept.txt\""),
        "{}",
        kept.head
    );
    let head = get(&server.addr, "/").head.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(header), "{head}");
    }
    assert!(get(&server.addr, &job("bad", "")).text().contains("broken"));
    let missing = [
        "/runs/20990101T000000Z-0000000".to_string(),
        job("nope", ""),
        job("nope", "/guest.log"),
        "/nothing/here".into(),
        job("ok", "/artifacts/%252e%252e/status.json"),
    ];
    for page in &missing {
        let answer = get(&server.addr, page);
        assert_eq!(answer.status, 404, "{page}: {}", answer.text());
        assert!(
            answer.text().contains("<html"),
            "{page}: a page, not a bare error"
        );
    }
    let api = get(&server.addr, "/api/runs/nope");
    assert_eq!(api.status, 404);
    assert!(
        api.text().contains(r#""error": "no run `nope`""#),
        "{}",
        api.text()
    );
    let outside = [
        job("ok", "/artifacts/../../../../../../../etc/passwd"),
        job(
            "ok",
            "/artifacts/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        ),
        job("ok", "/artifacts/%2E%2E/status.json"),
        job("ok", "/artifacts/..%2f..%2f..%2fstatus.json"),
        job("ok", "/artifacts/sub%2f..%2f..%2fstatus.json"),
        job("ok", "/artifacts/sub%5c..%5c..%5cstatus.json"),
        // Symlinks the job left in its artifacts: to the secret, and to its own record.
        job("ok", "/artifacts/out"),
        job("ok", "/artifacts/up"),
        "/runs/..%2f..%2f..%2fsecret".into(),
        "/runs/%2e%2e/jobs/ok".into(),
        format!("/runs/{}", "a/".repeat(50_000)),
        format!("/{}", "%2e".repeat(20_000)),
        format!("{}/guest.log", job("ok", "").repeat(40)),
    ];
    for target in &outside {
        let shown = &target[..target.len().min(80)];
        match http::request(&server.addr, "GET", target, None) {
            // Refused before an answer (a target too long to read) is refused too.
            None => {}
            Some(answer) => {
                assert!(answer.status >= 400, "{shown}: {}", answer.status);
                let text = answer.text();
                assert!(
                    !text.contains(SECRET)
                        && !text.contains("root:x:")
                        && !text.contains("\"job\""),
                    "{shown} read outside: {text}"
                );
            }
        }
    }
    let post = http::request(&server.addr, "POST", "/", Some("{}")).unwrap();
    assert_eq!(post.status, 405);
    // The API is `status --json` and `runs --json`, document for document.
    let api: serde_json::Value =
        serde_json::from_slice(&get(&server.addr, &format!("/api/runs/{run}")).body).unwrap();
    assert_eq!(api, fx.repo.pikaci(&["status", run, "--json"]).json());
    let api: serde_json::Value =
        serde_json::from_slice(&get(&server.addr, "/api/runs").body).unwrap();
    assert_eq!(api, fx.repo.pikaci(&["runs", "--json"]).json());
    assert_eq!(get(&server.addr, "/").status, 200, "still serving");
    assert_eq!(
        tree(&fx.repo.state()),
        before,
        "serve changed the state dir"
    );
}

#[test]
fn a_corrupt_record_is_a_page_naming_it() {
    let fx = Fixture::new();
    let runs = fx.repo.state().join("runs");
    let copy = |id: &str| {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(runs.join(&fx.run))
            .arg(runs.join(id))
            .status()
            .unwrap();
        assert!(status.success());
        runs.join(id)
    };
    let broken_run = copy("20990101T000000Z-00000a1");
    std::fs::write(broken_run.join("run.json"), "{not json").unwrap();
    let broken_job = copy("20990101T000000Z-00000a2");
    std::fs::write(broken_job.join("jobs/bad/status.json"), "[1,").unwrap();
    let server = Server::start(&fx.repo);
    let list = get(&server.addr, "/");
    assert_eq!(list.status, 200);
    assert!(list.text().contains("unreadable"), "{}", list.text());
    let page = get(&server.addr, "/runs/20990101T000000Z-00000a1");
    assert_eq!(page.status, 500);
    let named = broken_run.join("run.json").display().to_string();
    assert!(page.text().contains(&named), "{}", page.text());
    let run = get(&server.addr, "/runs/20990101T000000Z-00000a2");
    assert_eq!(run.status, 200, "the other jobs still show");
    assert!(
        run.text().contains("data-status=\"unreadable\""),
        "{}",
        run.text()
    );
    let job = get(&server.addr, "/runs/20990101T000000Z-00000a2/jobs/bad");
    assert_eq!(job.status, 500);
    let named = broken_job
        .join("jobs/bad/status.json")
        .display()
        .to_string();
    assert!(job.text().contains(&named), "{}", job.text());
    let api = get(&server.addr, "/api/runs/20990101T000000Z-00000a1");
    assert_eq!(api.status, 500);
    assert!(api.text().contains("run.json"), "{}", api.text());
}

/// Opens a live follower of `path`; once its stream has begun it says so on `begun`, then
/// reads it to its end: the whole answer as text.
fn follower(
    addr: String,
    path: String,
    begun: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(180)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = Vec::new();
        let mut piece = [0u8; 4096];
        let mut told = false;
        while let Ok(n) = stream.read(&mut piece) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&piece[..n]);
            if !told && text.windows(4).any(|w| w == b"\r\n\r\n") {
                told = true;
                let _ = begun.send(());
            }
            if text.windows(10).any(|w| w == b"event: end") {
                break;
            }
        }
        text
    })
}

/// The log text a server-sent-events answer carried, joined.
fn streamed_text(answer: &str) -> String {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|data| data["text"].as_str().map(str::to_string))
        .collect()
}

fn work_ms(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix("work_ms="))
        .and_then(|ms| ms.trim().parse().ok())
        .unwrap_or_else(|| panic!("no work_ms in {log:?}"))
}

#[test]
fn fifty_live_followers_do_not_hold_up_a_run() {
    const FOLLOWERS: usize = 50;
    let fx = Fixture::new();
    let server = Server::start(&fx.repo);
    fx.open_gate("go");
    fx.repo.pikaci(&["run", "work", "--no-progress"]).expect(0);
    let alone = work_ms(
        &std::fs::read_to_string(
            fx.state_job(&fx.repo.latest_run_id(), "work")
                .join("guest.log"),
        )
        .unwrap(),
    );
    fx.close_gates();

    let running = fx.start("work");
    let run = fx.repo.latest_run_id();
    let (begun, begins) = std::sync::mpsc::channel();
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| {
            let path = format!("/runs/{run}/jobs/work/live/guest.log?offset=0");
            follower(server.addr.clone(), path, begun.clone())
        })
        .collect();
    for n in 0..FOLLOWERS {
        let began = begins.recv_timeout(Duration::from_secs(60));
        assert!(began.is_ok(), "only {n} of {FOLLOWERS} streams began");
    }
    let status = running.finish();
    assert!(
        status.success(),
        "the run with {FOLLOWERS} followers: {status}"
    );
    assert_eq!(fx.job_status(&run, "work").as_deref(), Some("passed"));
    let log = std::fs::read_to_string(fx.state_job(&run, "work").join("guest.log")).unwrap();
    let followed = work_ms(&log);
    for (n, follower) in followers.into_iter().enumerate() {
        let raw = follower.join().unwrap();
        let answer = http::parse(&raw).unwrap_or_else(|| panic!("follower {n}: no answer"));
        assert_eq!(answer.status, 200, "follower {n}: {}", answer.head);
        assert!(
            answer.head.contains("text/event-stream"),
            "follower {n}: {}",
            answer.head
        );
        let answer = answer.text();
        assert!(
            answer.contains("event: end"),
            "follower {n} saw no end: {answer}"
        );
        assert!(
            answer.contains(r#""status":"passed""#),
            "follower {n}: {answer}"
        );
        assert_eq!(streamed_text(&answer), log, "follower {n} got another log");
    }
    eprintln!(
        "work took {followed}ms with {FOLLOWERS} live followers, {alone}ms without: ratio {:.2}",
        followed as f64 / alone.max(1) as f64
    );
}

fn screenshots_dir() -> PathBuf {
    let wanted = std::env::var_os("PIKACI_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-screenshots"));
    // The suite's unprivileged user may not write the target dir: then a temp dir.
    let dir = match std::fs::create_dir_all(&wanted).and_then(|()| tempfile::tempfile_in(&wanted)) {
        Ok(_) => wanted,
        Err(_) => {
            let dir = std::env::temp_dir()
                .join(format!("pikaci-serve-screenshots-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
    };
    eprintln!("screenshots of `pikaci serve` pages: {}", dir.display());
    dir
}

/// Whether Chromium and ChromeDriver are installed; outside CI their absence skips the
/// test, loudly; in CI it fails it.
fn chromium_present() -> bool {
    let present =
        Path::new(webdriver::CHROMIUM).exists() && Path::new(webdriver::CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs {} and {} (scripts/setup.sh installs chromium and chromium-driver)",
            webdriver::CHROMIUM,
            webdriver::CHROMEDRIVER
        );
        eprintln!(
            "SKIPPED serve::a_person_sees_the_runs_in_chromium: {} or {} is missing \
             (apt-get install chromium chromium-driver)",
            webdriver::CHROMIUM,
            webdriver::CHROMEDRIVER
        );
    }
    present
}

#[test]
fn a_person_sees_the_runs_in_chromium() {
    if !chromium_present() {
        return;
    }
    let fx = Fixture::new();
    let live = fx.start("live");
    let live_run = fx.repo.latest_run_id();
    let wrote_first = eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(fx.state_job(&live_run, "live").join("guest.log"))
            .is_ok_and(|log| log.contains("first"))
    });
    assert!(wrote_first, "the live job printed nothing");
    let server = Server::start(&fx.repo);
    let home = tempfile::tempdir().unwrap();
    let browser = webdriver::Browser::start(home.path());
    let shots = screenshots_dir();
    let wait = Duration::from_secs(60);

    browser.open(&server.url("/"));
    let rows = browser.eval(
        "return Array.from(document.querySelectorAll('tr.run')).map(r => [r.dataset.run, r.dataset.status]);",
    );
    assert_eq!(
        rows,
        serde_json::json!([[live_run, "running"], [fx.run, "failed"]]),
        "newest first"
    );
    browser.screenshot(&shots.join("runs.png"));

    browser.open(&server.url(&format!("/runs/{}", fx.run)));
    let bad = browser.eval(
        "const row = document.querySelector('tr.job[data-job=bad]');
         const badge = row.querySelector('.status');
         return [row.dataset.status, badge.textContent, getComputedStyle(badge).color];",
    );
    // The red of a failure: the stylesheet pikaci serves was applied.
    assert_eq!(
        bad,
        serde_json::json!(["failed", "failed", "rgb(164, 14, 38)"])
    );
    let bars = browser.eval(
        "return Array.from(document.querySelectorAll('svg.timeline g.bar')).map(b => ({
           job: b.dataset.job,
           failure: b.classList.contains('failure'),
           phases: Array.from(b.querySelectorAll('rect.phase')).map(r => r.dataset.phase),
           shown: b.querySelector('rect.phase[data-phase=run]').getBoundingClientRect().width > 0,
         }));",
    );
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), 3, "one bar per job: {bars:?}");
    for bar in bars {
        let phases: Vec<&str> = bar["phases"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert!(phases.len() >= 3 && phases.contains(&"run"), "{bar}");
        let failed = bar["job"] != "ok";
        assert_eq!(bar["failure"], failed, "{bar}");
        assert_eq!(bar["shown"], true, "{bar}");
    }
    let edges = browser.eval(
        "return Array.from(document.querySelectorAll('svg.needs line.edge')).map(e => [e.dataset.from, e.dataset.to]);",
    );
    assert_eq!(edges, serde_json::json!([["ok", "bad"]]));
    browser.screenshot(&shots.join("run.png"));

    browser.open(&server.url(&format!("/runs/{}/jobs/slow", fx.run)));
    let slow = browser.eval("return [document.getElementById('job-status').dataset.status, document.getElementById('log').textContent];");
    assert_eq!(slow, serde_json::json!(["timed_out", "waiting\n"]));
    browser.screenshot(&shots.join("job-timed-out.png"));

    browser.open(&server.url(&format!("/runs/{live_run}")));
    browser.screenshot(&shots.join("run-running.png"));
    browser.open(&server.url(&format!("/runs/{live_run}/jobs/live")));
    let log = "document.getElementById('log').textContent";
    assert!(browser.wait_for(&format!("return {log}.includes('first');"), wait));
    let state = browser.eval(
        "window.sameLoad = true; return document.getElementById('job-status').dataset.status;",
    );
    assert_eq!(state, "running");
    fx.open_gate("go");
    let grew = browser.wait_for(
        &format!("return {log}.includes('second') && window.sameLoad === true;"),
        wait,
    );
    assert!(
        grew,
        "the log did not grow in place: {}",
        browser.eval(&format!("return {log};"))
    );
    browser.screenshot(&shots.join("job-live.png"));
    fx.open_gate("end");
    let ended = browser.wait_for(
        "const s = document.getElementById('job-status'); return !!s && s.dataset.status === 'passed';",
        wait,
    );
    assert!(ended, "the page did not turn to the final status");
    let after = browser.eval(&format!(
        "return [{log}, window.sameLoad === undefined, !document.getElementById('live-state')];"
    ));
    assert_eq!(
        after,
        serde_json::json!(["first\nsecond\nthird\n", true, true])
    );
    browser.screenshot(&shots.join("job-ended.png"));
    assert!(live.finish().success());
}
