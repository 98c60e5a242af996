//! Integration tests: the real `pikaci` binary in temporary git repositories. They run as
//! an unprivileged user (scripts/test.sh), except `root_only`, run as root.

mod harness;

mod build_host;
mod closed_output;
mod completion;
mod config_errors;
mod docs;
mod doctor_matrix;
mod filters;
mod flake;
mod flake_jobs;
mod fuzz;
mod host_gc;
mod hosts;
// The properties the AFL targets check, shared with tests/fuzz.rs.
#[path = "../fuzz/src/oracles.rs"]
mod fuzz_oracles;
mod host_faults;
mod hostile;
mod incus;
mod incus_inputs;
mod incus_remote;
mod init;
mod inputs;
mod inspect;
mod man;
mod microvm;
mod nix_printer;
mod own_store;
mod package;
mod pool;
mod processes;
mod records;
mod reports;
mod retries;
mod root_only;
mod running;
mod secrets;
mod serve;
mod setup;
mod ssh;
mod store;
mod store_paths;
mod sync;
mod sync_trees;
