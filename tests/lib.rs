//! Integration tests: the real `pikaci` binary in temporary git repositories.

mod harness;

mod config_errors;
mod filters;
mod flake;
mod fuzz;
mod host_gc;
// The properties the AFL targets check, shared with tests/fuzz.rs.
#[path = "../fuzz/src/oracles.rs"]
mod fuzz_oracles;
mod hostile;
mod incus;
mod inputs;
mod microvm;
mod nix_printer;
mod records;
mod reports;
mod running;
mod secrets;
mod setup;
mod ssh;
mod sync;
mod sync_trees;
