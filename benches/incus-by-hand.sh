#!/usr/bin/env bash
# The baseline of `cargo bench --bench incus`: one trivial job in an Incus container the
# way one would script it by hand — launch, the workspace as a read-only disk, the request
# over exec stdin, the agent, the result pulled, the instance deleted.
#
#   bash benches/incus-by-hand.sh IMAGE WORKSPACE REQUEST OUT_DIR
set -euo pipefail
image=$1 workspace=$2 request=$3 out=$4
name="bench-by-hand-$$"
trap 'incus delete --force "$name" >/dev/null' EXIT
incus launch "$image" "$name" >/dev/null 2>&1
incus config device add "$name" workspace disk source="$workspace" path=/workspace readonly=true >/dev/null
incus exec "$name" -- sh -c 'umask 077 && mkdir -p /run/pikaci && cat > /run/pikaci/request.json' < "$request"
incus exec "$name" -- /usr/local/bin/pikaci-guest run /run/pikaci/request.json >/dev/null
incus file pull "$name/artifacts/result.json" "$out/result.json"
