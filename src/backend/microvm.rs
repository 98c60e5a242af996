//! `backend = "microvm"`: each job in a throwaway microVM on the host (this machine or
//! one reached over SSH), following microvm.nix's runner contract.
//!
//! Once per run: open the host session (connect, work dir, workspace), `nix build` the
//! runner there with an out-link under `<work>/gcroots/` as its GC root, and read the
//! shares the runner declares. Per job: a job dir on the host with the request, the
//! artifacts share and a runtime dir; `supervise.bash` starts one virtiofsd per share,
//! waits for the sockets and runs `bin/microvm-run`; the serial console streams into
//! `host.log`; afterwards the artifacts (with `guest.log` and `result.json`) come back
//! and the job dir goes.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub(crate) mod doctor;

use super::build_host::RunnerPlan;
use super::remote_guest::{RemoteGuest, Side};
use super::session::{HOST_STEP, HostSession, RunContext};
use super::{Backend, BackendError, Guest, JobContext, SetupError};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::hypervisor::virtiofsd_announces_tag;
use crate::config::{BackendKind, MicrovmSettings};
use crate::guest_layout::{ShareTag, WORKSPACE as GUEST_WORKSPACE};
use crate::nix::{BUILD_TIMEOUT, GuestProfile, NixBuild, PikaciOnHost, StorePath, installable_in};
use crate::protocol::Request;
use crate::transport::Transport;

pub(crate) const SUPERVISE: &str = include_str!("microvm/supervise.bash");
/// How long virtiofsd may take to create its socket.
const SOCKET_WAIT_SECS: u64 = 30;

/// A virtiofs share the runner declares: `share/microvm/virtiofs/<tag>/socket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerShare {
    pub tag: ShareTag,
    /// Relative to the runtime dir `microvm-run` starts in.
    pub socket: String,
}

/// Everything jobs of one run share: the host and the built runner.
struct Prepared {
    /// The host's session; the build host's own (shared with its builds) when this host
    /// is the build host.
    session: Arc<HostSession>,
    runner: StorePath,
    shares: Vec<RunnerShare>,
    settings: MicrovmSettings,
}

pub struct MicrovmBackend {
    prepared: Arc<Prepared>,
}

impl MicrovmBackend {
    /// The run's setup, done by the first microVM job and shared by the others.
    /// With a build host, the runner is built there (once for every guest host) and
    /// copied here.
    pub fn prepare(mut cx: RunContext, cancel: &Cancel) -> Result<MicrovmBackend, SetupError> {
        let settings = cx.run.config.backends.microvm.clone();
        let (session, runner) = match cx.build_host {
            Some(build) => {
                let session = match build.session_for(cx.host, cancel) {
                    Some(shared) => shared?,
                    None => Arc::new(HostSession::open(&mut cx, cancel)?),
                };
                let plan = |b: &HostSession| runner_installable(b, &session, &settings, cancel);
                let run = |b: &HostSession, plan: &RunnerPlan, log: &Path| {
                    build_runner(b, plan, log, &cx, cancel)
                };
                let runner = build.runner(cx.host, &session, plan, &run, cancel)?;
                (session, runner)
            }
            None => {
                let session = HostSession::open(&mut cx, cancel)?;
                let plan = runner_installable(&session, &session, &settings, cancel)?;
                let log = cx
                    .run
                    .run_dir
                    .join("prepare")
                    .join(format!("microvm-runner-{}.log", cx.host.name));
                let runner = build_runner(&session, &plan, &log, &cx, cancel)?;
                (Arc::new(session), runner)
            }
        };
        let shares = read_shares(&session, &runner, cancel)?;
        Ok(MicrovmBackend {
            prepared: Arc::new(Prepared {
                session,
                runner,
                shares,
                settings,
            }),
        })
    }
}

