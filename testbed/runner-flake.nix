{
  # A microVM runner for pikaci's tests that follows the microvm.nix runner contract
  # without nixpkgs (which cannot be fetched on the test machines): `bin/microvm-run`,
  # run from a runtime directory, and `share/microvm/virtiofs/<tag>/socket` naming the
  # socket (relative to that directory) that pikaci's virtiofsd for <tag> listens on.
  # The kernel and initramfs sit next to this file; scripts/testbed/microvm.sh puts them
  # there. qemu comes from the host (the test machines build without a sandbox).
  description = "pikaci testbed: microVM runner fixture";

  outputs = { self }: {
    packages.x86_64-linux.runner = derivation {
      name = "pikaci-testbed-runner";
      system = "x86_64-linux";
      builder = "/bin/sh";
      kernel = ./vmlinuz;
      initrd = ./initrd;
      tags = "workspace artifacts request ro-store";
      args = [
        "-c"
        ''
          set -e
          /bin/mkdir -p $out/bin
          devices=""
          i=0
          for tag in $tags; do
            /bin/mkdir -p $out/share/microvm/virtiofs/$tag
            echo "$tag.sock" > $out/share/microvm/virtiofs/$tag/socket
            devices="$devices -chardev socket,id=fs$i,path=$tag.sock -device vhost-user-fs-device,chardev=fs$i,tag=$tag"
            i=$((i + 1))
          done
          {
            echo '#!/bin/sh'
            echo "# Serial console on stdout; the guest powers off when its job is done."
            echo "# tsc_early_khz: under TCG on a busy host the kernel cannot calibrate the TSC"
            echo "# against the PIT and hangs before its first message; a fixed value avoids that."
            echo "exec /usr/bin/qemu-system-x86_64 -name pikaci-guest \\"
            echo "  -M microvm,accel=tcg,pit=on,pic=on,rtc=on -m 512 -smp 1 \\"
            echo "  -nographic -nodefaults -serial stdio -no-reboot \\"
            echo "  -kernel $kernel -initrd $initrd -append 'console=ttyS0 panic=-1 quiet tsc_early_khz=2000000' \\"
            echo "  -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \\"
            echo "  $devices"
          } > $out/bin/microvm-run
          /bin/chmod 555 $out/bin/microvm-run
        ''
      ];
    };
  };
}
