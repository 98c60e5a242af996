#!/usr/bin/env bash
# The main job: runs this repository's `demo` target with pikaci. Its jobs run in
# microVMs (qemu under TCG, virtiofsd, the testbed runner flake) on a loopback SSH host
# with a Nix store of its own (scripts/testbed/hosts.sh: the input built here must reach
# that store, as on a remote host), in an Incus container, and on the host backend.
# Extra arguments go to `pikaci run` (e.g. --output jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

# The local testbed: an sshd on 127.0.0.1 and hosts with their own store (stopped again
# afterwards) and the microVM parts; all print variables for eval.
trap 'bash scripts/testbed/hosts.sh stop; bash scripts/testbed/sshd.sh stop; bash scripts/testbed/incus.sh stop' EXIT
testbed sshd
testbed hosts
testbed microvm
testbed incus

cargo build --release --locked --bin pikaci
# The testbed's host, key and runner are machine-specific, so they are passed as
# overrides rather than written into pikaci.toml.
PIKACI_HOST="${PIKACI_TEST_OWN_STORE_HOSTS%% *}" \
PIKACI_SSH_IDENTITY_FILE="$PIKACI_TEST_SSH_KEY" \
PIKACI_SSH_KNOWN_HOSTS_FILE="$PIKACI_TEST_OWN_STORE_KNOWN_HOSTS" \
PIKACI_MICROVM_RUNNER="$PIKACI_TEST_RUNNER" \
  ./target/release/pikaci run demo "$@"
