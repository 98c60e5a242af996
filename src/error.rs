//! The top-level error and its exit code.

use std::error::Error as StdError;

/// Exit codes, documented in the README: 0 all passed or skipped, 1 a job failed or timed
/// out, 2 usage or configuration error, 3 infrastructure error, 130 cancelled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Usage(String),
    /// The configuration asks for something pikaci's environment does not provide.
    #[error(transparent)]
    Preflight(#[from] crate::run::PreflightError),
    /// A flake target's evaluation failed: the configuration names what Nix cannot give.
    #[error(transparent)]
    Flake(#[from] crate::run::FlakeTargetError),
    #[error("{what}: {detail}")]
    Infra { what: String, detail: String },
}

impl Error {
    pub fn infra(what: &str, source: impl StdError) -> Error {
        Error::Infra {
            what: what.to_string(),
            detail: chain(&source),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Preflight(_) | Error::Flake(_) => 2,
            Error::Infra { .. } => 3,
        }
    }
}

/// An error and its causes, `outer: inner: innermost`.
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
