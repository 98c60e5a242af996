//! Inputs reach the host that runs the guests: their closures, built on this machine (or
//! on the run's build host, `[nix] build-host`), are copied into the host's store with
//! Nix's own export format, only what the host lacks, and rooted there for the run.
//!
//! One round trip asks the host which paths of the closures it lacks (and roots the
//! inputs it already has); for each input that lacks some, `nix-store --export` of the
//! missing paths where they were built (here, or on the build host, streamed through this
//! machine) is piped into `nix-store --import` there, which roots the input's
//! outputs right after importing them. A root that cannot be added (the path is not
//! valid there after all) fails the copy: a job never starts without its input.
//!
//! The host's Nix decides whether it takes unsigned paths: root, and users in its
//! `trusted-users`, may import them; anyone else gets Nix's "lacks a valid signature",
//! which the error carries.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::StorePath;
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::exec::{Ended, GroupChild, KILL_GRACE};
use crate::transport::{Local, Step, Transport, TransportError, host_sh};

/// Deadline for copying one input's closure (a toolchain can be gigabytes).
const COPY_TIMEOUT: Duration = Step::Sync.duration();
/// Deadline for the query and for reading closures here.
const QUERY_TIMEOUT: Duration = Step::Bookkeeping.duration();
/// How many lines of a failed copy's stderr an error shows.
const TAIL_LINES: usize = 15;

/// Args: the run's roots dir, then the inputs' output paths. Stdin: every path of their
/// closures (outputs included), one a line. Prints the paths the host lacks and roots the
/// outputs it has: one `nix-store` for the query, one per output already there.
pub(crate) const MISSING: &str = r#"set -eu
roots=$1
shift
mkdir -p -- "$roots"
invalid=$(xargs -r nix-store --check-validity --print-invalid)
for path; do
  if ! printf '%s\n' "$invalid" | grep -qxF -e "$path"; then
    nix-store --add-root "$roots/${path##*/}" --realise "$path" >/dev/null
  fi
done
if [ -n "$invalid" ]; then printf '%s\n' "$invalid"; fi
"#;

/// Args: the run's roots dir, then one input's output paths. Stdin: a
/// `nix-store --export` stream. Imports it and roots the outputs; a root for a path that
/// is not valid fails.
pub(crate) const IMPORT: &str = r#"set -eu
roots=$1
shift
mkdir -p -- "$roots"
nix-store --import >/dev/null
for path; do
  nix-store --add-root "$roots/${path##*/}" --realise "$path" >/dev/null
done
"#;

/// What is copied: one input of a job (or the microVM runner), as built where it was.
pub struct Input<'a> {
    /// How messages call it: `input`, or `the microVM runner`.
    pub kind: &'static str,
    pub name: &'a str,
    pub outputs: &'a [StorePath],
}

impl<'a> Input<'a> {
    /// How messages name it: ``input `tools` ``.
    fn described(&self) -> String {
        format!("{} `{}`", self.kind, self.name)
    }

    /// ``input `tools` (/nix/store/…)``.
    fn with_paths(&self) -> String {
        format!("{} ({})", self.described(), shown(self.outputs))
    }

    /// A job's input.
    pub fn job_input(name: &'a str, outputs: &'a [StorePath]) -> Input<'a> {
        Input {
            kind: "input",
            name,
            outputs,
        }
    }
}

/// Where closures are copied from, as messages say it: this machine, or the build host.
fn source_is_local(from: &dyn Transport) -> bool {
    from.host() == Local.host()
}

