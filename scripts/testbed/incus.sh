#!/usr/bin/env bash
# The Incus testbed: incusd from bookworm-backports, started by hand (no systemd on this
# machine kind), a `dir` storage pool, and an offline-built container image `pikaci/test`
# (busybox, a static bash and the static pikaci-guest of this checkout), kept as a
# directory for `pikaci image import`. Containers
# only: VMs need vhost_vsock, which these machines lack. Cached under $PIKACI_TESTBED.
#
#   eval "$(bash scripts/testbed/incus.sh)"   # set up (idempotent); prints variables
#   bash scripts/testbed/incus.sh smoke-test   # run one request in a container
#   bash scripts/testbed/incus.sh stop         # stop incusd
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
dir="$root/incus"
alias_name="pikaci/test"
mkdir -p "$dir"

if [ "${1:-}" = stop ]; then
  if [ -f "$dir/incusd.pid" ]; then
    kill "$(cat "$dir/incusd.pid")" 2>/dev/null || true
    rm -f "$dir/incusd.pid"
  fi
  exit 0
fi

if ! command -v incus >/dev/null; then
  echo "testbed: installing incus from bookworm-backports" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The machine's own Debian mirror and key (its first deb822 source), for backports.
    own=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    uri=$(printf '%s\n' "$own" | sed -n 's/^URIs: *\([^ ]*\).*/\1/p' | head -n 1)
    key=$(printf '%s\n' "$own" | sed -n 's/^Signed-By: *//p' | head -n 1)
    : "${uri:?testbed: no deb822 source in /etc/apt/sources.list.d to take the mirror from}"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
      "$uri" "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" \
      > /etc/apt/sources.list.d/pikaci-backports.sources
  fi
  apt-get update -qq
  # No service starts at install time; incusd is started below.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq -t bookworm-backports incus >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
if [ ! -x /bin/busybox ] || [ ! -x /bin/bash-static ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq busybox-static bash-static >/dev/null
fi

if ! incus info >/dev/null 2>&1; then
  echo "testbed: starting incusd" >&2
  # Its socket belongs to incus-admin: members (the test user of user.sh) reach Incus.
  getent group incus-admin >/dev/null || groupadd --system incus-admin
  setsid /usr/libexec/incus/incusd --group incus-admin --logfile "$dir/incusd.log" \
    </dev/null >/dev/null 2>&1 &
  echo $! > "$dir/incusd.pid"
  incus admin waitready --timeout 60 >&2
fi
incus storage show default >/dev/null 2>&1 || incus storage create default dir >&2
incus profile device show default 2>/dev/null | grep -q '^root:' ||
  incus profile device add default root disk path=/ pool=default >&2

# The agent, static, as in the microVM testbed (the same build, so cargo reuses it).
repo="$(cd "$(dirname "$0")/../.." && pwd)"
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin pikaci-guest)
guest_bin="$repo/target/static/x86_64-unknown-linux-gnu/release/pikaci-guest"

# The image: rebuilt and re-imported only when its contents changed.
stamp=$(cat "$0" /bin/busybox /bin/bash-static "$guest_bin" | sha256sum | cut -c1-16)
# The image directory (metadata.tar + rootfs.tar, the layout `pikaci image import` takes)
# is kept for the tests; it is rebuilt and re-imported only when its contents changed.
image="$dir/image"
if [ "$(cat "$dir/image.stamp" 2>/dev/null)" != "$stamp" ] || ! incus image show "$alias_name" >/dev/null 2>&1; then
  echo "testbed: building the image $alias_name" >&2
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  rootfs="$tmp/rootfs"
  mkdir -p "$rootfs"/{bin,sbin,etc,tmp,root,home/pikaci,usr/local/bin,run,proc,sys,dev,workspace,artifacts}
  chmod 755 "$rootfs"
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  cp /bin/bash-static "$rootfs/bin/bash"
  for applet in $(/bin/busybox --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  ln -s /bin/busybox "$rootfs/sbin/init"
  cp "$guest_bin" "$rootfs/usr/local/bin/pikaci-guest"
  printf 'root:x:0:0:root:/root:/bin/sh\npikaci:x:1000:1000:pikaci:/home/pikaci:/bin/sh\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\npikaci:x:1000:\n' > "$rootfs/etc/group"
  # busybox init: no inittab means a console shell; a minimal one keeps it idle. Nothing
  # is mounted over /run: pikaci writes the request there as soon as `start` returns.
  printf '::respawn:/bin/sleep 3600\n' > "$rootfs/etc/inittab"
  chown 1000:1000 "$rootfs/home/pikaci"
  printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: pikaci testbed container\n' \
    "$(date +%s)" > "$tmp/metadata.yaml"
  mkdir "$tmp/image"
  tar -C "$tmp" -cf "$tmp/image/metadata.tar" metadata.yaml
  tar -C "$rootfs" --numeric-owner -cf "$tmp/image/rootfs.tar" .
  rm -rf "$image"
  mv "$tmp/image" "$image"
  old=$(incus image list "$alias_name" --format csv -c f 2>/dev/null | head -1 || true)
  incus image alias delete "$alias_name" >/dev/null 2>&1 || true
  incus image import "$image/metadata.tar" "$image/rootfs.tar" --alias "$alias_name" >&2
  if [ -n "$old" ]; then incus image delete "$old" >/dev/null 2>&1 || true; fi
  echo "$stamp" > "$dir/image.stamp"
fi

if [ "${1:-}" = smoke-test ]; then
  name="pikaci-smoke-$$"
  work=$(mktemp -d)
  trap 'incus delete --force "$name" >/dev/null 2>&1; rm -rf "$work"' EXIT
  echo "from the host" > "$work/file.txt"
  chmod 755 "$work" # the container's users map to other host ids: like a snapshot, world-readable
  incus launch "$alias_name" "$name" >&2
  incus config device add "$name" ws disk source="$work" path=/workspace readonly=true >/dev/null
  printf '{"schema_version":1,"job_id":"smoke","command":"id -un; cat file.txt; touch x || echo read-only","timeout_secs":30,"run_as_root":false,"workdir":"/workspace","env":{},"path":[],"writable_workspace":false}' |
    incus exec "$name" -- sh -c 'umask 077; mkdir -p /run/pikaci; cat > /run/pikaci/request.json'
  incus exec "$name" -- /usr/local/bin/pikaci-guest run /run/pikaci/request.json >&2 || true
  incus file pull "$name/artifacts/result.json" "$work/result.json"
  if grep -q '"status": "passed"' "$work/result.json"; then
    echo "smoke-test: the agent ran a job in an Incus container" >&2
  else
    echo "smoke-test: FAILED" >&2
    cat "$work/result.json" >&2
    exit 1
  fi
  exit 0
fi

cat <<VARS
export PIKACI_TEST_INCUS_IMAGE=$alias_name
export PIKACI_TEST_INCUS_IMAGE_DIR=$image
VARS
