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
}
