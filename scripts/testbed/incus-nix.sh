#!/usr/bin/env bash
# A second Incus test image, one that carries a Nix store of its own, as NixOS images
# and Debian images with `nix-bin` do: a real Debian bookworm root made by debootstrap
# (minbase plus Debian's nix-bin; libdbi-perl by name, as debootstrap does not resolve
# the virtual perl-dbdabi-94 that nix-bin needs), the static pikaci-guest of this checkout at
# /usr/local/bin, a user `pikaci` with uid 1000, and an /sbin/init that only sleeps.
# Imported as `pikaci-nix/test` (not under `pikaci/test`: `incus image list ALIAS`
# filters by prefix, and incus.sh deletes what that lists). Run as root after incus.sh.
#
# The Debian root (about 45 s of debootstrap) is cached under $PIKACI_TESTBED/incus-nix
# and made again only when this script changes; the image is re-imported only when the
# agent changes too. scripts/test.sh starts this in the background while it lints.
#
#   eval "$(bash scripts/testbed/incus-nix.sh)"   # set up (idempotent); prints variables
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
dir="$root/incus-nix"
alias_name="pikaci-nix/test"
mkdir -p "$dir"

if ! incus info >/dev/null 2>&1; then
  echo "testbed: run incus.sh first (incusd must run)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  # Waits for dpkg's lock: test.sh runs this in the background while user.sh installs.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null
fi

repo="$(cd "$(dirname "$0")/../.." && pwd)"
# The same static agent as incus.sh builds (cargo finds it built).
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin pikaci-guest)
guest_bin="$repo/target/static/x86_64-unknown-linux-gnu/release/pikaci-guest"

# Removes a root debootstrap made, never what is mounted in it: a failed debootstrap can
# leave the host's /proc (or more) mounted there.
remove_root() {
  { grep -F " $1/" /proc/mounts || true; } | cut -d' ' -f2 | sort -r | xargs -r -n 1 umount -l
  rm -rf --one-file-system "$1"
}

# The Debian root: the machine's own Debian mirror (its first deb822 source).
base_stamp=$(sha256sum "$0" | cut -c1-16)
base="$dir/debian"
if [ "$(cat "$dir/debian.stamp" 2>/dev/null)" != "$base_stamp" ]; then
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
  : "${mirror:?testbed: no deb822 source in /etc/apt/sources.list.d to take the mirror from}"
  echo "testbed: debootstrap of a Debian root with nix-bin (about a minute)" >&2
  remove_root "$base"
  remove_root "$base.part"
  debootstrap --variant=minbase --include=nix-bin,libdbi-perl bookworm "$base.part" "$mirror" \
    > "$dir/debootstrap.log" 2>&1 ||
    { echo "testbed: debootstrap failed, see $dir/debootstrap.log" >&2; exit 1; }
  chroot "$base.part" useradd -m -u 1000 -U -s /bin/sh pikaci
  # A container needs an init that stays; nothing is mounted over /run.
  printf '#!/bin/sh\nexec sleep infinity\n' > "$base.part/sbin/init"
  chmod 755 "$base.part/sbin/init"
  mkdir -p "$base.part/workspace" "$base.part/artifacts"
  # The image's own store is real: Nix's database made, so `nix-store` works in it.
  chroot "$base.part" nix-store --init
  # A path of the image's own, which the tests look for: mounting a store over the
  # image's would hide it.
  echo "the image's own store path" > "$base.part/tmp/pikaci-image-own"
  chroot "$base.part" nix-store --add /tmp/pikaci-image-own >/dev/null
  rm "$base.part/tmp/pikaci-image-own"
  rm -rf "$base.part/var/cache/apt/archives"/*.deb "$base.part/var/lib/apt/lists"/*
  mv "$base.part" "$base"
  echo "$base_stamp" > "$dir/debian.stamp"
fi

stamp=$(cat "$dir/debian.stamp" "$guest_bin" | sha256sum | cut -c1-16)
image="$dir/image"
if [ "$(cat "$dir/image.stamp" 2>/dev/null)" != "$stamp" ] || ! incus image show "$alias_name" >/dev/null 2>&1; then
  echo "testbed: building the image $alias_name" >&2
  install -m 755 "$guest_bin" "$base/usr/local/bin/pikaci-guest"
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  printf 'architecture: x86_64\ncreation_date: %s\nproperties:\n  description: pikaci testbed container with its own Nix store\n' \
    "$(date +%s)" > "$tmp/metadata.yaml"
  mkdir "$tmp/image"
  tar -C "$tmp" -cf "$tmp/image/metadata.tar" metadata.yaml
  tar -C "$base" --numeric-owner -cf "$tmp/image/rootfs.tar" .
  rm -rf "$image"
  mv "$tmp/image" "$image"
  old=$(incus query "/1.0/images/aliases/$alias_name" 2>/dev/null |
    sed -n 's/.*"target": *"\([0-9a-f]*\)".*/\1/p' || true)
  incus image alias delete "$alias_name" >/dev/null 2>&1 || true
  incus image import "$image/metadata.tar" "$image/rootfs.tar" --alias "$alias_name" >&2
  if [ -n "$old" ]; then incus image delete "$old" >/dev/null 2>&1 || true; fi
  echo "$stamp" > "$dir/image.stamp"
fi

cat <<VARS
export PIKACI_TEST_INCUS_NIX_IMAGE=$alias_name
VARS
