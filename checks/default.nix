# `nix flake check`: the package with its unit tests, clippy, rustfmt, and shellcheck of
# the shell pikaci runs on hosts and guests. The microVM end-to-end test needs KVM and
# the testbed (scripts/test.sh); it is not a flake check yet.
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
  shellcheck = pkgs.runCommand "pikaci-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
    cd ${../.}
    shellcheck -s bash src/backend/microvm/supervise.bash
    shellcheck testbed/guest-init .ci/run scripts/*.sh scripts/testbed/*.sh benches/*.sh
    touch $out
  '';
}
