//! pikaci: runs CI jobs in throwaway Linux guests built with Nix.

pub mod argv;
pub mod backend;
pub mod cancel;
pub mod changes;
pub mod cli;
pub mod config;
pub mod console;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod git;
pub mod guest;
pub mod ids;
pub mod incus;
pub mod nix;
pub mod output;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod sync;
pub mod transport;
