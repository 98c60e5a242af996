//! Everything pikaci asks of the `nix` CLI goes through here.

mod build;
mod store_path;

pub use build::{BuildResult, NixBuild, NixError, installable_in};
pub use store_path::StorePath;
