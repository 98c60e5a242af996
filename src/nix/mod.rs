//! Everything pikaci asks of the `nix` CLI goes through here.

mod build;
pub mod copy;
mod expr;
pub mod flake_jobs;
mod guest_flake;
mod store_path;

pub use build::{BUILD_TIMEOUT, BuildResult, NixBuild, NixError, installable_in, parse_build_json};
pub use expr::Expr;
pub use guest_flake::{
    BUILT_FROM, GUEST_NAME, GuestProfile, HOST_FACTS, HostFacts, HostFactsError, NoPikaciFlake,
    PikaciOnHost, SHARES, Share, pikaci_flake,
};
pub use store_path::StorePath;
