# `packages.<system>.incus-image`: an Incus VM image with the pikaci agent, in the layout
# `pikaci image import` takes (docs/incus.md): `metadata.tar.xz` and `disk.qcow2`.
# nixpkgs' Incus VM profile provides the disk image, its metadata and the incus-agent.
{
  nixpkgs,
  self,
  system,
}:
let
  guest = nixpkgs.lib.nixosSystem {
    inherit system;
    modules = [
      "${nixpkgs}/nixos/modules/virtualisation/incus-virtual-machine.nix"
      self.nixosModules.guest
      {
        pikaci.guest = {
          enable = true;
          mode = "incus";
          agent = self.packages.${system}.pikaci-guest;
        };
        # `incus exec` (readiness, the request, the agent) goes through it.
        virtualisation.incus.agent.enable = true;
        networking.hostName = "pikaci-guest";
        system.stateVersion = "25.11";
      }
    ];
  };
  inherit (guest.config.system) build;
in
nixpkgs.legacyPackages.${system}.runCommand "pikaci-incus-image" { } ''
  mkdir $out
  ln -s ${build.metadata}/tarball/*.tar.xz $out/metadata.tar.xz
  ln -s ${build.qemuImage}/*.qcow2 $out/disk.qcow2
''
