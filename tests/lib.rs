//! Integration tests: the real `pikaci` binary in temporary git repositories.

mod harness;

mod config_errors;
mod filters;
mod flake;
mod fuzz;
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
