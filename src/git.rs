//! Every `git` call pikaci makes: argv, no prompts, and errors with git's stderr tail.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

/// How many trailing lines of git's stderr an error keeps.
const STDERR_TAIL_LINES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` {status}: {stderr}")]
    Failed {
        command: String,
        /// e.g. "exited with code 128".
        status: String,
        /// The last lines of git's stderr, on one line.
        stderr: String,
    },
}

impl GitError {
    /// True when the directory is not inside a git work tree.
    pub fn not_a_repository(&self) -> bool {
        matches!(self, GitError::Failed { stderr, .. } if stderr.contains("not a git repository"))
    }
}

/// `git -C DIR ARGS…`, ready to run: no prompts, stdin closed, and none of the variables
/// a surrounding git hook leaves behind (`GIT_DIR`, …), which would point git at
/// another repository than the one at `dir`.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs `git -C DIR ARGS…` and returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    Git::new(dir).run(args)
}

/// Like [`git`], for output that is text.
pub fn git_text(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    git(dir, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// `git -C DIR …` for a caller that reads exit codes itself (as `changes` does: git
/// answers "no such commit" with exit 1).
pub struct Git {
    dir: PathBuf,
}

impl Git {
    pub fn new(dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
        }
    }

    fn command_line(&self, args: &[&str]) -> String {
        format!("git -C {} {}", self.dir.display(), args.join(" "))
    }

    /// Runs git and returns its output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output, GitError> {
        command(&self.dir, args)
            .output()
            .map_err(|source| GitError::Spawn {
                command: self.command_line(args),
                source,
            })
    }

    /// Runs git and returns its stdout, failing on a non-zero exit.
    pub fn run(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let output = self.output(args)?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.failure(args, &output))
        }
    }

    /// The error for `output`, which git gave for `args`.
    pub fn failure(&self, args: &[&str], output: &Output) -> GitError {
        GitError::Failed {
            command: self.command_line(args),
            status: describe_status(output.status),
            stderr: stderr_tail(&output.stderr),
        }
    }
}

/// The last few non-blank lines of stderr, joined on one line for logs.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "(no output on stderr)".into();
    }
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("; ")
}

fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let stderr = b"one\ntwo\n\nthree\nfour\nfive\nsix\n";
        assert_eq!(stderr_tail(stderr), "two; three; four; five; six");
        assert_eq!(stderr_tail(b"  \n"), "(no output on stderr)");
    }

    #[test]
    fn outside_a_repository_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let err = git(dir.path(), &["rev-parse", "HEAD"]).unwrap_err();
        assert!(err.not_a_repository(), "{err}");
        assert!(err.to_string().contains("exited with code 128"), "{err}");
    }
}