/// What reaching the host took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Paths sent to the host (0 when it had every closure).
    pub paths: usize,
    /// Commands run on the host: 1 when it had everything, plus 1 per input it lacked.
    pub round_trips: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum InputNotOnHost {
    #[error("cannot read the closure of {input} {on}")]
    Closure {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        /// `on this machine`, or `on` the build host.
        on: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error("`nix-store --query --requisites` of {input} printed `{line}`, which is no store path")]
    NotAStorePath {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        line: String,
    },
    #[error("cannot ask {host} which store paths of the job's inputs it lacks")]
    Query {
        host: String,
        #[source]
        source: Box<TransportError>,
    },
    #[error(
        "{input} is not valid on {host}: copying its closure there failed ({status}); last lines of the copy:\n{stderr_tail}"
    )]
    Copy {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        host: String,
        status: String,
        stderr_tail: String,
    },
    #[error(
        "{input} is not valid on {host}: the connection was lost while its closure was copied ({status}):\n{stderr_tail}"
    )]
    Lost {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        host: String,
        status: String,
        stderr_tail: String,
    },
    #[error(
        "{input} is not valid on {host}: `nix-store --export` of its closure {at} failed ({status}):\n{stderr_tail}"
    )]
    Export {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        host: String,
        /// `here`, or `on` the build host.
        at: String,
        status: String,
        stderr_tail: String,
    },
    #[error("{input} is not valid on {host}: the copy {ended}")]
    Unfinished {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        host: String,
        ended: &'static str,
    },
    #[error(
        "{input} is not valid on {host}: the connection to {from} was lost while its closure was exported there ({status}):\n{stderr_tail}"
    )]
    SourceLost {
        input: String,
        host: String,
        from: String,
        status: String,
        stderr_tail: String,
    },
    #[error("the build host's session is closed: the run is over")]
    BuildHostGone,
    #[error("cannot copy {input} to {host}: {step}")]
    Io {
        /// What was copied: ``input `NAME` (PATHS)``, or the runner.
        input: String,
        host: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn shown(paths: &[StorePath]) -> String {
    paths
        .iter()
        .map(|p| p.as_path().display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `nix-store --query --requisites PATHS`: their closures, dependencies first.
pub fn requisites_argv(paths: &[StorePath]) -> Argv {
    Argv::new("nix-store")
        .args(["--query", "--requisites"])
        .args(paths.iter().map(StorePath::as_path))
}

/// `nix-store --export PATHS`: their NARs with references, in an order
/// `nix-store --import` accepts (Nix sorts them).
pub fn export_argv(paths: &[&StorePath]) -> Argv {
    Argv::new("nix-store")
        .arg("--export")
        .args(paths.iter().map(|p| p.as_path()))
}

pub fn missing_argv(roots: &Path, outputs: &[&StorePath]) -> Argv {
    host_sh(MISSING, "pikaci-inputs-missing")
        .arg(roots)
        .args(outputs.iter().map(|p| p.as_path()))
}

pub fn import_argv(roots: &Path, outputs: &[StorePath]) -> Argv {
    host_sh(IMPORT, "pikaci-inputs-import")
        .arg(roots)
        .args(outputs.iter().map(StorePath::as_path))
}

/// Makes every input valid on the host behind `transport`, with its closure, and roots
/// its outputs under `roots` there. Appends what it did to `log` (a local file). The
/// closures are read and exported on `from`: this machine ([`Local`]) or the build host.
pub fn ensure_on_host(
    from: &dyn Transport,
    transport: &dyn Transport,
    roots: &Path,
    inputs: &[Input],
    log: &mut File,
    cancel: &Cancel,
) -> Result<Copied, InputNotOnHost> {
    let started = Instant::now();
    let host = transport.host();
    let mut closures = Vec::new();
    for input in inputs.iter().filter(|i| !i.outputs.is_empty()) {
        closures.push((input, closure(from, input, cancel)?));
    }
    if closures.is_empty() {
        return Ok(Copied::default());
    }
    let outputs: Vec<&StorePath> = closures
        .iter()
        .flat_map(|(i, _)| i.outputs.iter())
        .collect();
    let all: BTreeSet<&StorePath> = closures.iter().flat_map(|(_, c)| c.iter()).collect();
    let stdin: String = all
        .iter()
        .map(|p| format!("{}\n", p.as_path().display()))
        .collect();
    let out = transport
        .run(
            &missing_argv(roots, &outputs),
            stdin.as_bytes(),
            Instant::now() + QUERY_TIMEOUT,
            cancel,
        )
        .map_err(|source| InputNotOnHost::Query {
            host: host.clone(),
            source: Box::new(source),
        })?;
    let mut missing: BTreeSet<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    let mut copied = Copied {
        paths: 0,
        round_trips: 1,
    };
    for (input, closure) in &closures {
        let send: Vec<&StorePath> = closure
            .iter()
            .filter(|p| missing.contains(p.as_path()))
            .collect();
        note(
            log,
            &format!(
                "input {}: {} path(s) in its closure, {} missing on {host}\n",
                input.name,
                closure.len(),
                send.len()
            ),
        );
        if send.is_empty() {
            continue;
        }
        let (export, import) = (export_argv(&send), import_argv(roots, input.outputs));
        copied.round_trips += 1;
        copy(from, transport, &export, &import, input, log, cancel)?;
        for path in &send {
            missing.remove(path.as_path());
        }
        copied.paths += send.len();
    }
    note(
        log,
        &format!(
            "sent {} path(s) to {host} in {} round trip(s), {} ms\n",
            copied.paths,
            copied.round_trips,
            started.elapsed().as_millis()
        ),
    );
    Ok(copied)
}

fn note(log: &mut File, line: &str) {
    // The log is for people; a write that fails must not fail the job.
    let _ = std::io::Write::write_all(log, line.as_bytes());
}

/// The closure of one input's outputs on `from`, dependencies first.
fn closure(
    from: &dyn Transport,
    input: &Input,
    cancel: &Cancel,
) -> Result<Vec<StorePath>, InputNotOnHost> {
    let failed = |source| InputNotOnHost::Closure {
        input: input.with_paths(),
        on: match source_is_local(from) {
            true => "on this machine".to_string(),
            false => format!("on {}", from.host()),
        },
        source: Box::new(source),
    };
    let argv = requisites_argv(input.outputs);
    let out = from
        .run(&argv, b"", Instant::now() + QUERY_TIMEOUT, cancel)
        .map_err(failed)?;
    // Nix prints only store paths here; anything else would be a bug worth seeing.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            StorePath::new(line).map_err(|_| InputNotOnHost::NotAStorePath {
                input: input.described(),
                line: line.to_string(),
            })
        })
        .collect()
}

