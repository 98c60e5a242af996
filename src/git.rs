//! Every `git` call pikaci makes: argv, no prompts, and errors with git's stderr tail.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
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
    let command_line = || format!("git -C {} {}", dir.display(), args.join(" "));
    let output = command(dir, args)
        .output()
        .map_err(|source| GitError::Spawn {
            command: command_line(),
            source,
        })?;
    if !output.status.success() {
        return Err(GitError::Failed {
            command: command_line(),
            stderr: crate::fsutil::tail(&String::from_utf8_lossy(&output.stderr), 5),
        });
    }
    Ok(output.stdout)
}

/// Like [`git`], for output that is text.
pub fn git_text(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    git(dir, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}
