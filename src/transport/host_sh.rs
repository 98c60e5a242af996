//! Shell scripts pikaci runs on the host, passed as `sh -c BODY NAME ARGS…` (so their
//! arguments are argv words, never spliced into the script).

use crate::argv::Argv;

/// `discard DIR`: removes a tree whose directories may be read-only. It opens only
/// directories: the files are often hard links to shared objects, whose modes must stay.
const DISCARD: &str = r#"discard() { if [ -e "$1" ]; then find "$1" -type d -exec chmod u+w {} + 2>/dev/null; rm -rf -- "$1"; fi; }"#;

/// `sh -c BODY NAME` with the helpers above defined; append the script's arguments.
pub fn host_sh(body: &str, name: &str) -> Argv {
    Argv::new("sh").args(["-c", &format!("{DISCARD}\n{body}"), name])
}
