# pikaci and its guest agent, from this repository's Cargo.lock. The tests that need
# the testbed (sshd, qemu, virtiofsd) skip themselves outside CI, so `cargo test` runs
# in the build sandbox too.
{
  lib,
  stdenv,
  rustPlatform,
  pkgsStatic,
  git,
  shellcheck,
  util-linux,
  flakeRef,
}:
let
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../tests
      ../benches
      # tests/fuzz.rs includes the fuzz targets' properties.
      ../fuzz/src/oracles.rs
      # The configuration reference of `pikaci man pikaci.toml` (src/cli/man.rs).
      ../docs/configuration.md
    ];
  };
  common = {
    pname = "pikaci";
    version = "0.1.0";
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    # The unit tests; the integration tests drive git, nix, sshd and qemu, which the
    # build sandbox does not have (they run in `scripts/test.sh`).
    cargoTestFlags = [ "--lib" ];
    # The unit tests exercise the Linux guest agent (/proc, user switching); on darwin
    # only the CLI is built, for driving remote Linux hosts.
    doCheck = stdenv.hostPlatform.isLinux;
    env = {
      # Lets generated guest flakes point back at this flake (src/nix/guest_flake.rs).
      PIKACI_FLAKE = flakeRef;
      # A snapshot that no longer matches fails the build instead of being rewritten.
      INSTA_UPDATE = "no";
    };
    meta = {
      description = "A CI executor for Nix users";
      mainProgram = "pikaci";
      platforms = lib.platforms.linux ++ lib.platforms.darwin;
    };
  };
in
rustPlatform.buildRustPackage (
  common
  // {
    # What the unit tests run (the build sandbox has nothing else): git for the change
    # detection and snapshot tests, shellcheck for the host scripts, util-linux's flock for
    # the host gc script's test. The tests that run
    # `nix` skip themselves outside CI. tests/package.rs checks this list under the
    # sandbox's conditions.
    nativeCheckInputs = [
      git
      shellcheck
      util-linux
    ];
    passthru.guest = pkgsStatic.rustPlatform.buildRustPackage (
      common
      // {
        pname = "pikaci-guest";
        # Only the CLI names its source; the agent does not carry it into guests.
        env = removeAttrs common.env [ "PIKACI_FLAKE" ];
        cargoBuildFlags = [
          "--bin"
          "pikaci-guest"
        ];
        doCheck = false;
        meta = common.meta // {
          mainProgram = "pikaci-guest";
          platforms = lib.platforms.linux;
        };
      }
    );
  }
)
