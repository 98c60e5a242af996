//! Shell scripts pikaci runs on the host, passed as `sh -c BODY NAME ARGS…` (so their
//! arguments are argv words, never spliced into the script).

use crate::argv::Argv;

/// `discard DIR`: removes a tree whose directories may be read-only. It opens only
/// directories: the files are often hard links to shared objects, whose modes must stay.
pub(crate) const DISCARD: &str = r#"discard() { if [ -e "$1" ]; then find "$1" -type d -exec chmod u+w {} + 2>/dev/null; rm -rf -- "$1"; fi; }"#;

/// `publish TREE HEX`: renames a finished tree to `snapshots/HEX` (where another sync may
/// have put the same tree first), then makes its top read-only. Only then: renaming a
/// directory changes its `..`, which needs write permission on it for anyone but root.
pub(crate) const PUBLISH: &str = r#"publish() { if mv -T "$1" "snapshots/$2" 2>/dev/null; then chmod 0555 "snapshots/$2"; else [ -d "snapshots/$2" ]; fi; }"#;

/// `detached SCRIPT NAME ARGS…`: runs `sh -c SCRIPT NAME ARGS…` in the background, in
/// a session of its own where `setsid` exists, so it outlives the step (and, on this
/// machine, the kill of the step's process group); it keeps the step's open files but
/// no stdio. Returns once it has left the group: the command substitution waits for its
/// first line.
pub(crate) const DETACHED: &str = r#"detached() { s=$1; shift; : "$( { if command -v setsid >/dev/null 2>&1; then setsid sh -c "echo; exec >/dev/null; $s" "$@"; else sh -c "echo; exec >/dev/null; $s" "$@"; fi; } </dev/null 2>/dev/null & )"; }"#;

/// `sh -c BODY NAME` with the helpers above defined; append the script's arguments.
pub fn host_sh(body: &str, name: &str) -> Argv {
    Argv::new("sh").args(["-c", &format!("{}\n{body}", helpers()), name])
}

/// The helpers' definitions, one a line.
fn helpers() -> String {
    [DISCARD, PUBLISH, DETACHED].join("\n")
}

#[cfg(test)]
mod tests {
    /// The shell a script is written for, and whether it runs behind [`super::host_sh`]
    /// (so with `discard` defined).
    #[derive(Clone, Copy)]
    enum Kind {
        Sh,
        ShWithDiscard,
        Bash,
    }

    /// One embedded script: the name of its constant and its text.
    struct Script {
        name: &'static str,
        kind: Kind,
        body: &'static str,
    }

    /// `script!(KIND, path::to::CONST)`: the constant's text under its own name.
    macro_rules! script {
        ($kind:ident, $($path:ident)::+) => {
            Script {
                name: last_segment(stringify!($($path)::+)),
                kind: Kind::$kind,
                body: $($path)::+,
            }
        };
    }