/// `nix-store --export` on `from` piped into the host's import; the host's stderr (Nix's
/// own reason, such as a missing signature) is what a failure shows.
fn copy(
    from: &dyn Transport,
    transport: &dyn Transport,
    export: &Argv,
    import: &Argv,
    input: &Input,
    log: &mut File,
    cancel: &Cancel,
) -> Result<(), InputNotOnHost> {
    let streamed = stream(from, transport, export, import, cancel).map_err(|(step, source)| {
        InputNotOnHost::Io {
            input: input.described(),
            host: transport.host(),
            step,
            source,
        }
    })?;
    note(log, &streamed.import_stderr);
    note(log, &streamed.export_stderr);
    judge(&streamed, from, transport, input)
}

/// How both ends of a copy ended, and what each said on stderr.
struct Streamed {
    imported: Ended,
    exported: Ended,
    import_stderr: String,
    export_stderr: String,
}

/// Runs the export on `from` into the import on the host, until the import ends (or the
/// deadline, or cancellation, which stop both). From the build host, the stream passes
/// through this machine: the two hosts need not reach each other.
fn stream(
    from: &dyn Transport,
    transport: &dyn Transport,
    export: &Argv,
    import: &Argv,
    cancel: &Cancel,
) -> Result<Streamed, (&'static str, std::io::Error)> {
    let at = |step| move |e| (step, e);
    let mut export_err = tempfile::tempfile().map_err(at("creating a temp file"))?;
    let mut import_err = tempfile::tempfile().map_err(at("creating a temp file"))?;
    let (reader, writer) = std::io::pipe().map_err(at("creating a pipe"))?;
    // Each command is dropped once spawned: the pipe's ends must live only in the
    // children, or the import would never see the end of the stream.
    let mut export = {
        let mut command = from.command(export);
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(export_err.try_clone().map_err(at("creating a temp file"))?);
        GroupChild::spawn(&mut command, cancel).map_err(at("starting nix-store --export"))?
    };
    let mut import = {
        let mut command = transport.command(import);
        command
            .stdin(reader)
            .stdout(Stdio::null())
            .stderr(import_err.try_clone().map_err(at("creating a temp file"))?);
        GroupChild::spawn(&mut command, cancel).map_err(at("starting the import on the host"))?
    };
    let imported = import
        .wait(Instant::now() + COPY_TIMEOUT, cancel)
        .map_err(at("waiting for the import"))?;
    if !matches!(imported, Ended::Exited(_)) {
        // Nix imports path by path: what was cut off is simply not there.
        import.terminate(if cancel.is_urgent() {
            Duration::ZERO
        } else {
            KILL_GRACE
        });
        export.terminate(Duration::ZERO);
    }
    // The export ends with the stream, or with SIGPIPE when the import stopped reading.
    let exported = export
        .wait(Instant::now() + KILL_GRACE, cancel)
        .map_err(at("waiting for nix-store --export"))?;
    Ok(Streamed {
        imported,
        exported,
        import_stderr: read_back(&mut import_err),
        export_stderr: read_back(&mut export_err),
    })
}

