#!/usr/bin/env bash
# The microVM testbed: qemu (TCG here; nested KVM does not work on this machine kind),
# the Rust virtiofsd, a Debian cloud kernel, a busybox initramfs that loads the virtio
# and virtiofs modules, and the fixture runner flake (testbed/runner-flake.nix) built
# around a static `pikaci-guest` from this checkout. Everything is cached under
# $PIKACI_TESTBED (default /var/tmp/pikaci-testbed) and reused. Prints the variables
# tests read, for `eval`.
#
#   eval "$(bash scripts/testbed/microvm.sh)"         # set up (idempotent)
#   bash scripts/testbed/microvm.sh boot-test          # boot a guest that writes through virtiofs
set -euo pipefail

root="${PIKACI_TESTBED:-/var/tmp/pikaci-testbed}"
mkdir -p "$root"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /bin/bash-static ] || need+=(bash-static)
[ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
[ -f /usr/include/cap-ng.h ] || need+=(libcap-ng-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "testbed: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# virtiofsd: the Rust one microvm.nix uses (about 80 s to build on 2 cores, once).
virtiofsd="$root/virtiofsd/bin/virtiofsd"
if [ ! -x "$virtiofsd" ]; then
  echo "testbed: building virtiofsd" >&2
  cargo install virtiofsd --locked --quiet --root "$root/virtiofsd" >&2
fi
# pikaci looks for `virtiofsd` on the host's PATH unless configured otherwise.
command -v virtiofsd >/dev/null || ln -sf "$virtiofsd" /usr/local/bin/virtiofsd

# Kernel: the Debian cloud kernel; virtio and virtiofs are modules in it.
kdir="$root/kernel"
if [ ! -f "$kdir/vmlinuz" ]; then
  echo "testbed: fetching the kernel" >&2
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's download user must be able to write there
  (cd "$tmp" && apt-get download -qq "$pkg" && dpkg-deb -x ./*.deb x)
  version=${pkg#linux-image-}
  mkdir -p "$kdir/modules"
  cp "$tmp/x/boot/vmlinuz-$version" "$kdir/vmlinuz.part"
  # The modules the initramfs loads, in dependency order.
  for m in virtio_ring virtio virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs; do
    f=$(find "$tmp/x/lib/modules/$version" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "testbed: module $m not found in $pkg" >&2; exit 1; }
    cp "$f" "$kdir/modules/"
  done
  (cd "$kdir/modules" && for f in *.ko.xz; do [ -e "$f" ] && xz -d "$f"; done; true)
  ls "$kdir/modules" > "$kdir/modules.list"
  rm -rf "$tmp"
  mv "$kdir/vmlinuz.part" "$kdir/vmlinuz"
fi

# Initramfs: busybox, the modules, and an init that mounts the `artifacts` share, runs
# /init.d/job if present (the boot test writes a file), and powers off.
initrd="$root/initrd-boot-test.cpio.gz"
if [ ! -f "$initrd" ]; then
  tmp=$(mktemp -d)
  mkdir -p "$tmp"/{bin,dev,proc,sys,mnt/artifacts,lib/modules}
  cp /bin/busybox "$tmp/bin/busybox"
  for applet in sh mount insmod mkdir echo poweroff sync cat; do ln -s busybox "$tmp/bin/$applet"; done
  cp "$kdir"/modules/*.ko "$tmp/lib/modules/"
  cat > "$tmp/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
mount -t virtiofs artifacts /mnt/artifacts && echo "written by the guest" > /mnt/artifacts/hello.txt
sync
poweroff -f
INIT
  chmod +x "$tmp/init"
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.part"
  mv "$initrd.part" "$initrd"
  rm -rf "$tmp"
fi

if [ "${1:-}" = boot-test ]; then
  work=$(mktemp -d)
  mkdir "$work/artifacts"
  "$virtiofsd" --socket-path="$work/artifacts.sock" --shared-dir="$work/artifacts" --sandbox=none --cache=never >"$work/virtiofsd.log" 2>&1 &
  vpid=$!
  trap 'kill $vpid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 100); do [ -S "$work/artifacts.sock" ] && break; sleep 0.05; done
  timeout 60 qemu-system-x86_64 -M microvm,accel=tcg,pit=on,pic=on,rtc=on -m 256 -nographic -nodefaults \
    -serial "file:$work/serial.log" -no-reboot -kernel "$kdir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet tsc_early_khz=2000000" \
    -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
    -chardev "socket,id=fs0,path=$work/artifacts.sock" -device vhost-user-fs-device,chardev=fs0,tag=artifacts
  if [ "$(cat "$work/artifacts/hello.txt" 2>/dev/null)" = "written by the guest" ]; then
    echo "boot-test: the guest wrote through virtiofs and powered off" >&2
  else
    echo "boot-test: FAILED; serial log:" >&2
    cat "$work/serial.log" >&2
    exit 1
  fi
  exit 0
fi

# The agent, static so it runs in the busybox initramfs. Its own target dir: other
# RUSTFLAGS would otherwise make cargo rebuild the normal target dir each time.
repo="$(cd "$(dirname "$0")/../.." && pwd)"
echo "testbed: building the static pikaci-guest" >&2
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin pikaci-guest)
guest_bin="$repo/target/static/x86_64-unknown-linux-gnu/release/pikaci-guest"

# The guest's initramfs: busybox, a static bash (jobs run under bash), the modules, the
# agent, and testbed/guest-init as /init. Rebuilt only when one of those changed.
stamp=$(cat "$0" /bin/busybox /bin/bash-static "$kdir"/modules/*.ko "$guest_bin" "$repo/testbed/guest-init" | sha256sum | cut -c1-16)
flake="$root/runner"
if [ "$(cat "$flake/stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "testbed: assembling the runner flake" >&2
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # the root of the guest: the job user must be able to traverse it
  mkdir -p "$tmp"/{bin,dev,proc,sys,etc,tmp,lib/modules,workspace,artifacts,run/pikaci,nix/store,home/pikaci}
  cp /bin/busybox "$tmp/bin/busybox"
  cp /bin/bash-static "$tmp/bin/bash"
  # Every busybox applet (sh, coreutils, grep, sed, awk, tee, ...) for the jobs.
  for applet in $(/bin/busybox --list); do
    [ -e "$tmp/bin/$applet" ] || ln -s busybox "$tmp/bin/$applet"
  done
  cp "$guest_bin" "$tmp/bin/pikaci-guest"
  cp "$kdir"/modules/*.ko "$tmp/lib/modules/"
  cp "$repo/testbed/guest-init" "$tmp/init"
  chmod 755 "$tmp/init"
  # The job user; 1000 rather than the host user's id, which is root on CI machines.
  printf 'root:x:0:0:root:/root:/bin/sh\npikaci:x:1000:1000:pikaci:/home/pikaci:/bin/sh\n' > "$tmp/etc/passwd"
  printf 'root:x:0:\npikaci:x:1000:\n' > "$tmp/etc/group"
  mkdir -p "$flake.part"
  (cd "$tmp" && find . | cpio -o -H newc --quiet -R +0:+0 | gzip -1) > "$flake.part/initrd"
  cp "$kdir/vmlinuz" "$flake.part/vmlinuz"
  cp "$repo/testbed/runner-flake.nix" "$flake.part/flake.nix"
  echo "$stamp" > "$flake.part/stamp"
  rm -rf "$tmp" "$flake"
  mv "$flake.part" "$flake"
fi

cat <<VARS
export PIKACI_TEST_VIRTIOFSD=$virtiofsd
export PIKACI_TEST_KERNEL=$kdir/vmlinuz
export PIKACI_TEST_MODULES=$kdir/modules
export PIKACI_TEST_RUNNER=path:$flake#runner
VARS
