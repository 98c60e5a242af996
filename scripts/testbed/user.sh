#!/usr/bin/env bash
# The unprivileged test user: pikaci's integration tests run as it, as people run pikaci.
# Run as root after sshd.sh and incus.sh (it needs their sshd and incusd). Idempotent and
# additive: it never stops or restarts a service; what it starts, `user.sh stop` stops.
#
#   eval "$(bash scripts/testbed/user.sh)"      # set up; prints PIKACI_TEST_USER_ENV
#   bash scripts/testbed/user.sh run -- CMD...  # CMD as the user, with its test variables
#   bash scripts/testbed/user.sh stop           # stop the nix-daemon if this script started it
#
# What the user is, and why:
# - uid 1000 and gid 100 (`users`), like the first normal user of a NixOS machine; when
#   another account already holds uid 1000, the next free uid from 1000 (the gid is what
#   the guest profiles must cope with, issue 13). A home of its own, nothing else.
# - Nix through a nix-daemon, as on multi-user installs: the user is in `nix-users`
#   (Debian's nix-bin lets only that group reach /nix/var/nix/daemon-socket) and gets
#   NIX_REMOTE=daemon; it never writes the store itself. There is no systemd here, so the
#   daemon is started by hand (like incusd) when none runs, with this machine's Nix
#   settings (no binary cache: an untrusted client cannot turn substituters off itself).
# - Incus through the `incus-admin` group, which owns incusd's socket (incus.sh starts
#   incusd with `--group incus-admin`; a daemon started earlier with another group gets
#   its socket's group changed, the daemon itself is left alone).
# - SSH with a key of its own in ~/.ssh, authorised in its ~/.ssh/authorized_keys, which
#   the testbed sshd reads (sshd.sh), and the sshd's host key in ~/.ssh/known_hosts. The
#   tests log in as this user, so the remote side is unprivileged too.
# - Not in `kvm`: the testbed's microVMs use TCG, and a missing KVM permission must show
#   as an error that says how to grant it.
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
user="${PIKACI_TEST_USER:-pikaci-test}"
nix_config=$'experimental-features = nix-command flakes\nsubstituters ='

if [ "${1:-}" = stop ]; then
  if [ -f "$root/nix-daemon.pid" ]; then
    kill "$(cat "$root/nix-daemon.pid")" 2>/dev/null || true
    rm -f "$root/nix-daemon.pid"
  fi
  exit 0
fi

# A Rust toolchain, as a developer has one: this machine's, read-only (its real `cargo`
# and `rustc`, not rustup's proxies, which would look for the user's own rustup home).
# Host jobs in the tests run `cargo test` as the user.
toolchain_bin() {
  local sysroot
  sysroot=$(rustc --print sysroot 2>/dev/null) || return 0
  printf '%s/bin' "$sysroot"
}

