//! A job's inputs inside its Incus instance, once they are valid on the host
//! ([`HostSession::ensure_inputs`]) and the instance has started.
//!
//! The instance itself says which kind of image it came from, with one `incus exec`
//! whose exit status is the answer (never its output: `incus exec` can lose a quick
//! command's stdout):
//! - no Nix store of its own (no `/nix/store`, or no `nix-store`): the host's
//!   `/nix/store` becomes a read-only disk device at `/nix/store`, so every path the host
//!   has is there, the inputs' closures with them;
//! - a store of its own (NixOS images, Debian with `nix-bin`): mounting over it would
//!   hide the image's own software, so the paths of the closures it lacks are exported on
//!   the host and imported into it (`nix-store --export | incus exec … nix-store
//!   --import`, one round trip for the host).
//!
//! Either way the outputs are then checked in the instance, by exit status: a job never
//! starts without its inputs. Through an Incus remote only the import is possible (the
//! server cannot see this machine's store), so an image without a store is an error.

use std::io::Write;
use std::time::Instant;

use crate::argv::Argv;
use crate::backend::JobContext;
use crate::backend::session::HOST_STEP;
use crate::cancel::Cancel;
use crate::incus::Incus;
use crate::nix::StorePath;
use crate::transport::{Step, Transport, TransportError};

/// In the instance: exit 0 when it has a Nix store of its own, 11 when it has none.
pub(crate) const PROBE_STORE: &str =
    r#"if [ -d /nix/store ] && command -v nix-store >/dev/null 2>&1; then exit 0; fi; exit 11"#;

/// In the instance, args: store paths. Exit 12 when one of them is not there.
pub(crate) const PRESENT: &str = r#"for path; do [ -e "$path" ] || exit 12; done"#;

/// On the host. Stdin: the inputs' output paths, one a line. Args: the `incus exec … --`
/// argv of the instance. Imports what the instance's store lacks of their closures, checks
/// that the outputs are valid there, and prints how many paths it sent.
pub(crate) const IMPORT_CLOSURE: &str = r#"set -euf
outputs=$(cat)
# shellcheck disable=SC2086 # store paths: one word each
closure=$(nix-store --query --requisites $outputs)
# What the instance lacks; without the end marker (a lost answer) it lacks everything.
# shellcheck disable=SC2086
answer=$(printf '%s\n' $closure | "$@" sh -c 'xargs -r nix-store --check-validity --print-invalid && echo end') || answer=
case $answer in
  *end) missing=${answer%end} ;;
  *) missing=$closure ;;
esac
# shellcheck disable=SC2086
count=$(printf '%s\n' $missing | grep -c . || true)
if [ "$count" -gt 0 ]; then
  # shellcheck disable=SC2086
  nix-store --export $missing | "$@" nix-store --import >/dev/null
fi
# shellcheck disable=SC2086
"$@" nix-store --check-validity $outputs
echo "$count"
"#;

/// Which kind of image the instance came from, as far as its inputs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestStore {
    /// No Nix store of its own: the host's is mounted read-only at `/nix/store`.
    Host,
    /// A store of its own: the closures are imported into it.
    Own,
}

/// The device name of the host's store in an instance.
pub const STORE_DEVICE: &str = "nix-store";

#[derive(Debug, thiserror::Error)]
pub enum InputsNotInInstance {
    #[error(
        "{inputs} cannot reach instance `{instance}` on Incus remote `{remote}`: its image \
         has no Nix store of its own, and the server of a remote cannot see the /nix/store \
         of {host}; use an image with Nix in it (NixOS, or Debian with nix-bin), into \
         whose store pikaci imports the closures"
    )]
    NoStoreOnRemote {
        inputs: String,
        instance: String,
        remote: String,
        host: String,
    },
    #[error("cannot tell whether instance `{instance}` has a Nix store of its own")]
    Probe {
        instance: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error(
        "{inputs} not in instance `{instance}` on {host}: mounting the host's /nix/store \
         there failed"
    )]
    Mount {
        inputs: String,
        instance: String,
        host: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error(
        "{inputs} not in instance `{instance}` on {host}: the host's /nix/store is mounted \
         at /nix/store, but not every output is there (is /nix/store on the host where \
         incusd runs?)"
    )]
    Absent {
        inputs: String,
        instance: String,
        host: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error(
        "{inputs} not valid in instance `{instance}` on {host}: importing the closure into \
         the instance's own Nix store failed"
    )]
    Import {
        inputs: String,
        instance: String,
        host: String,
        #[source]
        source: Box<TransportError>,
    },
}