/// The installable to build on `session` (the guest host, or the build host) and the
/// name of its GC root under `<work>/gcroots/` there; the guest flake gets the facts (user
/// ids, machine) of the guest host behind `guest`.
fn runner_installable(
    session: &HostSession,
    guest: &HostSession,
    settings: &MicrovmSettings,
    cancel: &Cancel,
) -> Result<RunnerPlan, SetupError> {
    if let Some(runner) = &settings.runner {
        let installable = installable_in(&session.snapshot, runner);
        let hash = crate::snapshot::hex(&Sha256::digest(installable.as_bytes())[..8]);
        return Ok(RunnerPlan {
            installable,
            name: format!("runner-{hash}"),
        });
    }
    let flake = crate::nix::pikaci_flake(settings, None)?;
    let on_host = PikaciOnHost::resolve(&flake, &session.work_dir, session.local);
    if let Some((source, copy)) = &on_host.send {
        send_pikaci_source(session.transport.as_ref(), source, copy, cancel)?;
    }
    let flake = on_host.flake;
    let host = super::session::read_host_facts(guest.transport.as_ref(), cancel)?;
    let profile = GuestProfile::from_settings(settings, flake, &host);
    let dir = session.work_dir.join("flakes").join(profile.hash());
    let write = Argv::new("sh")
        .args(["-c", WRITE_FLAKE, "pikaci-guest-flake"])
        .arg(&dir);
    session
        .run(&write, profile.flake_nix().as_bytes(), cancel)
        .map_err(|source| SetupError::Host {
            what: "write the guest flake on the host",
            source,
        })?;
    let installable = format!(
        "path:{}#{}",
        dir.display(),
        GuestProfile::runner_attribute()
    );
    Ok(RunnerPlan {
        installable,
        name: format!("runner-{}", profile.hash()),
    })
}

/// Prints whether `$1` exists on the host.
pub(crate) const SOURCE_PRESENT: &str =
    r#"if [ -d "$1" ]; then echo present; else echo missing; fi"#;

/// Unpacks pikaci's source from stdin into `$1` in one rename. Writable, so that the
/// rename works for an unprivileged user (the store's modes are read-only; the narHash
/// keeps only the executable bit).
pub(crate) const RECEIVE_SOURCE: &str = r#"set -eu
tmp="$1.tmp.$$"
rm -rf -- "$tmp" && mkdir -p -- "$tmp"
tar -xf - -C "$tmp"
chmod -R u+w -- "$tmp"
mv -T -- "$tmp" "$1" 2>/dev/null || { rm -rf -- "$tmp"; [ -d "$1" ]; }
"#;