# The variables the tests read, as the user sees them.
user_env() {
  local home port
  home=$(getent passwd "$user" | cut -d: -f6)
  port=${PIKACI_TEST_SSH_HOST##*:}
  printf '%s\n' \
    "HOME=$home" "USER=$user" "LOGNAME=$user" "SHELL=/bin/bash" \
    "PATH=/usr/local/bin:/usr/bin:/bin:$(toolchain_bin)" \
    "NIX_REMOTE=daemon" "NIX_CONFIG=$nix_config" \
    "PIKACI_TEST_USER=$user" \
    "PIKACI_TEST_SSH_HOST=ssh://$user@127.0.0.1:$port" \
    "PIKACI_TEST_SSH_KEY=$home/.ssh/id_ed25519" \
    "PIKACI_TEST_SSH_KNOWN_HOSTS=$home/.ssh/known_hosts"
  # hosts.sh's hosts with their own store, logged into as the user.
  if [ -n "${PIKACI_TEST_OWN_STORE_HOSTS:-}" ]; then
    printf 'PIKACI_TEST_OWN_STORE_HOSTS=%s\n' \
      "$(printf '%s' "$PIKACI_TEST_OWN_STORE_HOSTS" | sed "s|ssh://[^@]*@|ssh://$user@|g")"
  fi
  if [ -n "${PIKACI_TEST_FAULTY_STORE_HOSTS:-}" ]; then
    printf 'PIKACI_TEST_FAULTY_STORE_HOSTS=%s\n' \
      "$(printf '%s' "$PIKACI_TEST_FAULTY_STORE_HOSTS" | sed "s|ssh://[^@]*@|ssh://$user@|g")"
  fi
}

if [ "${1:-}" = run ]; then
  shift
  [ "${1:-}" = -- ] && shift
  : "${PIKACI_TEST_SSH_HOST:?run sshd.sh first (eval its output)}"
  # The caller's other test variables (testbed paths, CI) pass through; the ones that
  # say who the user is and how it reaches Nix and SSH are the user's own.
  passed=()
  while IFS= read -r name; do
    passed+=("$name=${!name}")
  done < <(compgen -e | grep -E '^(PIKACI_TEST_|CI$|RUST_BACKTRACE$|RUST_TEST_THREADS$|INSTA_)' || true)
  mapfile -t own < <(user_env)
  exec setpriv --reuid="$user" --regid=users --init-groups \
    env -i "${passed[@]}" "${own[@]}" "$@"
fi

: "${PIKACI_TEST_SSH_HOST:?run sshd.sh first (eval its output)}"

# The user.
if ! id -u "$user" >/dev/null 2>&1; then
  uid=1000
  while getent passwd "$uid" >/dev/null; do uid=$((uid + 1)); done
  [ "$uid" = 1000 ] || echo "testbed: uid 1000 is taken; $user gets uid $uid" >&2
  useradd --create-home --uid "$uid" --gid users --shell /bin/bash "$user"
fi
# No password, but not locked: sshd without PAM refuses key logins to a locked account
# (useradd's `!`).
[ "$(getent shadow "$user" | cut -d: -f2)" = '*' ] || usermod -p '*' "$user"
for group in nix-users incus-admin; do
  getent group "$group" >/dev/null || groupadd --system "$group"
  id -nG "$user" | tr ' ' '\n' | grep -qx "$group" || usermod -aG "$group" "$user"
done

# The toolchain's directories must be reachable (rustup puts it under root's 0700 home):
# search permission only, on each directory above it; nothing is listed or written.
dir=$(toolchain_bin)
while [ -n "$dir" ] && [ "$dir" != / ]; do
  [ -d "$dir" ] && chmod o+x "$dir"
  dir=$(dirname "$dir")
done

# `backends.incus.sudo = true`, as on machines where only root may reach incusd: sudo
# runs exactly `incus` as root for this user, without a password (pikaci calls `sudo -n`).
if ! command -v sudo >/dev/null; then
  echo "testbed: installing sudo" >&2
  # Waits for dpkg's lock: incus-nix.sh may be installing at the same time (test.sh).
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq sudo >/dev/null
fi
printf '%s ALL=(root) NOPASSWD: %s\n' "$user" "$(command -v incus)" > /etc/sudoers.d/pikaci-test
chmod 0440 /etc/sudoers.d/pikaci-test

# The nix-daemon, when none answers on this machine's socket (hosts.sh runs daemons of
# its own, in their own mount namespaces, which a process search would find).
if ! NIX_CONFIG="$nix_config" nix store ping --store daemon >/dev/null 2>&1; then
  echo "testbed: starting nix-daemon" >&2
  NIX_CONFIG="$nix_config" setsid nix-daemon </dev/null >>"$root/nix-daemon.log" 2>&1 &
  echo $! > "$root/nix-daemon.pid"
fi
for _ in $(seq 100); do
  [ -S /nix/var/nix/daemon-socket/socket ] && break
  sleep 0.1
done
[ -S /nix/var/nix/daemon-socket/socket ] || { echo "testbed: no nix-daemon socket" >&2; exit 1; }

# Incus: the socket belongs to incus-admin (an incusd started with `--group root` keeps
# running; only its socket's group changes).
socket=/var/lib/incus/unix.socket
if [ -S "$socket" ] && [ "$(stat -c %G "$socket")" != incus-admin ]; then
  chgrp incus-admin "$socket"
fi

# SSH: the user's own key, authorised for the user only.
home=$(getent passwd "$user" | cut -d: -f6)
as_user() { setpriv --reuid="$user" --regid=users --init-groups "$@"; }
as_user mkdir -p "$home/.ssh"
chmod 700 "$home/.ssh"
[ -f "$home/.ssh/id_ed25519" ] || as_user ssh-keygen -q -t ed25519 -N '' -f "$home/.ssh/id_ed25519"
as_user cp "$home/.ssh/id_ed25519.pub" "$home/.ssh/authorized_keys"
cp "$root/ssh/known_hosts" "$home/.ssh/known_hosts"
chown "$user:users" "$home/.ssh/known_hosts"

echo "export PIKACI_TEST_USER=$user"
