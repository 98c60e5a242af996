#!/usr/bin/env bash
# A loopback sshd for pikaci's SSH tests: its own port, host key and client key under
# $PIKACI_TESTBED (default /var/tmp/pikaci-testbed/ssh). Idempotent: an sshd it started
# earlier is reused. Prints the variables the tests read, for `eval`. Root logs in with the
# testbed's client key; other users (the test user of user.sh) with the keys in their own
# ~/.ssh/authorized_keys, as on any host.
# `sshd.sh stop` stops it.
set -euo pipefail

dir="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}/ssh"
port="${PIKACI_TEST_SSH_PORT:-22022}"

if [ "${1:-}" = stop ]; then
  if [ -f "$dir/sshd.pid" ]; then
    kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    rm -f "$dir/sshd.pid"
  fi
  exit 0
fi

if [ ! -x /usr/sbin/sshd ]; then
  echo "testbed: installing openssh-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian would start its own sshd on port 22; policy-rc.d stops that.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq openssh-server >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$dir" /run/sshd
chmod 700 "$dir"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"

cat > "$dir/sshd_config" <<CONFIG
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys .ssh/authorized_keys
PidFile $dir/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxSessions 64
MaxStartups 64:30:128
LogLevel ERROR
CONFIG

if ! { [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }; then
  /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  for _ in $(seq 50); do
    [ -f "$dir/sshd.pid" ] && break
    sleep 0.1
  done
fi

cat <<VARS
export PIKACI_TEST_SSH_HOST=ssh://$(id -un)@127.0.0.1:$port
export PIKACI_TEST_SSH_KEY=$dir/client_key
export PIKACI_TEST_SSH_KNOWN_HOSTS=$dir/known_hosts
VARS
