#!/usr/bin/env bash
# Loopback SSH hosts with a Nix store of their own, as a remote host has one (the sshd of
# sshd.sh shares this machine's /nix, so it cannot tell a remote host from this one).
# Run as root after sshd.sh (it reuses its host key, client key and authorized_keys).
# Idempotent: hosts it started earlier are reused. Prints the variables the tests read,
# for `eval`.
#
#   eval "$(bash scripts/testbed/hosts.sh)"   # start PIKACI_TEST_HOSTS hosts (default 3)
#   bash scripts/testbed/hosts.sh stop        # stop them (their stores stay, for reuse)
#
# Each host N is an sshd on 127.0.0.1:$((PIKACI_TEST_HOSTS_PORT + N - 1)) (default 22031)
# started in a mount namespace of its own, where $PIKACI_TESTBED/hosts/N/nix is bind-mounted
# over /nix and a nix.conf of its own over /etc/nix/nix.conf. Every session through that
# sshd, and every qemu and virtiofsd it starts, sees only that store; /usr, /tmp and the
# rest are this machine's. Nix there:
# - root logs in and uses the store directly (it owns it);
# - other users (the test user of user.sh) reach it through a nix-daemon started in the
#   same namespace, whose socket is in the host's own /nix, as on a multi-user install;
# - no binary cache (substituters empty: none is reachable here) and the experimental
#   features pikaci's flakes need;
# - `trusted-users`: host 1 trusts the test user, so `nix-store --import` of paths built
#   on this machine (unsigned) works for it, as for a user an admin made trusted. Host 2
#   trusts only root: a host whose admin did not, where an unsigned copy is refused.
#   Host 3 (port base + 2) trusts the test user like host 1: a second trusting host, for
#   a build host (host 1) whose results are copied to two guest hosts (hosts 1 and 3).
# Two more hosts have a faulty store, fresh at each start, and trust the test user:
# - the "full" host (port base + 8): its /nix/store is a tmpfs of $FULL_STORE_MIB MiB;
# - the "read-only" host (port base + 9): its /nix/store is a tmpfs mounted read-only,
#   which Nix's own remount of a read-only bind mount cannot make writable.
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
ssh_dir="$root/ssh"
hosts_dir="$root/hosts"
count="${PIKACI_TEST_HOSTS:-3}"
base_port="${PIKACI_TEST_HOSTS_PORT:-22031}"
user="${PIKACI_TEST_USER:-pikaci-test}"
FULL_STORE_MIB=48

# Stops what the pid file names, if it still runs.
stop_pid() {
  if [ -f "$1" ]; then
    kill "$(cat "$1")" 2>/dev/null || true
    rm -f "$1"
  fi
}

if [ "${1:-}" = stop ]; then
  for dir in "$hosts_dir"/*/; do
    [ -d "$dir" ] || continue
    stop_pid "$dir/sshd.pid"
    stop_pid "$dir/nix-daemon.pid"
  done
  exit 0
fi

[ -f "$ssh_dir/host_key" ] || { echo "testbed: run sshd.sh first" >&2; exit 1; }
# Each host's nix.conf is bind-mounted over this one, which must exist.
[ -e /etc/nix/nix.conf ] || { mkdir -p /etc/nix && touch /etc/nix/nix.conf; }
mkdir -p "$hosts_dir" /run/sshd
# Readable by the test user: its known_hosts for these hosts is this file.
chmod 755 "$hosts_dir"
: > "$hosts_dir/known_hosts.part"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# What each host's namespace mounts over /nix/store, by its name: nothing for a
# numbered host (its store is in its /nix).
store_mount() {
  case $1 in
    full) echo "mount -t tmpfs -o size=${FULL_STORE_MIB}m pikaci-full-store /nix/store" ;;
    read-only) echo "mount -t tmpfs -o ro pikaci-read-only-store /nix/store" ;;
    *) echo : ;;
  esac
}

urls=()
fault_urls=()
for n in $(seq "$count") full read-only; do
  dir="$hosts_dir/$n"
  case $n in
    full) port=$((base_port + 8)) ;;
    read-only) port=$((base_port + 9)) ;;
    *) port=$((base_port + n - 1)) ;;
  esac
  # A faulty store starts empty: a database from an earlier start would name paths the
  # fresh tmpfs does not hold.
  if [ "$n" = full ] || [ "$n" = read-only ]; then
    running "$dir/sshd.pid" || rm -rf -- "$dir/nix"
  fi
  mkdir -p "$dir/nix/var/nix/daemon-socket" "$dir/nix/store"
  # As Debian's nix-bin sets up the real one: only nix-users reach the daemon.
  getent group nix-users >/dev/null || groupadd --system nix-users
  chgrp nix-users "$dir/nix/var/nix/daemon-socket"
  chmod 770 "$dir/nix/var/nix/daemon-socket"
  trusted=root
  [ "$n" = 2 ] || trusted="root $user"
  {
    cat /etc/nix/nix.conf 2>/dev/null || true
    printf '%s\n' \
      "# pikaci testbed host $n: a store of its own" \
      "experimental-features = nix-command flakes" \
      "substituters =" \
      "trusted-users = $trusted"
  } > "$dir/nix.conf"
  sed -e "s|^Port .*|Port $port|" -e "s|^PidFile .*|PidFile $dir/sshd.pid|" \
    "$ssh_dir/sshd_config" > "$dir/sshd_config"
  if ! running "$dir/sshd.pid"; then
    stop_pid "$dir/nix-daemon.pid"
    # The namespace lives as long as the sshd and the daemon in it.
    # shellcheck disable=SC2016 # expanded by the inner bash
    unshare -m --propagation private bash -c '
      set -e
      mount --bind "$1/nix" /nix
      $2
      mount --bind "$1/nix.conf" /etc/nix/nix.conf
      # Its settings are the host'"'"'s nix.conf only, not the caller'"'"'s NIX_CONFIG.
      env -u NIX_CONFIG setsid nix-daemon </dev/null >>"$1/nix-daemon.log" 2>&1 &
      echo $! > "$1/nix-daemon.pid"
      /usr/sbin/sshd -f "$1/sshd_config" -E "$1/sshd.log"
    ' pikaci-testbed-host "$dir" "$(store_mount "$n")"
    for _ in $(seq 50); do
      [ -f "$dir/sshd.pid" ] && [ -S "$dir/nix/var/nix/daemon-socket/socket" ] && break
      sleep 0.1
    done
    running "$dir/sshd.pid" || { echo "testbed: host $n's sshd did not start (see $dir/sshd.log)" >&2; exit 1; }
  fi
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$ssh_dir/host_key.pub")" >> "$hosts_dir/known_hosts.part"
  case $n in
    full | read-only) fault_urls+=("ssh://$(id -un)@127.0.0.1:$port") ;;
    *) urls+=("ssh://$(id -un)@127.0.0.1:$port") ;;
  esac
done
chmod 644 "$hosts_dir/known_hosts.part"
mv "$hosts_dir/known_hosts.part" "$hosts_dir/known_hosts"

cat <<VARS
export PIKACI_TEST_OWN_STORE_HOSTS="${urls[*]}"
export PIKACI_TEST_FAULTY_STORE_HOSTS="${fault_urls[*]}"
export PIKACI_TEST_OWN_STORE_KNOWN_HOSTS=$hosts_dir/known_hosts
VARS
