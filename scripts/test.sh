#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests
# (the integration tests drive the real binary, git, nix, a loopback sshd, and microVMs
# under qemu with virtiofsd, and Incus containers).
#
# The integration tests run as an unprivileged user, as people run pikaci: everything is
# built as root, then the test binary runs as the user of scripts/testbed/user.sh (uid
# 1000 or the next free one, gid 100 `users`), which reaches Nix through a nix-daemon,
# Incus through the incus-admin group, and the loopback sshd as itself with its own key.
# The few cases that need root (tests/root_only.rs) run as root, on their own.
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
trap 'bash scripts/testbed/hosts.sh stop; bash scripts/testbed/sshd.sh stop; bash scripts/testbed/incus-remote.sh stop; bash scripts/testbed/incus.sh stop; bash scripts/testbed/user.sh stop' EXIT
testbed sshd
# And the microVM testbed: qemu, virtiofsd, kernel, the runner fixture flake (cached).
testbed microvm
# And Incus: incusd started by hand, a container image with the agent (cached).
testbed incus
# And an Incus image with a Nix store of its own (a debootstrap, cached), made in the
# background while the unit tests build and run.
incus_nix_vars=$(mktemp)
bash scripts/testbed/incus-nix.sh > "$incus_nix_vars" &
incus_nix=$!
# And the unprivileged user, with a nix-daemon (started by hand when none runs).
testbed user
# And a second incusd reached only as an `incus remote` over HTTPS on loopback, a
# one-member cluster (after user.sh: the user gets the remote too).
testbed incus-remote
# And loopback hosts with Nix stores of their own, as remote hosts have (after user.sh:
# the first trusts its user).
testbed hosts
export PIKACI_TEST_SHELLCHECK_NEW="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}/shellcheck-0.11/bin/shellcheck"

# Unit tests and benches (in test mode), as root, as `cargo test` runs them.
cargo test --locked --lib --bins --benches

# The path of a test binary cargo built (`--no-run` builds without running): the one
# executable under deps/ (the binaries the tests run are listed too, outside deps/).
test_binary() {
  cargo test --locked "$@" --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\/deps\/[^"]*\)".*/\1/p' | tail -1
}
integration=$(test_binary --test integration)
# tests/package.rs runs the unit tests again under the Nix build sandbox's conditions.
PIKACI_TEST_UNIT_TESTS=$(test_binary --lib)
export PIKACI_TEST_UNIT_TESTS

wait "$incus_nix"
eval "$(cat "$incus_nix_vars")"
testbed incus-remote nix-image

# Root-only cases, as root; then all the others, as the user.
"$integration" root_only::
bash scripts/testbed/user.sh run -- "$integration" --skip root_only::