/// The copy's outcome: the import's failure first (it is the host's word, and a failed
/// import also ends the export), then the export's.
fn judge(
    streamed: &Streamed,
    from: &dyn Transport,
    transport: &dyn Transport,
    input: &Input,
) -> Result<(), InputNotOnHost> {
    let (name, host) = (input.with_paths(), transport.host());
    let tail = |text: &str| crate::fsutil::tail(text, TAIL_LINES);
    let status = match streamed.imported {
        Ended::Exited(status) => status,
        Ended::TimedOut => {
            return Err(InputNotOnHost::Unfinished {
                input: name,
                host,
                ended: "did not finish within its deadline",
            });
        }
        Ended::Cancelled => {
            return Err(InputNotOnHost::Unfinished {
                input: name,
                host,
                ended: "was cancelled",
            });
        }
    };
    // From the build host, its lost connection cuts the stream: the import's failure
    // then only echoes it.
    if let Ended::Exited(exported) = streamed.exported
        && !source_is_local(from)
        && from.is_connection_failure(&exported)
    {
        return Err(InputNotOnHost::SourceLost {
            input: name,
            host,
            from: from.host(),
            status: exported.to_string(),
            stderr_tail: tail(&streamed.export_stderr),
        });
    }
    if transport.is_connection_failure(&status) {
        return Err(InputNotOnHost::Lost {
            input: name,
            host,
            status: status.to_string(),
            stderr_tail: tail(&streamed.import_stderr),
        });
    }
    if !status.success() {
        return Err(InputNotOnHost::Copy {
            input: name,
            host,
            status: status.to_string(),
            stderr_tail: tail(&streamed.import_stderr),
        });
    }
    match streamed.exported {
        Ended::Exited(status) if status.success() => Ok(()),
        Ended::Exited(status) => Err(InputNotOnHost::Export {
            input: name,
            host,
            at: match source_is_local(from) {
                true => "here".to_string(),
                false => format!("on {}", from.host()),
            },
            status: status.to_string(),
            stderr_tail: tail(&streamed.export_stderr),
        }),
        _ => Err(InputNotOnHost::Unfinished {
            input: name,
            host,
            ended: "did not end after the host had read it",
        }),
    }
}

fn read_back(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    text
}

#[cfg(test)]
mod tests {
    use std::process::ExitStatus;

    use super::*;

    fn path(name: &str) -> StorePath {
        StorePath::new(format!(
            "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-{name}"
        ))
        .unwrap()
    }