/// Sends pikaci's own flake source to the host once (runs that find it there send
/// nothing).
fn send_pikaci_source(
    transport: &dyn Transport,
    source: &Path,
    copy: &Path,
    cancel: &Cancel,
) -> Result<(), SetupError> {
    let run = |argv: &Argv, stdin: &[u8]| {
        transport
            .run(argv, stdin, Instant::now() + HOST_STEP, cancel)
            .map(|out| out.stdout)
            .map_err(|source| SetupError::Host {
                what: "send pikaci's flake to the host",
                source,
            })
    };
    let check = Argv::new("sh")
        .args(["-c", SOURCE_PRESENT, "pikaci-source-present"])
        .arg(copy);
    if String::from_utf8_lossy(&run(&check, b"")?).trim() == "present" {
        return Ok(());
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let bytes = tar
        .append_dir_all(".", source)
        .and_then(|()| tar.into_inner())
        .map_err(|e| SetupError::Io {
            what: "read pikaci's flake",
            path: source.to_path_buf(),
            source: e,
        })?;
    let receive = Argv::new("sh")
        .args(["-c", RECEIVE_SOURCE, "pikaci-source-receive"])
        .arg(copy);
    run(&receive, &bytes).map(drop)
}

/// `nix build` of the runner on `session`, its out-link `gcroots/NAME` there, the build
/// log in the local file `log`.
fn build_runner(
    session: &HostSession,
    plan: &RunnerPlan,
    log: &Path,
    cx: &RunContext,
    cancel: &Cancel,
) -> Result<StorePath, SetupError> {
    let out_link = session.work_dir.join("gcroots").join(&plan.name);
    let prepare = cx.run.run_dir.join("prepare");
    crate::fsutil::create_dir_all(&prepare).map_err(|source| SetupError::Io {
        what: "create",
        path: prepare.clone(),
        source,
    })?;
    let build = NixBuild {
        installable: &plan.installable,
        out_link: &out_link,
        cwd: &session.work_dir,
    };
    let results = build
        .run(
            session.transport.as_ref(),
            log,
            Instant::now() + BUILD_TIMEOUT,
            cancel,
        )
        .map_err(SetupError::Build)?;
    results
        .into_iter()
        .flat_map(|r| r.outputs.into_values())
        .next()
        .ok_or(SetupError::NoOutput)
}

/// Lists `share/microvm/virtiofs/<tag>/socket` of the runner, and checks that it has
/// `bin/microvm-run`.
/// Writes the guest flake from stdin into `$1`, replacing it in one rename.
pub(crate) const WRITE_FLAKE: &str =
    r#"mkdir -p -- "$1" && cat > "$1/flake.nix.tmp" && mv -f -- "$1/flake.nix.tmp" "$1/flake.nix""#;

pub(crate) const READ_SHARES: &str = r#"set -eu
[ -x "$1/bin/microvm-run" ] || { echo "$1 is not a microVM runner: it has no bin/microvm-run" >&2; exit 3; }
cd "$1" && [ -d share/microvm/virtiofs ] || exit 0
for dir in share/microvm/virtiofs/*/; do
  [ -f "${dir}socket" ] || continue
  tag=${dir%/}; tag=${tag##*/}
  printf '%s\t%s\n' "$tag" "$(cat "${dir}socket")"
done
"#;

fn read_shares(
    session: &HostSession,
    runner: &StorePath,
    cancel: &Cancel,
) -> Result<Vec<RunnerShare>, SetupError> {
    let argv = read_shares_argv(runner.as_path());
    let out = session
        .run(&argv, b"", cancel)
        .map_err(|source| SetupError::Host {
            what: "read the runner's virtiofs shares",
            source,
        })?;
    Ok(parse_shares(&String::from_utf8_lossy(&out))?)
}

/// A runner whose declared shares pikaci cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("cannot read the runner's share line `{0}`")]
    Line(String),
    #[error(
        "the runner declares a virtiofs share `{tag}`, which pikaci does not provide (it provides {})",
        ShareTag::ALL.map(ShareTag::tag).join(", ")
    )]
    Unknown { tag: String },
    #[error("the runner's socket for share `{tag}` is `{socket}`")]
    Socket { tag: String, socket: String },
}

/// Parses `TAG\tSOCKET` lines and checks each tag is one pikaci provides.
pub fn parse_shares(text: &str) -> Result<Vec<RunnerShare>, ShareError> {
    let mut shares = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (tag, socket) = line
            .split_once('\t')
            .ok_or_else(|| ShareError::Line(line.to_string()))?;
        let Some(share) = ShareTag::from_tag(tag) else {
            return Err(ShareError::Unknown {
                tag: tag.to_string(),
            });
        };
        if socket.is_empty() || socket.starts_with('-') {
            return Err(ShareError::Socket {
                tag: tag.to_string(),
                socket: socket.to_string(),
            });
        }
        shares.push(RunnerShare {
            tag: share,
            socket: socket.to_string(),
        });
    }
    Ok(shares)
}

/// One job's directories on the host.
struct JobDirs {
    root: PathBuf,
}

impl JobDirs {
    fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    fn request(&self) -> PathBuf {
        self.root.join("request")
    }
    fn workspace_copy(&self) -> PathBuf {
        self.root.join("workspace")
    }
}

