{ lib, ... }:
let
  inherit (lib) mkOption mkEnableOption types;
in
{
  options.pikaci.guest = {
    enable = mkEnableOption "the pikaci guest agent and job user";

    mode = mkOption {
      type = types.enum [
        "microvm"
        "incus"
      ];
      default = "microvm";
      description = ''
        `microvm`: the agent runs the request found at boot in `/run/pikaci` and powers
        the guest off. `incus`: the agent is only installed; pikaci runs it with
        `incus exec`.
      '';
    };

    agent = mkOption {
      type = types.package;
      description = "The package providing `bin/pikaci-guest` (pikaci's `packages.<system>.pikaci-guest`).";
    };

    uid = mkOption {
      type = types.ints.positive;
      default = 1000;
      description = ''
        The uid of the unprivileged job user `pikaci`; pikaci passes the host user's. Below
        1000 the user is a system user (NixOS allows normal users only from 1000 on).
      '';
    };

    gid = mkOption {
      type = types.ints.unsigned;
      default = 1000;
      description = ''
        The gid of the job user's primary group: `pikaci`, or the group NixOS already
        has with this gid (e.g. `users` for 100), which the job user then joins.
      '';
    };

    shares = mkOption {
      type = types.listOf (
        types.submodule {
          options = {
            tag = mkOption {
              type = types.enum [
                "workspace"
                "artifacts"
                "request"
                "ro-store"
              ];
              description = "The virtiofs tag; pikaci starts one virtiofsd per tag.";
            };
            mountPoint = mkOption {
              type = types.str;
              description = "Where the guest mounts the share.";
            };
          };
        }
      );
      default = [ ];
      description = ''
        The virtiofs shares of a microVM guest. pikaci's generated guest flake passes them
        (`lib.mkGuest`); the list and its mount points are in docs/nix.md.
      '';
    };
  };
}