    #[test]
    fn command_shapes() {
        let tools = path("demo-tools");
        let dep = path("dep");
        let roots = Path::new("/w/gcroots/runs/R");
        let shown: Vec<String> = [
            requisites_argv(std::slice::from_ref(&tools)),
            export_argv(&[&dep, &tools]),
            missing_argv(roots, &[&tools]),
            import_argv(roots, std::slice::from_ref(&tools)),
        ]
        .iter()
        // The scripts are pinned as constants above; this shows their argument shape.
        .map(Argv::summary)
        .collect();
        insta::assert_snapshot!(shown.join("\n"), @"
        nix-store --query --requisites /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools
        nix-store --export /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-dep /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools
        sh -c … pikaci-inputs-missing /w/gcroots/runs/R /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools
        sh -c … pikaci-inputs-import /w/gcroots/runs/R /nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools
        ");
    }

    /// A host that runs its commands here, as `script`; ssh's 255 is its lost connection.
    struct Scripted {
        host: &'static str,
        script: &'static str,
    }

    impl Transport for Scripted {
        fn host(&self) -> String {
            self.host.into()
        }
        fn command(&self, _argv: &Argv) -> std::process::Command {
            Argv::new("sh").args(["-c", self.script]).command()
        }
        fn is_connection_failure(&self, status: &ExitStatus) -> bool {
            status.code() == Some(255)
        }
    }

    fn copy_failure(script: &'static str, export: Argv) -> String {
        let tools = path("demo-tools");
        let input = Input::job_input("tools", std::slice::from_ref(&tools));
        let mut log = tempfile::tempfile().unwrap();
        let host = Scripted {
            host: "ssh://ci@builder:2222",
            script,
        };
        let err = copy(
            &Local,
            &host,
            &export,
            &Argv::new("import"),
            &input,
            &mut log,
            &Cancel::new(),
        )
        .unwrap_err();
        crate::error::chain(&err)
    }

    /// The build host behind `from` drops the connection mid-export: the guest host's
    /// import then fails on a cut stream, but the error is the lost build host, with its
    /// ssh's words, not a refusal by the guest host.
    #[test]
    fn a_build_host_lost_during_the_export_is_named_as_such() {
        let tools = path("demo-tools");
        let input = Input::job_input("tools", std::slice::from_ref(&tools));
        let mut log = tempfile::tempfile().unwrap();
        let from = Scripted {
            host: "ssh://ci@build-host:22",
            script: "head -c 1000 /dev/zero; echo 'Connection to builder closed by remote host.' >&2; exit 255",
        };
        let guest = Scripted {
            host: "ssh://ci@guest:22",
            script: "cat >/dev/null; echo 'error: unexpected end-of-file' >&2; exit 1",
        };
        let export = Argv::new("export");
        let err = copy(
            &from,
            &guest,
            &export,
            &Argv::new("import"),
            &input,
            &mut log,
            &Cancel::new(),
        )
        .unwrap_err();
        insta::assert_snapshot!(crate::error::chain(&err), @"
        input `tools` (/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools) is not valid on ssh://ci@guest:22: the connection to ssh://ci@build-host:22 was lost while its closure was exported there (exit status: 255):
        Connection to builder closed by remote host.
        ");
    }

    /// The copy fails three ways: the connection drops mid-stream, the host's Nix refuses
    /// the paths, the export here fails; each names the input, its path and the host,
    /// with the failing side's last lines.
    #[test]
    fn a_failed_copy_names_the_input_its_path_and_the_host() {
        // More than a pipe holds: the host stops reading with the export still writing.
        let stream = Argv::new("head").args(["-c", "8000000", "/dev/zero"]);
        let lost = copy_failure(
            "head -c 1000 >/dev/null; echo 'Connection to builder closed by remote host.' >&2; exit 255",
            stream.clone(),
        );
        let refused = copy_failure(
            "cat >/dev/null; echo \"error: cannot add path '/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-dep' because it lacks a valid signature\" >&2; exit 1",
            stream,
        );
        let export_failed = copy_failure(
            "cat >/dev/null",
            Argv::new("sh").args(["-c", "echo 'error: path is not valid' >&2; exit 1"]),
        );
        insta::assert_snapshot!([lost, refused, export_failed].join("\n--\n"), @"
        input `tools` (/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools) is not valid on ssh://ci@builder:2222: the connection was lost while its closure was copied (exit status: 255):
        Connection to builder closed by remote host.
        --
        input `tools` (/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools) is not valid on ssh://ci@builder:2222: copying its closure there failed (exit status: 1); last lines of the copy:
        error: cannot add path '/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-dep' because it lacks a valid signature
        --
        input `tools` (/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-demo-tools) is not valid on ssh://ci@builder:2222: `nix-store --export` of its closure here failed (exit status: 1):
        error: path is not valid
        ");
    }
}