/// Creates the job dir (request 0600 in a 0700 dir; artifacts; runtime) and, when
/// asked, a writable copy of the workspace. Args: job dir, workspace to copy or `-`.
/// Stdin: the request.
pub(crate) const SETUP_JOB: &str = r#"set -eu
d=$1
rm -rf -- "$d"
mkdir -p -- "$d/artifacts" "$d/runtime"
(umask 077 && mkdir -p -- "$d/request" && cat > "$d/request/request.json")
if [ "$2" != - ]; then cp -R -- "$2" "$d/workspace" && chmod -R u+w -- "$d/workspace"; fi
"#;

/// Removes a job dir, also a writable workspace copy the job made read-only.
pub(crate) const REMOVE_JOB: &str = r#"discard "$1" && rmdir -- "${1%/*}" 2>/dev/null; true"#;

fn read_shares_argv(runner: &Path) -> Argv {
    Argv::new("sh")
        .args(["-c", READ_SHARES, "pikaci-runner-shares"])
        .arg(runner)
}

/// Makes the job dir; `copy`: the workspace to copy for a writable job on a remote host.
fn setup_argv(job_dir: &Path, copy: Option<&Path>) -> Argv {
    Argv::new("sh")
        .args(["-c", SETUP_JOB, "pikaci-job-setup"])
        .arg(job_dir)
        .arg(copy.unwrap_or(Path::new("-")))
}

fn remove_argv(job_dir: &Path) -> Argv {
    crate::transport::host_sh(REMOVE_JOB, "pikaci-job-remove").arg(job_dir)
}

/// How virtiofsd is started: the program, and whether it announces each share's tag
/// (crosvm needs that; `config::hypervisor::virtiofsd_announces_tag`).
pub struct Virtiofsd<'a> {
    pub program: &'a str,
    pub announce_tag: bool,
}

/// The supervisor's argv: `bash -c SUPERVISE` with the job dir, runner, virtiofsd, time
/// limit, socket wait, `tag` or `-`, then TAG SOCKET DIR MODE per share. Pure, for the
/// snapshot test.
pub fn supervise_argv(
    job_dir: &Path,
    runner: &Path,
    virtiofsd: &Virtiofsd,
    limit: Duration,
    shares: &[(RunnerShare, PathBuf, bool)],
) -> Argv {
    let mut argv = Argv::new("bash")
        .args(["--noprofile", "--norc", "-c", SUPERVISE, "pikaci-microvm"])
        .arg(job_dir)
        .arg(runner)
        .arg(virtiofsd.program)
        // Rounded up: the supervisor counts whole seconds, and must not end a job early.
        .arg(limit.as_millis().div_ceil(1000).max(1).to_string())
        .arg(SOCKET_WAIT_SECS.to_string())
        .arg(if virtiofsd.announce_tag { "tag" } else { "-" });
    for (share, dir, writable) in shares {
        argv = argv
            .arg(share.tag.tag())
            .arg(&share.socket)
            .arg(dir)
            .arg(if *writable { "rw" } else { "ro" });
    }
    argv
}

