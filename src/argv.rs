//! Commands as argv values. They become a `std::process::Command` here, and a shell
//! string only for display (logs, snapshots) — never to be run through a shell.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::process::Command;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argv {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    /// Variables set on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
}

impl Argv {
    pub fn new(program: impl AsRef<OsStr>) -> Argv {
        Argv {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Argv {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Argv {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Argv {
        self.cwd = Some(dir.into());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Argv {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

impl Argv {
    /// The rendering for messages: like [`Display`](fmt::Display), with each embedded
    /// script (the word after a `-c` that holds whitespace) shown as `…`, so a failed
    /// step reads `sh -c … pikaci-job-setup /w/jobs/R/lint -`, not a dozen lines of
    /// shell. The script's name (`$0`, after it) says which script it was.
    pub fn summary(&self) -> String {
        const ELIDED: &str = "@pikaci-script@";
        let mut shown = self.clone();
        let mut after_c = false;
        for arg in &mut shown.args {
            if after_c && arg.as_encoded_bytes().iter().any(u8::is_ascii_whitespace) {
                *arg = ELIDED.into();
            }
            after_c = arg == "-c";
        }
        shown.to_string().replace(ELIDED, "…")
    }
}

/// A copy-pasteable rendering: `cd DIR && KEY=VALUE program 'arg with spaces'`.
/// Shows the command exactly as the SSH boundary would hand it to a shell
/// ([`crate::transport::quote_argv`]): one quoting function for messages and execution.
impl fmt::Display for Argv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::transport::quote_argv(self).to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_each_word_once() {
        let argv = Argv::new("bash")
            .args(["-c", "echo 'hi' $HOME"])
            .cwd("/a b")
            .env("X", "1 2");
        insta::assert_snapshot!(argv.to_string(), @r"env -C '/a b' -- 'X=1 2' bash -c 'echo '\''hi'\'' $HOME'");
    }

    #[test]
    fn summary_elides_scripts_and_keeps_their_names_and_arguments() {
        let script = Argv::new("sh").args([
            "-c",
            "set -eu\nrm -rf -- \"$1\"\n",
            "pikaci-job-remove",
            "/w/a b",
        ]);
        let nested = Argv::new("sudo").args([
            "-n",
            "incus",
            "exec",
            "i",
            "--",
            "sh",
            "-c",
            "umask 077 && cat > \"$1\"",
            "pikaci-request",
            "/r",
        ]);
        let git = Argv::new("git").args(["-c", "user.name=t", "status"]);
        let shown = [script, nested, git].map(|a| a.summary());
        insta::assert_snapshot!(shown.join("\n"), @"
        sh -c … pikaci-job-remove '/w/a b'
        sudo -n incus exec i -- sh -c … pikaci-request /r
        git -c user.name=t status
        ");
    }
}
