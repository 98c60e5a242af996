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

/// `sh -c BODY NAME` with the helpers above defined; append the script's arguments.
pub fn host_sh(body: &str, name: &str) -> Argv {
    Argv::new("sh").args(["-c", &format!("{DISCARD}\n{PUBLISH}\n{body}"), name])
}

#[cfg(test)]
mod tests {
    /// Every shell script pikaci runs on a host or in a guest passes shellcheck (POSIX
    /// sh; the microVM supervisor is bash and checked from its file in tests/flake.rs).
    #[test]
    fn host_scripts_pass_shellcheck() {
        use crate::backend::{incus, microvm, session};
        let with_discard = |body: &str| format!("{}\n{}\n{body}", super::DISCARD, super::PUBLISH);
        let scripts = [
            ("sync query", with_discard(crate::sync::QUERY)),
            ("sync missing", with_discard(crate::sync::MISSING)),
            ("sync receive", with_discard(crate::sync::RECEIVE)),
            ("sync patch", with_discard(crate::sync::PATCH)),
            ("sync lease", with_discard(crate::sync::LEASE)),
            ("work dir", session::WORK_DIR.to_string()),
            (
                "gc of the host",
                with_discard(crate::backend::host_gc::COLLECT),
            ),
            ("guest flake", microvm::WRITE_FLAKE.to_string()),
            ("runner shares", microvm::READ_SHARES.to_string()),
            ("pikaci source present", microvm::SOURCE_PRESENT.to_string()),
            ("pikaci source receive", microvm::RECEIVE_SOURCE.to_string()),
            ("host facts", crate::nix::HOST_FACTS.to_string()),
            ("job setup", microvm::SETUP_JOB.to_string()),
            ("job removal", with_discard(microvm::REMOVE_JOB)),
            ("incus request", incus::WRITE_REQUEST.to_string()),
            ("incus workspace", incus::UNPACK_WORKSPACE.to_string()),
            ("image files", crate::incus::image::IMAGE_FILES.to_string()),
        ];
        for (name, body) in scripts {
            let Ok(out) = std::process::Command::new("shellcheck")
                .args(["-s", "sh", "-"])
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
                "{name}:\n{body}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
