{
  description = "pikaci: a CI executor for Nix users; each job in a throwaway microVM or Incus guest";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
    microvm = {
      url = "github:microvm-nix/microvm.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      microvm,
    }:
    let
      # Guests and their checks are Linux; the CLI also drives remote Linux hosts from darwin.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      systems = linuxSystems ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forSystems = list: f: nixpkgs.lib.genAttrs list (system: f nixpkgs.legacyPackages.${system});
      forAllSystems = forSystems systems;
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          # Guest flakes point back at this very source, pinned by its hash, so the guests'
          # agent and `lib.mkGuest` are those of the pikaci that runs (src/nix/guest_flake.rs).
          pikaci = pkgs.callPackage ./nix/package.nix {
            flakeRef = "path:${self.outPath}?narHash=${self.narHash}";
          };
          system = pkgs.stdenv.hostPlatform.system;
        in
        {
          inherit pikaci;
          default = pikaci;
        }
        // nixpkgs.lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          pikaci-guest = pikaci.guest;
        }
        # An Incus VM image with the agent, for `pikaci image build` (docs/incus.md).
        // nixpkgs.lib.optionalAttrs (system == "x86_64-linux") {
          incus-image = import ./nix/incus-image.nix { inherit nixpkgs self system; };
        }
      );

      apps = forAllSystems (pkgs: rec {
        pikaci = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.pikaci}/bin/pikaci";
        };
        default = pikaci;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.pikaci ];
          packages = [
            pkgs.cargo-insta
            pkgs.clippy
            pkgs.rustfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);

      checks = forSystems linuxSystems (pkgs: import ./checks { inherit pkgs self; });

      # The guest side of pikaci: the agent, the job user, the shares (docs/nix.md).
      nixosModules.guest = import ./nix/guest;

      # What generated guest flakes call: `pikaci.lib.mkGuest { system; hypervisor; … }`.
      lib.mkGuest = import ./nix/mk-guest.nix { inherit nixpkgs microvm self; };
    };
}
