#!/usr/bin/env bash
# The main job: runs this repository's `demo` target with pikaci on the host backend.
# Extra arguments go to `pikaci run` (e.g. --output jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

cargo build --release --locked --bin pikaci
exec ./target/release/pikaci run demo "$@"
