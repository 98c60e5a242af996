//! `nix build --json -o LINK INSTALLABLE`: works from Nix 2.8 to current Nix, and the
//! out-link is the GC root for as long as the run keeps it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::StorePath;
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::fsutil::tail;
use crate::transport::{Transport, TransportError};

/// Deadline for one `nix build` (a cold guest image build can take long).
pub const BUILD_TIMEOUT: Duration = crate::transport::Step::Build.duration();

pub struct NixBuild<'a> {
    pub installable: &'a str,
    /// The out-link (GC root). With several outputs Nix adds `-<output>` suffixes.
    pub out_link: &'a Path,
    /// Where relative installables such as `.#x` resolve.
    pub cwd: &'a Path,
}

/// One element of `nix build --json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawBuildResult")]
pub struct BuildResult {
    /// The derivation built; `None` for a bare store-path installable (`/nix/store/…`),
    /// which Nix only realises (substitutes or checks valid) and reports as `{"path": …}`.
    pub drv_path: Option<PathBuf>,
    /// The derivation's outputs by name. A store-path installable's one path is `out`: its
    /// out-link, like a single-output derivation's, is the `-o` link itself, unsuffixed.
    pub outputs: BTreeMap<String, StorePath>,
}

/// Either form Nix prints: `{"drvPath", "outputs"}` for a derivation, `{"path"}` for a
/// store path (Nix 2.8 and current Nix alike). Other fields (newer Nix adds timings) are
/// ignored.
#[derive(Deserialize)]
struct RawBuildResult {
    #[serde(rename = "drvPath")]
    drv_path: Option<PathBuf>,
    outputs: Option<BTreeMap<String, StorePath>>,
    path: Option<StorePath>,
}

impl TryFrom<RawBuildResult> for BuildResult {
    type Error = &'static str;

    fn try_from(raw: RawBuildResult) -> Result<Self, Self::Error> {
        match (raw.drv_path, raw.outputs, raw.path) {
            (Some(drv_path), Some(outputs), None) => Ok(BuildResult {
                drv_path: Some(drv_path),
                outputs,
            }),
            (None, None, Some(path)) => Ok(BuildResult {
                drv_path: None,
                outputs: BTreeMap::from([("out".to_string(), path)]),
            }),
            _ => Err(
                "a build result is neither a derivation's `drvPath` and `outputs` nor a store path's `path`",
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error(transparent)]
    Transport(TransportError),
    #[error("cannot write the build log {}", log.display())]
    Log {
        log: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("on {host}: `{command}` failed ({status}); last lines of its log {}:\n{stderr_tail}", log.display())]
    Failed {
        host: String,
        command: String,
        status: String,
        log: PathBuf,
        stderr_tail: String,
    },
    #[error("`{command}` printed JSON pikaci cannot read: {detail}")]
    BadOutput { command: String, detail: String },
}

impl NixBuild<'_> {
    pub fn argv(&self) -> Argv {
        self.argv_with(&[])
    }

    /// With `--option NAME VALUE` for each of `options` (a binary cache to substitute
    /// from, `nix::flake_jobs::substituter_options`).
    pub fn argv_with(&self, options: &[(String, String)]) -> Argv {
        // pikaci's installables are flake references; enable what they need rather than
        // depend on the user's nix.conf.
        let mut argv = Argv::new("nix")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["build", "--json", "-o"])
            .arg(self.out_link);
        for (name, value) in options {
            argv = argv.arg("--option").arg(name).arg(value);
        }
        argv.arg(self.installable).cwd(self.cwd)
    }

    /// Builds on the host behind `transport`, with stderr (the build log) saved to the
    /// local file `log`; the results come from the JSON on stdout, never from free text.
    pub fn run(
        &self,
        transport: &dyn Transport,
        log: &Path,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Vec<BuildResult>, NixError> {
        self.run_with(transport, log, deadline, cancel, &[])
    }

    /// [`NixBuild::run`] with [`NixBuild::argv_with`]'s options.
    pub fn run_with(
        &self,
        transport: &dyn Transport,
        log: &Path,
        deadline: Instant,
        cancel: &Cancel,
        options: &[(String, String)],
    ) -> Result<Vec<BuildResult>, NixError> {
        let argv = self.argv_with(options);
        let command = argv.to_string();
        let output = transport
            .run_unchecked(&argv, b"", deadline, cancel)
            .map_err(NixError::Transport)?;
        std::fs::write(log, &output.stderr).map_err(|source| NixError::Log {
            log: log.to_path_buf(),
            source,
        })?;
        if !output.status.success() {
            if transport.is_connection_failure(&output.status) {
                return Err(NixError::Transport(
                    transport.check(&argv, output).unwrap_err(),
                ));
            }
            return Err(NixError::Failed {
                host: transport.host(),
                command,
                status: output.status.to_string(),
                log: log.to_path_buf(),
                stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), 25),
            });
        }
        let json = String::from_utf8_lossy(&output.stdout);
        parse_build_json(&json).map_err(|detail| NixError::BadOutput { command, detail })
    }
}

