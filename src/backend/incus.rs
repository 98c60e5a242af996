//! `backend = "incus"`: each job in a throwaway Incus instance, every `incus` call an
//! argv through the transport (local or SSH).
//!
//! Once per run: the host session, and the image the alias names (exactly that alias:
//! `incus image list` filters by prefix). Per job: `init` (tagged with the run id for
//! gc), the workspace as a read-only disk when the instance runs where the snapshot is
//! (otherwise streamed in), `start`, readiness (`exec true`), the request written
//! through `exec … sh -c 'umask 077; …; cat > FILE'`, then the agent via `exec`, its
//! output streamed to `host.log`; afterwards the artifacts come back as a tar stream and
//! the instance is deleted — also on failure, timeout and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::session::{HOST_STEP, HostSession, RunContext};
use super::{Backend, BackendError, Guest, JobContext};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{BackendKind, IncusSettings, InstanceType};
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::protocol::{GuestResult, Request};

/// Where the request goes inside the instance, and the workspace.
const REQUEST: &str = "/run/pikaci/request.json";
const GUEST_WORKSPACE: &str = "/workspace";
/// How long an instance may take to answer `exec true` after `start`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time on top of the job's timeout for the agent to stop the job and write its result.
const AGENT_GRACE: Duration = Duration::from_secs(30);
/// The config key that tags an instance with its run (for gc).
pub const RUN_KEY: &str = "user.pikaci.run";

/// One record of `incus image list --format json`, the fields pikaci reads.
#[derive(Debug, Deserialize)]
struct ImageRecord {
    fingerprint: String,
    #[serde(default)]
    aliases: Vec<ImageAlias>,
}

#[derive(Debug, Deserialize)]
struct ImageAlias {
    name: String,
}

