#!/usr/bin/env bash
# An Incus server reached only as an `incus remote`, over its HTTPS API on loopback, for
# `backends.incus.remote` and (as a one-member cluster) `--target`. Run as root after
# incus.sh (its image directory is imported here too) and user.sh (the test user gets
# the remote as well).
#
# It is a second incusd with a state dir of its own, not the testbed's shared one:
# `incus cluster enable` cannot be undone, and it would turn the daemon every other Incus
# test uses into a cluster while those tests run. This one listens on 127.0.0.1:PORT
# only (its socket stays root's), is the cluster member `pikaci-member1`, and trusts the
# client certificates of root and the test user, each added with a one-time token
# (`incus config trust add`, then `incus remote add NAME ADDR --token T
# --accept-certificate`, which needs no answer at a prompt).
#
#   eval "$(bash scripts/testbed/incus-remote.sh)"   # set up (idempotent); prints variables
#   eval "$(bash scripts/testbed/incus-remote.sh nix-image)"  # after incus-nix.sh: its
#                                                     # image, with a Nix store, here too
#   bash scripts/testbed/incus-remote.sh stop         # stop this incusd
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
dir="$root/incus-remote"
port="${PIKACI_TEST_INCUS_REMOTE_PORT:-18443}"
remote=pikaci-testbed
member=pikaci-member1
user="${PIKACI_TEST_USER:-pikaci-test}"
alias_name="pikaci/test"
mkdir -p "$dir/lib"

# This daemon's own CLI: its socket under its state dir.
server() { INCUS_DIR="$dir/lib" incus "$@"; }

if [ "${1:-}" = stop ]; then
  if [ -f "$dir/incusd.pid" ]; then
    kill "$(cat "$dir/incusd.pid")" 2>/dev/null || true
    rm -f "$dir/incusd.pid"
  fi
  exit 0
fi

image="$root/incus/image"
[ -f "$image/rootfs.tar" ] || { echo "testbed: run incus.sh first (its image)" >&2; exit 1; }

if ! server info >/dev/null 2>&1; then
  echo "testbed: starting the remote incusd on 127.0.0.1:$port" >&2
  INCUS_DIR="$dir/lib" setsid /usr/libexec/incus/incusd --group root \
    --logfile "$dir/incusd.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$dir/incusd.pid"
  server admin waitready --timeout 60 >&2
fi
server storage show default >/dev/null 2>&1 || server storage create default dir >&2
server profile device show default 2>/dev/null | grep -q '^root:' ||
  server profile device add default root disk path=/ pool=default >&2
[ "$(server config get core.https_address)" = "127.0.0.1:$port" ] ||
  server config set core.https_address "127.0.0.1:$port"
server cluster list >/dev/null 2>&1 || server cluster enable "$member" >&2

# An image of the shared daemon's testbed (its directory and stamp), imported here too;
# again only when that script rebuilt it.
import_image() {
  local alias_name=$1 image=$2 stamp
  stamp=$(cat "$3")
  local mine
  mine="$dir/$(printf '%s' "$alias_name" | tr / -).stamp"
  if [ "$(cat "$mine" 2>/dev/null)" != "$stamp" ] || ! server image show "$alias_name" >/dev/null 2>&1; then
    echo "testbed: importing $alias_name into the remote incusd" >&2
    local old fingerprint
    old=$(server query "/1.0/images/aliases/$alias_name" 2>/dev/null |
      sed -n 's/.*"target": *"\([0-9a-f]*\)".*/\1/p' || true)
    # Incus's fingerprint of a split image: the SHA-256 of metadata, then rootfs.
    fingerprint=$(cat "$image/metadata.tar" "$image/rootfs.tar" | sha256sum | cut -d' ' -f1)
    server image alias delete "$alias_name" >/dev/null 2>&1 || true
    if server image show "$fingerprint" >/dev/null 2>&1; then
      server image alias create "$alias_name" "$fingerprint" >&2
    else
      server image import "$image/metadata.tar" "$image/rootfs.tar" --alias "$alias_name" >&2
    fi
    if [ -n "$old" ] && [ "$old" != "$fingerprint" ]; then
      server image delete "$old" >/dev/null 2>&1 || true
    fi
    echo "$stamp" > "$mine"
  fi
}

if [ "${1:-}" = nix-image ]; then
  nix_image="$root/incus-nix/image"
  [ -f "$nix_image/rootfs.tar" ] || { echo "testbed: run incus-nix.sh first (its image)" >&2; exit 1; }
  import_image pikaci-nix/test "$nix_image" "$root/incus-nix/image.stamp"
  echo "export PIKACI_TEST_INCUS_REMOTE_NIX_IMAGE=pikaci-nix/test"
  exit 0
fi

import_image "$alias_name" "$image" "$root/incus/image.stamp"

# The remote in one account's client config, trusted: kept when the server answers it as
# trusted, else (a new server, a new certificate) removed and added with a fresh token.
add_remote() {
  local who=$1
  shift
  if "$@" incus query "$remote:/1.0" 2>/dev/null | grep -q '"auth": "trusted"'; then
    return 0
  fi
  "$@" incus remote remove "$remote" >/dev/null 2>&1 || true
  local token
  token=$(server config trust add "pikaci-$who-$(date +%s)-$$" --quiet)
  "$@" incus remote add "$remote" "127.0.0.1:$port" --token "$token" --accept-certificate >&2
}
add_remote root env
home=$(getent passwd "$user" | cut -d: -f6)
add_remote "$user" setpriv --reuid="$user" --regid=users --init-groups env HOME="$home"

cat <<VARS
export PIKACI_TEST_INCUS_REMOTE=$remote
export PIKACI_TEST_INCUS_MEMBER=$member
VARS
