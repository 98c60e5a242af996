#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests
# (the integration tests drive the real binary, git, nix and a loopback sshd).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

# Real parts for the tests: an sshd on loopback (stopped again when this script ends).
trap 'bash scripts/testbed/sshd.sh stop' EXIT
eval "$(bash scripts/testbed/sshd.sh)"

cargo test --all-targets --locked
