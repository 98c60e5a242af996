# `lib.mkGuest PROFILE`: the NixOS system of one guest profile, as pikaci's generated
# guest flake calls it (src/nix/guest_flake.rs). The arguments are exactly what the
# generator emits; a test evaluates `builtins.functionArgs` of this function against it.
{
  nixpkgs,
  microvm,
  self,
}:
{
  system,
  hypervisor,
  vcpu,
  memoryMiB,
  uid,
  gid,
  shares,
}:
nixpkgs.lib.nixosSystem {
  inherit system;
  modules = [
    microvm.nixosModules.microvm
    self.nixosModules.guest
    {
      pikaci.guest = {
        enable = true;
        mode = "microvm";
        agent = self.packages.${system}.pikaci-guest;
        inherit uid gid shares;
      };
      microvm = {
        inherit hypervisor vcpu;
        mem = memoryMiB;
      };
      networking.hostName = "pikaci-guest";
      system.stateVersion = "25.11";
    }
  ];
}
