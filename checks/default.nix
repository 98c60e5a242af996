# `nix flake check`: the package with its unit tests, clippy, rustfmt, snapshot
# freshness, shellcheck of the shell pikaci runs on hosts and guests, and a NixOS VM test
# that runs one microVM job end to end (needs KVM).
{ pkgs, self }:
let
  pikaci = self.packages.${pkgs.stdenv.hostPlatform.system}.pikaci;
  rustCheck =
    name: command:
    pikaci.overrideAttrs (old: {
      name = "pikaci-${name}";
      nativeBuildInputs = old.nativeBuildInputs ++ [
        pkgs.clippy
        pkgs.rustfmt
      ];
      buildPhase = ''
        runHook preBuild
        ${command}
        runHook postBuild
      '';
      doCheck = false;
      installPhase = "touch $out";
    });
in
{
  package = pikaci;
  clippy = rustCheck "clippy" "cargo clippy --all-targets --offline -- -D warnings";
  fmt = rustCheck "fmt" "cargo fmt --all -- --check";
  # No snapshot left pending review (`cargo insta review`); the tests themselves run with
  # INSTA_UPDATE=no in the package build, so a stale snapshot fails there.
  snapshots = pkgs.runCommand "pikaci-snapshots" { } ''
    cd ${../.}
    pending=$(find src tests -name '*.snap.new' -o -name '*.pending-snap')
    if [ -n "$pending" ]; then echo "snapshots pending review: $pending"; exit 1; fi
    touch $out
  '';
  microvm-e2e = import ./microvm-e2e.nix { inherit pkgs self; };
  shellcheck = pkgs.runCommand "pikaci-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
    cd ${../.}
    shellcheck -s bash src/backend/microvm/supervise.bash
    shellcheck testbed/guest-init .ci/run scripts/*.sh scripts/testbed/*.sh benches/*.sh
    touch $out
  '';
}
