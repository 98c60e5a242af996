# One microVM job on the host: a virtiofsd per share, then the runner, bounded by a time
# limit; whatever way it ends, every process it started is stopped before it exits.
#
# Args: JOB_DIR RUNNER VIRTIOFSD LIMIT_SECS SOCKET_WAIT_SECS TAGS (tag: virtiofsd
# announces each share's tag, which crosvm needs; -: not), then per share:
# TAG SOCKET SHARED_DIR MODE (ro|rw). Runs in JOB_DIR/runtime.
# Stdin stays open for as long as pikaci wants the job: EOF (pikaci exited or its SSH
# connection dropped) stops the job, so nothing outlives a killed client.
# Exit: the runner's status; 124 at the time limit; 143 when stopped; 125 setup failed.
set -u
job_dir=$1 runner=$2 virtiofsd=$3 limit=$4 socket_wait=$5 tags=$6
shift 6
cd "$job_dir/runtime" || exit 125

# shellcheck disable=SC2317,SC2329 # called by the traps (0.9 says SC2317, 0.11 SC2329)
stop() {
  trap - EXIT TERM INT HUP
  local left
  read -r -d "" -a left <<<"$(jobs -rp)" || true
  [ ${#left[@]} -gt 0 ] && kill -TERM "${left[@]}" 2>/dev/null
  for _ in $(seq 50); do
    [ -z "$(jobs -rp)" ] && break
    sleep 0.1
  done
  read -r -d "" -a left <<<"$(jobs -rp)" || true
  [ ${#left[@]} -gt 0 ] && kill -KILL "${left[@]}" 2>/dev/null
  wait
}
trap stop EXIT
trap 'echo "pikaci: stopping the guest" >&2; exit 143' TERM INT HUP

# Background jobs get /dev/null as stdin, so the watcher reads a copy made first.
exec 3<&0
cat <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-

sockets=()
while [ $# -ge 4 ]; do
  tag=$1 socket=$2 dir=$3 mode=$4
  shift 4
  share_flags=()
  [ "$mode" = ro ] && share_flags=(--readonly)
  [ "$tags" = tag ] && share_flags+=(--tag="$tag")
  "$virtiofsd" --socket-path="$socket" --shared-dir="$dir" --sandbox=none \
    --log-level=warn "${share_flags[@]}" </dev/null >&2 &
  sockets+=("$socket")
  echo "pikaci: virtiofsd for share $tag on $dir ($mode)" >&2
done

deadline=$((SECONDS + socket_wait))
for socket in "${sockets[@]}"; do
  until [ -S "$socket" ]; do
    if [ $SECONDS -ge $deadline ] || [ -z "$(jobs -rp)" ]; then
      echo "pikaci: virtiofsd did not create $socket within ${socket_wait}s" >&2
      exit 125
    fi
    sleep 0.02
  done
done

"$runner/bin/microvm-run" </dev/null &
vm=$!
sleep "$limit" >/dev/null 2>&1 &
timer=$!

# Polled, not `wait -n`: that misses a process which ended before it was called (a
# runner that fails at once), and would wait out the whole time limit.
running() { kill -0 "$1" 2>/dev/null; }
while running "$vm" && running "$watcher" && running "$timer"; do
  sleep 0.2
done
if ! running "$vm"; then
  wait "$vm"
  exit $?
fi
if ! running "$timer"; then
  echo "pikaci: the guest exceeded its time limit (${limit}s)" >&2
  exit 124
fi
echo "pikaci: pikaci went away; stopping the guest" >&2
exit 143
