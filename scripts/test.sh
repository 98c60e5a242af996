#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests
# (the integration tests drive the real binary, git, nix, a loopback sshd, and microVMs
# under qemu with virtiofsd, and Incus containers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The AFL fuzz targets (run by scripts/fuzz.sh) must keep compiling against the library.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings

# Real parts for the tests: an sshd on loopback (stopped again when this script ends).
trap 'bash scripts/testbed/sshd.sh stop; bash scripts/testbed/incus.sh stop' EXIT
eval "$(bash scripts/testbed/sshd.sh)"
# And the microVM testbed: qemu, virtiofsd, kernel, the runner fixture flake (cached).
eval "$(bash scripts/testbed/microvm.sh)"
# And Incus: incusd started by hand, a container image with the agent (cached).
eval "$(bash scripts/testbed/incus.sh)"

cargo test --all-targets --locked