impl Backend for MicrovmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Microvm
    }

    fn uses_local_copy(&self) -> bool {
        self.prepared.session.local
    }

    fn launch(&self, job: &JobContext, cancel: &Cancel) -> Result<Box<dyn Guest>, BackendError> {
        let p = &self.prepared;
        let dirs = JobDirs {
            root: p
                .session
                .work_dir
                .join("jobs")
                .join(job.run_id)
                .join(&job.request.job_id),
        };
        let writable = job.request.writable_workspace;
        // A local host uses the job's workspace as it is (its private copy when writable);
        // a remote one makes the copy there, from the synced snapshot.
        let (workspace, copy) = match (p.session.local, writable) {
            (true, _) => (job.workspace.to_path_buf(), None),
            (false, false) => (p.session.snapshot.clone(), None),
            (false, true) => (dirs.workspace_copy(), Some(p.session.snapshot.clone())),
        };
        let request = Request {
            workdir: GUEST_WORKSPACE.into(),
            ..job.request.clone()
        };
        let setup = setup_argv(&dirs.root, copy.as_deref());
        // Checked here, as the guest is about to start: never a guest without its inputs.
        p.session.ensure_inputs(job, cancel)?;
        // Dropping the guest removes the job dir, also one `setup` made half way.
        let mut guest = RemoteGuest::new(
            JobVm {
                prepared: Arc::clone(&self.prepared),
                dirs,
            },
            job,
        );
        let json = serde_json::to_vec_pretty(&request)
            .map_err(|e| guest.error("writing the request", std::io::Error::from(e)))?;
        guest.step("setup", "preparing the job dir on the host", |_| {
            p.session.run(&setup, &json, cancel)
        })?;
        let shares: Vec<(RunnerShare, PathBuf, bool)> = p
            .shares
            .iter()
            .map(|share| {
                let dirs = &guest.side.dirs;
                let (dir, rw) = match share.tag {
                    ShareTag::Workspace => (workspace.clone(), writable),
                    ShareTag::Artifacts => (dirs.artifacts(), true),
                    ShareTag::Request => (dirs.request(), false),
                    ShareTag::RoStore => (PathBuf::from("/nix/store"), false),
                };
                (share.clone(), dir, rw)
            })
            .collect();
        let limit = request.timeout() + p.settings.boot_timeout;
        let argv = supervise_argv(
            &guest.side.dirs.root,
            p.runner.as_path(),
            &Virtiofsd {
                program: &p.settings.virtiofsd,
                announce_tag: virtiofsd_announces_tag(&p.settings.hypervisor),
            },
            limit,
            &shares,
        );
        guest.start(&argv, "starting the microVM supervisor", cancel)?;
        Ok(Box::new(guest))
    }
}

/// One job's microVM: what the shared [`RemoteGuest`] needs to know of it.
struct JobVm {
    prepared: Arc<Prepared>,
    dirs: JobDirs,
}

impl Side for JobVm {
    fn session(&self) -> &HostSession {
        &self.prepared.session
    }

    fn artifacts_argv(&self) -> Argv {
        Argv::new("tar")
            .args(["-C"])
            .arg(self.dirs.artifacts())
            .args(["-cf", "-", "."])
    }

    fn teardown(&self) -> (&'static str, Argv) {
        (
            "removing the job dir on the host",
            remove_argv(&self.dirs.root),
        )
    }

    /// The guest's agent enforces the job's timeout after boot; the host allows boot.
    fn slack(&self) -> Duration {
        self.prepared.settings.boot_timeout
    }

    /// EOF tells the supervisor to stop the guest; the signals follow if it lingers.
    fn stops_on_eof(&self) -> bool {
        true
    }