/// The inputs as errors name them: `input `NAME` (PATHS)`, comma-separated.
fn named(job: &JobContext) -> String {
    job.inputs
        .iter()
        .map(|(name, outputs)| {
            let paths: Vec<String> = outputs
                .iter()
                .map(|p| p.as_path().display().to_string())
                .collect();
            format!("input `{name}` ({})", paths.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn probe_argv(incus: &Incus, instance: &str) -> Argv {
    incus.exec(instance, &["sh", "-c", PROBE_STORE, "pikaci-store-probe"])
}

pub fn present_argv(incus: &Incus, instance: &str, outputs: &[&StorePath]) -> Argv {
    incus
        .exec(instance, &["sh", "-c", PRESENT, "pikaci-inputs-present"])
        .args(outputs.iter().map(|p| p.as_path()))
}

/// The host script, with the instance's `incus exec … --` as its arguments.
pub fn import_argv(incus: &Incus, instance: &str) -> Argv {
    let exec = incus.exec(instance, &[]);
    Argv::new("sh")
        .args(["-c", IMPORT_CLOSURE, "pikaci-inputs-into-instance"])
        .arg(exec.program)
        .args(exec.args)
}

/// Asks the instance whether it has a Nix store of its own.
pub fn probe(
    transport: &dyn Transport,
    incus: &Incus,
    instance: &str,
    cancel: &Cancel,
) -> Result<GuestStore, InputsNotInInstance> {
    let argv = probe_argv(incus, instance);
    let failed = |source| InputsNotInInstance::Probe {
        instance: instance.to_string(),
        source,
    };
    let out = transport
        .run_unchecked(&argv, b"", Instant::now() + HOST_STEP, cancel)
        .map_err(|e| failed(Box::new(e)))?;
    match out.status.code() {
        Some(0) => Ok(GuestStore::Own),
        Some(11) => Ok(GuestStore::Host),
        _ => Err(failed(Box::new(
            transport
                .check(&argv, out)
                .expect_err("a status other than 0 is an error"),
        ))),
    }
}

/// Makes the job's inputs present in the started instance `instance` (see the module
/// docs); notes what it did in the job's `inputs.log`. Nothing to do without inputs.
pub fn provide(
    transport: &dyn Transport,
    incus: &Incus,
    instance: &str,
    job: &JobContext,
    cancel: &Cancel,
) -> Result<Option<GuestStore>, InputsNotInInstance> {
    let outputs: Vec<&StorePath> = job.inputs.values().flatten().collect();
    if outputs.is_empty() {
        return Ok(None);
    }
    let kind = probe(transport, incus, instance, cancel)?;
    let host = transport.host();
    let (inputs, instance_name) = (named(job), instance.to_string());
    let note = match kind {
        // A remote's server has a filesystem of its own: a disk device would mount its
        // /nix/store, not this one.
        GuestStore::Host if incus.remote.is_some() => {
            return Err(InputsNotInInstance::NoStoreOnRemote {
                inputs,
                instance: instance_name,
                remote: incus.remote.unwrap_or_default().to_string(),
                host,
            });
        }
        GuestStore::Host => {
            transport
                .run(
                    &incus.add_host_store(instance, STORE_DEVICE),
                    b"",
                    Instant::now() + HOST_STEP,
                    cancel,
                )
                .map_err(|source| InputsNotInInstance::Mount {
                    inputs: inputs.clone(),
                    instance: instance_name.clone(),
                    host: host.clone(),
                    source: Box::new(source),
                })?;
            transport
                .run(
                    &present_argv(incus, instance, &outputs),
                    b"",
                    Instant::now() + HOST_STEP,
                    cancel,
                )
                .map_err(|source| InputsNotInInstance::Absent {
                    inputs,
                    instance: instance_name,
                    host: host.clone(),
                    source: Box::new(source),
                })?;
            format!(
                "instance {instance}: no Nix store of its own; {host}'s /nix/store mounted read-only at /nix/store\n"
            )
        }
        GuestStore::Own => {
            let stdin: String = outputs
                .iter()
                .map(|p| format!("{}\n", p.as_path().display()))
                .collect();
            let out = transport
                .run(
                    &import_argv(incus, instance),
                    stdin.as_bytes(),
                    Step::Sync.from_now(),
                    cancel,
                )
                .map_err(|source| InputsNotInInstance::Import {
                    inputs,
                    instance: instance_name,
                    host: host.clone(),
                    source: Box::new(source),
                })?;
            let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
            format!(
                "instance {instance}: a Nix store of its own; {sent} path(s) imported from {host}\n"
            )
        }
    };
    // The log is for people; a write that fails must not fail the job.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(job.job_dir.join("inputs.log"))
        .and_then(|mut log| log.write_all(note.as_bytes()));
    Ok(Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> StorePath {
        StorePath::new(format!(
            "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-{name}"
        ))
        .unwrap()
    }

    #[test]
    fn command_shapes() {
        let incus = Incus {
            project: "pikaci",
            sudo: true,
            remote: None,
        };
        let name = "pikaci-lint-0123456789ab";
        let tools = path("demo-tools");
        let shown: Vec<String> = [
            probe_argv(&incus, name),
            present_argv(&incus, name, &[&tools]),
            import_argv(&incus, name),
        ]
        .iter()
        .map(Argv::summary)
        .collect();
        // Through a remote, the host script pipes into the remote's instance.
        let remote = Incus {
            project: "pikaci",
            sudo: false,
            remote: Some("ci"),
        };
        let shown = [
            shown,
            vec![
                probe_argv(&remote, name).summary(),
                import_argv(&remote, name).summary(),
            ],
        ]
        .concat();
        insta::assert_snapshot!(shown.join("\n"), @"
        sudo -n incus exec --project pikaci pikaci-lint-0123456789ab -- sh -c … pikaci-store-probe
        sudo -n incus exec --project pikaci pikaci-lint-0123456789ab -- sh -c … pikaci-inputs-present /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools
        sh -c … pikaci-inputs-into-instance sudo -n incus exec --project pikaci pikaci-lint-0123456789ab --
        incus exec --project pikaci ci:pikaci-lint-0123456789ab -- sh -c … pikaci-store-probe
        sh -c … pikaci-inputs-into-instance incus exec --project pikaci ci:pikaci-lint-0123456789ab --
        ");
    }

    #[test]
    fn errors_name_the_inputs_their_paths_the_instance_and_the_host() {
        let inputs: std::collections::BTreeMap<crate::ids::Id, Vec<StorePath>> = [(
            crate::ids::Id::new("demo-tools").unwrap(),
            vec![path("demo-tools")],
        )]
        .into();
        let request: crate::protocol::Request =
            serde_json::from_str(r#"{"schema_version":1,"job_id":"hello","command":"x","timeout_secs":1,"run_as_root":false,"workdir":"/w","env":{},"path":[],"writable_workspace":false}"#).unwrap();
        let job = JobContext {
            run_id: "R",
            request: &request,
            inputs: &inputs,
            workspace: std::path::Path::new("/w"),
            job_dir: std::path::Path::new("/j"),
        };
        let failed = TransportError::Failed {
            host: "ssh://u@h:22".into(),
            command: (&Argv::new("sh").args(["-c", IMPORT_CLOSURE, "pikaci-inputs-into-instance"]))
                .into(),
            status: "exit status: 1".into(),
            stderr_tail:
                "error: path '/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools' is not valid"
                    .into(),
        };
        let error = crate::backend::BackendError::InstanceInputs {
            job: "hello".into(),
            source: Box::new(InputsNotInInstance::Import {
                inputs: named(&job),
                instance: "pikaci-hello-0123".into(),
                host: "ssh://u@h:22".into(),
                source: Box::new(failed),
            }),
        };
        insta::assert_snapshot!(crate::error::chain(&error), @"
        job `hello` cannot start: input `demo-tools` (/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools) not valid in instance `pikaci-hello-0123` on ssh://u@h:22: importing the closure into the instance's own Nix store failed: on ssh://u@h:22: `sh -c … pikaci-inputs-into-instance` failed (exit status: 1):
        error: path '/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools' is not valid
        ");
    }
}
