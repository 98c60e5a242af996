//! pikaci: runs CI jobs in throwaway Linux guests built with Nix.

pub mod cancel;
pub mod config;
pub mod exec;
pub mod fsutil;
pub mod ids;
pub mod protocol;