    fn last_segment(path: &'static str) -> &'static str {
        path.rsplit("::").next().unwrap_or(path).trim()
    }

    /// Every shell script pikaci embeds, in one place: what the shellcheck test checks
    /// and the source scan below holds every `const …: &str` against.
    fn scripts() -> Vec<Script> {
        use crate::backend::{host_gc, incus, microvm, session};
        vec![
            script!(ShWithDiscard, crate::sync::QUERY),
            script!(ShWithDiscard, crate::sync::MISSING),
            script!(ShWithDiscard, crate::sync::RECEIVE),
            script!(ShWithDiscard, crate::sync::PATCH),
            script!(ShWithDiscard, crate::sync::LEASE),
            script!(Sh, session::WORK_DIR),
            script!(ShWithDiscard, host_gc::COLLECT),
            script!(Sh, microvm::WRITE_FLAKE),
            script!(Sh, microvm::READ_SHARES),
            script!(Sh, microvm::SOURCE_PRESENT),
            script!(Sh, microvm::RECEIVE_SOURCE),
            script!(Sh, crate::nix::HOST_FACTS),
            script!(ShWithDiscard, crate::nix::copy::MISSING),
            script!(ShWithDiscard, crate::nix::copy::IMPORT),
            script!(Sh, microvm::SETUP_JOB),
            script!(ShWithDiscard, microvm::REMOVE_JOB),
            script!(Bash, microvm::SUPERVISE),
            script!(Sh, incus::WRITE_REQUEST),
            script!(Sh, incus::UNPACK_WORKSPACE),
            script!(Sh, incus::inputs::PROBE_STORE),
            script!(Sh, incus::inputs::PRESENT),
            script!(Sh, incus::inputs::IMPORT_CLOSURE),
            script!(Sh, crate::incus::image::IMAGE_FILES),
            script!(Sh, super::DISCARD),
            script!(Sh, super::PUBLISH),
            script!(Sh, super::DETACHED),
            script!(Sh, incus::doctor::AGENT_PRESENT),
            script!(Sh, crate::transport::ssh::DRAIN_STDIN),
            script!(Sh, crate::transport::channel::DRIVER),
            script!(Sh, crate::doctor::COMMAND_PRESENT),
            script!(Sh, crate::pool::PROBE),
        ]
    }

    /// String constants of the source that are not shell scripts: each new one is
    /// sorted here or registered in [`scripts`] by whoever adds it.
    const NOT_SCRIPTS: &[&str] = &[
        "ARTIFACTS",
        "CANCELLED",
        "CARGO_JOBS",
        "COMPLETE_VAR",
        "CONFIGURATION_MD",
        "CONFIG_FILE",
        "DEFAULT_HOST",
        "DEFAULT_LISTEN",
        "ELIDED",
        "END",
        "FLAKE_JOB",
        "GUEST_NAME",
        "GUEST_WORKSPACE",
        "HEADER",
        "HELLO_JOB",
        "JOB_USER",
        "LIVE",
        "MASK",
        "MOUNT_ARG",
        "NIX32",
        "PARENT_ENV",
        "REQUEST_DIR",
        "RO_STORE",
        "REAP_ARG",
        "REQUEST",
        "RUN_KEY",
        "SCRATCH_ENV",
        "STORE_DEVICE",
        "STORE_DIR",
        "STYLE",
        "SYNCS_LEASE",
        "SYSTEM_PATH",
        "WORKSPACE",
    ];

    /// The non-test source files under `dir`, with their text up to their test module.
    fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = match text.find("\n#[cfg(test)]\nmod ") {
                    Some(end) => text[..end].to_string(),
                    None => text,
                };
                out.push((path, text));
            }
        }
    }

    /// The names of the `const`/`static` string items in `text`.
    fn string_constants(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let line = line
                    .strip_prefix("pub(crate) ")
                    .or_else(|| line.strip_prefix("pub "))
                    .unwrap_or(line);
                let rest = line
                    .strip_prefix("const ")
                    .or_else(|| line.strip_prefix("static "))?;
                let (name, ty) = rest.split_once(':')?;
                ty.trim_start()
                    .starts_with("&str")
                    .then(|| name.trim().to_string())
            })
            .collect()
    }

    /// A script added as a string constant, or written inline after `-c`, is caught
    /// here until it is registered (and so shellchecked).
    #[test]
    fn every_embedded_script_is_registered() {
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let registered: Vec<&str> = scripts().iter().map(|s| s.name).collect();
        let mut unsorted = Vec::new();
        for (path, text) in &files {
            for name in string_constants(text) {
                if !registered.contains(&name.as_str()) && !NOT_SCRIPTS.contains(&name.as_str()) {
                    unsorted.push(format!("{}: {name}", path.display()));
                }
            }
            // `"-c", "…"`: a script written in place, which no list can name.
            if text.contains(r#""-c", ""#) || text.contains(r#""-c", r"#) {
                unsorted.push(format!("{}: a literal script after -c", path.display()));
            }
        }
        assert!(
            unsorted.is_empty(),
            "register these in transport::host_sh::tests::scripts (shell) or NOT_SCRIPTS:\n{}",
            unsorted.join("\n")
        );
        assert!(files.len() > 50, "the scan found the source");
    }

    /// Every shell script pikaci runs on a host or in a guest passes shellcheck.
    #[test]
    fn host_scripts_pass_shellcheck() {
        for script in scripts() {
            let (dialect, body) = match script.kind {
                Kind::Sh => ("sh", script.body.to_string()),
                Kind::ShWithDiscard => ("sh", format!("{}\n{}", super::helpers(), script.body)),
                Kind::Bash => ("bash", script.body.to_string()),
            };
            let Ok(out) = std::process::Command::new("shellcheck")
                .args(["-s", dialect, "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(body.as_bytes())?;
                    child.wait_with_output()
                })
            else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "shellcheck is required in CI"
                );
                return;
            };
            assert!(
                out.status.success(),
                "{}:\n{body}\n{}",
                script.name,
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