/// Pins a relative flake reference (`.#x`, `./dir#x`) to `dir` as a `path:` flake.
/// Without this, Nix would resolve it through an enclosing git repository — the snapshot
/// usually lives inside the user's repository, in the ignored state dir.
pub fn installable_in(dir: &Path, installable: &str) -> String {
    let (reference, fragment) = match installable.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (installable, None),
    };
    let relative = match reference {
        "." => "",
        _ => match reference.strip_prefix("./") {
            Some(rest) => rest,
            None => return installable.to_string(),
        },
    };
    let path = if relative.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(relative)
    };
    let path = path.to_string_lossy();
    match fragment {
        Some(fragment) => format!("path:{path}#{fragment}"),
        None => format!("path:{path}"),
    }
}

pub fn parse_build_json(json: &str) -> Result<Vec<BuildResult>, String> {
    let results: Vec<BuildResult> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if results.is_empty() || results.iter().any(|r| r.outputs.is_empty()) {
        return Err("no outputs in the build result".into());
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_shape() {
        let build = NixBuild {
            installable: ".#ci-toolchain",
            out_link: Path::new("/state/runs/R/gcroots/input-toolchain"),
            cwd: Path::new("/state/cache/snapshots/abc"),
        };
        insta::assert_snapshot!(build.argv().to_string(), @"env -C /state/cache/snapshots/abc -- nix --extra-experimental-features 'nix-command flakes' build --json -o /state/runs/R/gcroots/input-toolchain '.#ci-toolchain'");
    }

    /// With `[nix] cache`: the cache as an extra substituter, trusted by its key.
    #[test]
    fn argv_with_a_cache_to_substitute_from() {
        let build = NixBuild {
            installable: "path:/s#checks.x86_64-linux.ok",
            out_link: Path::new("/state/runs/R/gcroots/build-checks.ok"),
            cwd: Path::new("/s"),
        };
        let options = crate::nix::flake_jobs::substituter_options(
            "file:///var/cache/ci",
            Some("ci-1:etYzR9AyX3B4k+yIT/tQOCemjSRwdVeyOvem0f4qIlU="),
        );
        insta::assert_snapshot!(build.argv_with(&options).to_string(), @"env -C /s -- nix --extra-experimental-features 'nix-command flakes' build --json -o /state/runs/R/gcroots/build-checks.ok --option extra-substituters file:///var/cache/ci --option extra-trusted-public-keys ci-1:etYzR9AyX3B4k+yIT/tQOCemjSRwdVeyOvem0f4qIlU= 'path:/s#checks.x86_64-linux.ok'");
    }

    #[test]
    fn relative_installables_are_pinned_to_the_snapshot() {
        let dir = Path::new("/state/cache/snapshots/abc");
        let cases = [
            ".#tools",
            "./tools#x",
            "./sub",
            "nixpkgs#hello",
            "github:o/r#p",
            "/abs#z",
            "path:./p#q",
        ];
        let rendered: Vec<String> = cases
            .iter()
            .map(|c| format!("{c} -> {}", installable_in(dir, c)))
            .collect();
        insta::assert_snapshot!(rendered.join("\n"), @"
        .#tools -> path:/state/cache/snapshots/abc#tools
        ./tools#x -> path:/state/cache/snapshots/abc/tools#x
        ./sub -> path:/state/cache/snapshots/abc/sub
        nixpkgs#hello -> nixpkgs#hello
        github:o/r#p -> github:o/r#p
        /abs#z -> /abs#z
        path:./p#q -> path:./p#q
        ");
    }

    /// What `nix build --json` prints for each kind of installable (Nix 2.8 and current
    /// Nix agree): a derivation's outputs, and a bare store path's `path` form.
    #[test]
    fn parses_both_forms_of_build_json() {
        let derivation = r#"[{"drvPath":"/nix/store/ripzgazr6kxny5hyli37ds0li6mdkm3l-h5t.drv","outputs":{"out":"/nix/store/fwjzadl7aqf23dnbfg31z2bafspv114c-h5t"}}]"#;
        let store_path = r#"[{"path":"/nix/store/fwjzadl7aqf23dnbfg31z2bafspv114c-h5t"}]"#;
        let parsed = [derivation, store_path].map(|json| parse_build_json(json).unwrap());
        insta::assert_debug_snapshot!(parsed);
        let escaped = r#"[{"path":"/etc"}]"#;
        assert!(
            parse_build_json(escaped)
                .unwrap_err()
                .contains("not a Nix store path")
        );
        let neither = r#"[{"drvPath":"/nix/store/ripzgazr6kxny5hyli37ds0li6mdkm3l-h5t.drv"}]"#;
        assert!(parse_build_json(neither).is_err());
    }

    #[test]
    fn parses_build_json_and_checks_store_paths() {
        let ok = r#"[{"drvPath":"/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-t.drv","outputs":{"out":"/nix/store/1c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-t"}}]"#;
        let results = parse_build_json(ok).unwrap();
        assert_eq!(
            results[0].outputs["out"].to_string(),
            "/nix/store/1c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-t"
        );
        let escaped = r#"[{"drvPath":"/x.drv","outputs":{"out":"/etc"}}]"#;
        assert!(
            parse_build_json(escaped)
                .unwrap_err()
                .contains("not a Nix store path")
        );
        assert!(parse_build_json("[]").is_err());
        assert!(parse_build_json("building...").is_err());
    }
}