/// The fingerprint of the one image whose alias is exactly `alias`.
pub fn select_image(json: &[u8], alias: &str, project: &str) -> Result<String, String> {
    let records: Vec<ImageRecord> = serde_json::from_slice(json)
        .map_err(|e| format!("`incus image list` printed JSON pikaci cannot read: {e}"))?;
    let matching: Vec<&ImageRecord> = records
        .iter()
        .filter(|r| r.aliases.iter().any(|a| a.name == alias))
        .collect();
    match matching[..] {
        [one] => Ok(one.fingerprint.clone()),
        [] => Err(format!(
            "no image has the alias `{alias}` in project `{project}`; build and import one \
             (for the testbed: `bash scripts/testbed/incus.sh`), or set backends.incus.image"
        )),
        _ => Err(format!(
            "several images have the alias `{alias}` in project `{project}`: {}",
            matching
                .iter()
                .map(|r| r.fingerprint.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The argvs pikaci runs; pure, so a snapshot pins them.
pub struct Incus<'a> {
    pub project: &'a str,
}

impl Incus<'_> {
    fn base(&self, args: &[&str]) -> Argv {
        Argv::new("incus")
            .args(args)
            .args(["--project", self.project])
    }

    pub fn image_list(&self, alias: &str) -> Argv {
        self.base(&["image", "list"])
            .arg(alias)
            .args(["--format", "json"])
    }

    pub fn init(&self, settings: &IncusSettings, image: &str, name: &str, run: &str) -> Argv {
        let mut argv = self.base(&["init"]).arg(image).arg(name);
        if settings.instance_type == InstanceType::Vm {
            argv = argv.arg("--vm");
        }
        for profile in &settings.profiles {
            argv = argv.arg("--profile").arg(profile);
        }
        argv.arg("--config").arg(format!("{RUN_KEY}={run}"))
    }

    pub fn base_image(&self, name: &str) -> Argv {
        self.base(&["config", "get"])
            .arg(name)
            .arg("volatile.base_image")
    }

    pub fn add_workspace(&self, name: &str, source: &Path) -> Argv {
        self.base(&["config", "device", "add"])
            .arg(name)
            .args(["workspace", "disk"])
            .arg(format!("source={}", source.display()))
            .arg(format!("path={GUEST_WORKSPACE}"))
            .arg("readonly=true")
    }

    pub fn start(&self, name: &str) -> Argv {
        self.base(&["start"]).arg(name)
    }

    pub fn exec(&self, name: &str, command: &[&str]) -> Argv {
        self.base(&["exec"]).arg(name).arg("--").args(command)
    }

    pub fn delete(&self, name: &str) -> Argv {
        self.base(&["delete", "--force"]).arg(name)
    }
}

/// One record of `incus list --format json`, the fields gc reads.
#[derive(Debug, Deserialize)]
struct InstanceRecord {
    name: String,
    /// Null for some instances; values are not all strings.
    #[serde(default)]
    config: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The instances tagged with one of `runs`.
pub fn instances_of_runs(json: &[u8], runs: &[String]) -> Result<Vec<String>, String> {
    let records: Vec<InstanceRecord> = serde_json::from_slice(json)
        .map_err(|e| format!("`incus list` printed JSON pikaci cannot read: {e}"))?;
    Ok(records
        .into_iter()
        .filter(|r| {
            let run = r.config.as_ref().and_then(|c| c.get(RUN_KEY)?.as_str());
            run.is_some_and(|run| runs.iter().any(|r| r == run))
        })
        .map(|r| r.name)
        .collect())
}

/// `pikaci gc` for Incus: deletes the instances of runs that are over (a killed pikaci
/// could not delete them). Returns how many.
pub fn collect_instances(
    config: &crate::config::Config,
    state_root: &Path,
    finished_runs: &[String],
    cancel: &Cancel,
) -> Result<usize, String> {
    let (transport, _, _) = super::session::connect(config, state_root, cancel)?;
    let incus = Incus {
        project: &config.backends.incus.project,
    };
    let list = incus.base(&["list"]).args(["--format", "json"]);
    let deadline = || Instant::now() + HOST_STEP;
    let json = transport
        .run(&list, b"", deadline(), cancel)
        .map_err(|e| e.to_string())?;
    let names = instances_of_runs(&json.stdout, finished_runs)?;
    for name in &names {
        transport
            .run(&incus.delete(name), b"", deadline(), cancel)
            .map_err(|e| e.to_string())?;
    }
    Ok(names.len())
}

/// A valid instance name for a job: letters, digits and dashes, unique per run and job.
pub fn instance_name(run: &str, job: &str) -> String {
    let digest = Sha256::digest(format!("{run}\0{job}").as_bytes());
    let hash = crate::snapshot::hex(&digest[..6]);
    let readable: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("pikaci-{}-{hash}", readable.trim_matches('-'))
}

struct Prepared {
    session: HostSession,
    settings: IncusSettings,
    image: String,
}

pub struct IncusBackend {
    prepared: Arc<Prepared>,
}

impl IncusBackend {
    pub fn prepare(cx: &RunContext, cancel: &Cancel) -> Result<IncusBackend, String> {
        let settings = cx.config.backends.incus.clone();
        let session = HostSession::open(cx, cancel)?;
        let incus = Incus {
            project: &settings.project,
        };
        let json = session.run(&incus.image_list(&settings.image), b"", cancel)?;
        let image = select_image(&json, &settings.image, &settings.project)?;
        Ok(IncusBackend {
            prepared: Arc::new(Prepared {
                session,
                settings,
                image,
            }),
        })
    }
}

impl Backend for IncusBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Incus
    }

    /// A writable workspace is streamed into the instance, which is its copy.
    fn uses_local_copy(&self) -> bool {
        false
    }

    fn launch(&self, job: &JobContext, cancel: &Cancel) -> Result<Box<dyn Guest>, BackendError> {
        let p = &self.prepared;
        let incus = Incus {
            project: &p.settings.project,
        };
        let name = instance_name(job.run_id, &job.request.job_id);
        p.session
            .run(
                &incus.init(&p.settings, &p.image, &name, job.run_id),
                b"",
                cancel,
            )
            .map_err(|why| BackendError::Host {
                job: job.request.job_id.clone(),
                step: "creating the instance",
                why,
            })?;
        // From here on, dropping the guest deletes the instance.
        let mut guest = IncusGuest {
            prepared: Arc::clone(&self.prepared),
            name,
            child: None,
            job_id: job.request.job_id.clone(),
            timeout_secs: job.request.timeout_secs,
            job_dir: job.job_dir.to_path_buf(),
            deleted: false,
        };
        let run = |guest: &IncusGuest, step: &'static str, argv: Argv, stdin: &[u8]| {
            p.session
                .run(&argv, stdin, cancel)
                .map_err(|why| guest.error(step, why))
        };
        // The instance's own record of its image, not a second lookup.
        let base = run(
            &guest,
            "reading the instance's image",
            incus.base_image(&guest.name),
            b"",
        )?;
        // Kept beside the job's logs: the image this job really ran on.
        let base = format!("{}\n", String::from_utf8_lossy(&base).trim());
        std::fs::write(guest.job_dir.join("incus-image"), base)
            .map_err(|e| guest.error("recording the instance's image", e.to_string()))?;
        // A read-only disk when the instance runs where the snapshot is; otherwise (a
        // remote host, or a writable workspace) the files are streamed in after start.
        let stream_workspace = !p.session.local || job.request.writable_workspace;
        if !stream_workspace {
            run(
                &guest,
                "adding the workspace",
                incus.add_workspace(&guest.name, job.workspace),
                b"",
            )?;
        }
        run(
            &guest,
            "starting the instance",
            incus.start(&guest.name),
            b"",
        )?;
        guest.wait_ready(&incus, cancel)?;
        if stream_workspace {
            guest.stream_workspace(&incus, job.workspace, cancel)?;
        }
        let request = Request {
            workdir: GUEST_WORKSPACE.into(),
            ..job.request.clone()
        };
        let json = serde_json::to_vec_pretty(&request)
            .map_err(|e| guest.error("writing the request", e.to_string()))?;
        let write = incus.exec(
            &guest.name,
            &[
                "sh",
                "-c",
                r#"umask 077 && mkdir -p "${1%/*}" && cat > "$1""#,
                "pikaci-request",
                REQUEST,
            ],
        );
        run(&guest, "writing the request", write, &json)?;

        let agent = incus.exec(&guest.name, &[&p.settings.guest_agent, "run", REQUEST]);
        let log = std::fs::File::create(job.job_dir.join("host.log"))
            .map_err(|e| guest.error("creating host.log", e.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| guest.error("creating host.log", e.to_string()))?;
        let mut command = p.session.transport.command(&agent);
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = GroupChild::spawn(&mut command, cancel)
            .map_err(|e| guest.error("starting the agent", e.to_string()))?;
        guest.child = Some(child);
        Ok(Box::new(guest))
    }
}

struct IncusGuest {
    prepared: Arc<Prepared>,
    name: String,
    /// `incus exec … pikaci-guest run`, streaming into host.log.
    child: Option<GroupChild>,
    job_id: String,
    timeout_secs: u64,
    job_dir: PathBuf,
    deleted: bool,
}

impl IncusGuest {
    fn error(&self, step: &'static str, why: impl ToString) -> BackendError {
        BackendError::Host {
            job: self.job_id.clone(),
            step,
            why: why.to_string(),
        }
    }

    fn incus(&self) -> Incus<'_> {
        Incus {
            project: &self.prepared.settings.project,
        }
    }

    fn wait_ready(&self, incus: &Incus, cancel: &Cancel) -> Result<(), BackendError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let probe = incus.exec(&self.name, &["true"]);
        loop {
            let step = Instant::now() + HOST_STEP;
            let answer = self.prepared.session.transport.run_unchecked(
                &probe,
                b"",
                step.min(deadline.max(Instant::now())),
                cancel,
            );
            if answer.as_ref().is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if cancel.is_cancelled() || Instant::now() >= deadline {
                return Err(self.error(
                    "waiting for the instance",
                    format!("it did not answer `incus exec … true` within {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Copies the workspace in: a tar stream into `/workspace`.
    fn stream_workspace(
        &self,
        incus: &Incus,
        workspace: &Path,
        cancel: &Cancel,
    ) -> Result<(), BackendError> {
        let mut builder = tar::Builder::new(
            tempfile::tempfile().map_err(|e| self.error("packing the workspace", e))?,
        );
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", workspace)
            .map_err(|e| self.error("packing the workspace", e))?;
        let mut file = builder
            .into_inner()
            .map_err(|e| self.error("packing the workspace", e))?;
        std::io::Seek::rewind(&mut file).map_err(|e| self.error("packing the workspace", e))?;
        let argv = incus.exec(
            &self.name,
            &[
                "sh",
                "-c",
                r#"mkdir -p "$1" && tar -x -f - -C "$1" && chmod -R u+w "$1" && chown -R 1000:1000 "$1" 2>/dev/null; true"#,
                "pikaci-workspace",
                GUEST_WORKSPACE,
            ],
        );
        self.prepared
            .session
            .transport
            .run_file(&argv, file, Instant::now() + HOST_STEP * 10, cancel)
            .map(drop)
            .map_err(|e| self.error("copying the workspace in", e))
    }
}

impl Guest for IncusGuest {
    fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> Result<Ended, BackendError> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.error("waiting for the job", "the agent was not started"));
        };
        child
            .wait(deadline + AGENT_GRACE, cancel)
            .map_err(|e| self.error("waiting for the job", e))
    }

    fn stop(&mut self, urgent: bool) {
        if let Some(child) = self.child.as_mut() {
            child.terminate(if urgent { Duration::ZERO } else { KILL_GRACE });
        }
    }

    fn collect(&mut self, ended: Ended, started: SystemTime) -> Result<GuestResult, BackendError> {
        let argv = self
            .incus()
            .exec(&self.name, &["tar", "-C", "/artifacts", "-cf", "-", "."]);
        let from_guest = super::artifacts::fetch(
            self.prepared.session.transport.as_ref(),
            &argv,
            &self.job_dir,
        )
        .map_err(|(step, why)| self.error(step, why))?;
        let result = match (from_guest, ended) {
            (Some(result), _) => result,
            (None, Ended::Exited(status)) => GuestResult::error(
                started,
                format!("the agent produced no result (`incus exec`: {status}); see host.log"),
            ),
            (None, ended) => GuestResult::from_ended(ended, self.timeout_secs, started),
        };
        crate::fsutil::write_json_atomic(&self.job_dir.join("result.json"), &result)
            .map_err(|e| self.error("writing result.json", e))?;
        Ok(result)
    }

    fn cleanup(&mut self) -> Result<(), BackendError> {
        if let Some(mut child) = self.child.take() {
            child.terminate(KILL_GRACE);
        }
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        let argv = self.incus().delete(&self.name);
        self.prepared
            .session
            .run(&argv, b"", &Cancel::new())
            .map(drop)
            .map_err(|e| self.error("deleting the instance", e))
    }
}

impl Drop for IncusGuest {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_selection_takes_the_exact_alias_only() {
        let one = br#"[{"fingerprint":"aaa","aliases":[{"name":"pikaci/dev"}],"type":"container"},
                       {"fingerprint":"bbb","aliases":[{"name":"pikaci/dev-old"}]}]"#;
        assert_eq!(select_image(one, "pikaci/dev", "p").unwrap(), "aaa");
        let prefix_only = br#"[{"fingerprint":"bbb","aliases":[{"name":"pikaci/dev-old"}]}]"#;
        let none = select_image(prefix_only, "pikaci/dev", "p").unwrap_err();
        assert!(
            none.contains("no image has the alias `pikaci/dev`"),
            "{none}"
        );
        assert!(select_image(b"[]", "x", "p").is_err());
        let two = br#"[{"fingerprint":"aaa","aliases":[{"name":"x"}]},{"fingerprint":"ccc","aliases":[{"name":"x"}]}]"#;
        let several = select_image(two, "x", "p").unwrap_err();
        assert!(several.contains("aaa, ccc"), "{several}");
        let bad = select_image(b"{not json", "x", "p").unwrap_err();
        assert!(bad.contains("cannot read"), "{bad}");
        let wrong_shape = select_image(br#"{"fingerprint":"a"}"#, "x", "p").unwrap_err();
        assert!(wrong_shape.contains("cannot read"), "{wrong_shape}");
    }

    #[test]
    fn gc_finds_instances_by_their_run_tag() {
        let json = br#"[{"name":"a","config":{"user.pikaci.run":"R1"}},
                        {"name":"b","config":{"user.pikaci.run":"R2"}},
                        {"name":"c","config":{}},
                        {"name":"d","config":null}]"#;
        let runs = vec!["R1".to_string(), "R3".to_string()];
        assert_eq!(instances_of_runs(json, &runs).unwrap(), vec!["a"]);
        assert!(
            instances_of_runs(b"[{]", &runs)
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn instance_names_are_valid_and_distinct() {
        let a = instance_name("20261125T010203Z-abc", "lint_all.v2");
        assert!(a.starts_with("pikaci-lint-all-v2-"), "{a}");
        assert!(a.len() <= 63);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(a, instance_name("20261125T010203Z-abd", "lint_all.v2"));
    }

    #[test]
    fn incus_argv_shapes() {
        let incus = Incus { project: "pikaci" };
        let settings = IncusSettings {
            instance_type: InstanceType::Container,
            profiles: vec!["default".into(), "ci".into()],
            ..IncusSettings::default()
        };
        let name = "pikaci-lint-0123456789ab";
        let shown: Vec<String> = [
            incus.image_list("pikaci/dev"),
            incus.init(&settings, "f00d", name, "R1"),
            incus.init(&IncusSettings::default(), "f00d", name, "R1"),
            incus.base_image(name),
            incus.add_workspace(name, Path::new("/state/cache/snapshots/ab")),
            incus.start(name),
            incus.exec(name, &["/usr/local/bin/pikaci-guest", "run", REQUEST]),
            incus.delete(name),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        insta::assert_snapshot!(shown.join("\n"), @"
        incus image list --project pikaci pikaci/dev --format json
        incus init --project pikaci f00d pikaci-lint-0123456789ab --profile default --profile ci --config user.pikaci.run=R1
        incus init --project pikaci f00d pikaci-lint-0123456789ab --vm --profile default --config user.pikaci.run=R1
        incus config get --project pikaci pikaci-lint-0123456789ab volatile.base_image
        incus config device add --project pikaci pikaci-lint-0123456789ab workspace disk source=/state/cache/snapshots/ab path=/workspace readonly=true
        incus start --project pikaci pikaci-lint-0123456789ab
        incus exec --project pikaci pikaci-lint-0123456789ab -- /usr/local/bin/pikaci-guest run /run/pikaci/request.json
        incus delete --force --project pikaci pikaci-lint-0123456789ab
        ");
    }
}
