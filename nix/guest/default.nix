# The guest side of pikaci, for microVMs (with microvm.nix) and Incus images. Options,
# assertions and implementation live in their own files.
{
  imports = [
    ./options.nix
    ./asserts.nix
    ./implementation.nix
  ];
}