    fn after_lost_connection(&self) -> &'static str {
        "; the host stopped the guest"
    }

    fn no_result(&self, status: &ExitStatus, host_log: &Path) -> String {
        let tail = super::remote_guest::tail_of(host_log, 15);
        format!(
            "the guest produced no result (microVM supervisor: {status}); last lines of {}:\n{tail}",
            host_log.display()
        )
    }

    fn timed_out(&self, timeout: Duration) -> Option<String> {
        Some(format!(
            "the guest did not finish within the job's timeout of {} plus {} for booting; it was stopped (see host.log)",
            humantime::format_duration(timeout),
            humantime::format_duration(self.prepared.settings.boot_timeout)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_argv_shape() {
        let share = |tag: &str| RunnerShare {
            tag: ShareTag::from_tag(tag).unwrap(),
            socket: format!("{tag}.sock"),
        };
        let argv = |announce_tag| {
            let argv = supervise_argv(
                Path::new("/w/jobs/R/lint"),
                Path::new("/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-runner"),
                &Virtiofsd {
                    program: "virtiofsd",
                    announce_tag,
                },
                Duration::from_secs(720),
                &[
                    (share("workspace"), "/w/snapshots/ab".into(), false),
                    (share("artifacts"), "/w/jobs/R/lint/artifacts".into(), true),
                    (share("request"), "/w/jobs/R/lint/request".into(), false),
                    (share("ro-store"), "/nix/store".into(), false),
                ],
            );
            let mut shown = argv.clone();
            assert_eq!(shown.args[3], SUPERVISE);
            shown.args[3] = "[supervise.bash]".into();
            shown.to_string()
        };
        insta::assert_snapshot!(argv(false), @"bash --noprofile --norc -c '[supervise.bash]' pikaci-microvm /w/jobs/R/lint /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-runner virtiofsd 720 30 - workspace workspace.sock /w/snapshots/ab ro artifacts artifacts.sock /w/jobs/R/lint/artifacts rw request request.sock /w/jobs/R/lint/request ro ro-store ro-store.sock /nix/store ro");
        // crosvm: virtiofsd announces the tags.
        insta::assert_snapshot!(argv(true), @"bash --noprofile --norc -c '[supervise.bash]' pikaci-microvm /w/jobs/R/lint /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-runner virtiofsd 720 30 tag workspace workspace.sock /w/snapshots/ab ro artifacts artifacts.sock /w/jobs/R/lint/artifacts rw request request.sock /w/jobs/R/lint/request ro ro-store ro-store.sock /nix/store ro");
    }

    /// The supervisor passes `--tag` to virtiofsd exactly when told to (crosvm), run with
    /// a stand-in virtiofsd that records its arguments and a runner that exits at once.
    #[test]
    fn supervisor_passes_the_tag_for_crosvm() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("job/runtime")).unwrap();
        std::fs::create_dir_all(root.join("runner/bin")).unwrap();
        let fake = root.join("virtiofsd");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"$@\" > ../virtiofsd.args\nexec sleep 5\n",
        )
        .unwrap();
        // The guest "runs" until virtiofsd has recorded its arguments.
        std::fs::write(
            root.join("runner/bin/microvm-run"),
            "#!/bin/sh\nuntil [ -s ../virtiofsd.args ]; do sleep 0.01; done\nsleep 0.3\n",
        )
        .unwrap();
        for f in [fake.clone(), root.join("runner/bin/microvm-run")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let share = RunnerShare {
            tag: ShareTag::Workspace,
            socket: "ws.sock".into(),
        };
        for (announce_tag, expected) in [(true, " --tag=workspace"), (false, "")] {
            let _ = std::fs::remove_file(root.join("job/virtiofsd.args"));
            let _ = std::fs::remove_file(root.join("job/runtime/ws.sock"));
            // The socket the supervisor waits for, as virtiofsd would create it.
            let _socket =
                std::os::unix::net::UnixListener::bind(root.join("job/runtime/ws.sock")).unwrap();
            let argv = supervise_argv(
                &root.join("job"),
                &root.join("runner"),
                &Virtiofsd {
                    program: fake.to_str().unwrap(),
                    announce_tag,
                },
                Duration::from_secs(30),
                &[(share.clone(), root.to_path_buf(), false)],
            );
            // Stdin stays open while the job runs: its EOF would stop the guest.
            let mut child = crate::transport::Transport::command(&crate::transport::Local, &argv)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take();
            let status = child.wait().unwrap();
            drop(stdin);
            assert!(status.success(), "{status}");
            let args = std::fs::read_to_string(root.join("job/virtiofsd.args")).unwrap();
            assert_eq!(
                args.trim_end(),
                format!(
                    "--socket-path=ws.sock --shared-dir={} --sandbox=none --log-level=warn --readonly{expected}",
                    root.display()
                )
            );
        }
    }

    /// A runner that ends at once (a hypervisor that cannot start) ends the job at once
    /// with its status: before, the supervisor missed a runner that ended before it began
    /// to wait, and waited out the whole time limit.
    #[test]
    fn a_runner_that_ends_at_once_ends_the_job_at_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("job/runtime")).unwrap();
        std::fs::create_dir_all(root.join("runner/bin")).unwrap();
        let runner = root.join("runner/bin/microvm-run");
        std::fs::write(&runner, "#!/bin/sh\nexit 7\n").unwrap();
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = supervise_argv(
            &root.join("job"),
            &root.join("runner"),
            &Virtiofsd {
                program: "virtiofsd",
                announce_tag: false,
            },
            Duration::from_secs(20),
            &[],
        );
        for _ in 0..3 {
            let mut child = crate::transport::Transport::command(&crate::transport::Local, &argv)
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take();
            let status = child.wait().unwrap();
            drop(stdin);
            // 124 was the time limit's status.
            assert_eq!(status.code(), Some(7), "{status}");
        }
    }

    #[test]
    fn host_command_shapes() {
        let job = Path::new("/w/jobs/R/lint");
        let build = NixBuild {
            installable: "path:/w/snapshots/ab/ci#runner",
            out_link: Path::new("/w/gcroots/runner-0123456789abcdef"),
            cwd: Path::new("/w"),
        };
        let shown: Vec<String> = [
            build.argv(),
            read_shares_argv(Path::new(
                "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-runner",
            )),
            setup_argv(job, None),
            setup_argv(job, Some(Path::new("/w/snapshots/ab"))),
            remove_argv(job),
        ]
        .iter()
        // The scripts are pinned as constants above; this shows their argument shape.
        .map(Argv::summary)
        .collect();
        insta::assert_snapshot!(shown.join("\n"), @"
        env -C /w -- nix --extra-experimental-features 'nix-command flakes' build --json -o /w/gcroots/runner-0123456789abcdef 'path:/w/snapshots/ab/ci#runner'
        sh -c … pikaci-runner-shares /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-runner
        sh -c … pikaci-job-setup /w/jobs/R/lint -
        sh -c … pikaci-job-setup /w/jobs/R/lint /w/snapshots/ab
        sh -c … pikaci-job-remove /w/jobs/R/lint
        ");
    }

    /// pikaci's source reaches a host once, read-only files and all, with the same
    /// contents and executable bits (what its narHash covers).
    #[test]
    fn pikaci_source_is_sent_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("store/abc-source");
        std::fs::create_dir_all(source.join("nix")).unwrap();
        std::fs::write(source.join("flake.nix"), "{ }\n").unwrap();
        std::fs::write(source.join("nix/run.sh"), "#!/bin/sh\n").unwrap();
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        mode(&source.join("nix/run.sh"), 0o555);
        mode(&source.join("flake.nix"), 0o444);
        mode(&source.join("nix"), 0o555);
        mode(&source, 0o555);
        let copy = dir.path().join("work/pikaci-source/abc-source");
        let local = crate::transport::Local;
        send_pikaci_source(&local, &source, &copy, &Cancel::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.join("flake.nix")).unwrap(),
            "{ }\n"
        );
        let exec = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o111;
        assert_ne!(exec(&copy.join("nix/run.sh")), 0);
        assert_eq!(exec(&copy.join("flake.nix")), 0);
        // A second run finds it and sends nothing (a changed file would stay as it is).
        mode(&copy.join("flake.nix"), 0o644);
        std::fs::write(copy.join("flake.nix"), "changed").unwrap();
        send_pikaci_source(&local, &source, &copy, &Cancel::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(copy.join("flake.nix")).unwrap(),
            "changed"
        );
        for p in [&source, &source.join("nix")] {
            mode(p, 0o755);
        }
    }

    #[test]
    fn shares_must_be_ones_pikaci_provides() {
        let ok = parse_shares("workspace\tworkspace.sock\nro-store\tstore.sock\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].socket, "store.sock");
        let unknown = parse_shares("secrets\ts.sock\n").unwrap_err().to_string();
        assert!(unknown.contains("`secrets`"), "{unknown}");
        assert!(parse_shares("workspace\t\n").is_err());
        assert!(parse_shares("no tab here").is_err());
        assert_eq!(parse_shares("").unwrap(), vec![]);
    }
}
