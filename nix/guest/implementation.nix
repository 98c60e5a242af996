{
  config,
  lib,
  options,
  ...
}:
let
  cfg = config.pikaci.guest;
  # Without a `request` share the assertions say so; this only keeps evaluation going.
  requestDir = (lib.findFirst (s: s.tag == "request") { mountPoint = "/run/pikaci"; } cfg.shares).mountPoint;
  # A group NixOS already defines with the host user's gid (`users` is 100, the primary
  # group of NixOS normal users): the job user joins it, since a second group with that
  # gid fails "UIDs and GIDs must be unique!". `pikaci` itself is skipped by name before
  # its gid is read, so this does not depend on itself.
  sameGid = lib.attrNames (
    lib.filterAttrs (name: group: name != "pikaci" && group.gid == cfg.gid) config.users.groups
  );
  group = if sameGid == [ ] then "pikaci" else lib.head sameGid;
in
{
  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        # Always defined (the set of groups cannot depend on their gids without
        # recursion); without a gid of its own when the job user joins another group.
        users.groups.pikaci.gid = if group == "pikaci" then cfg.gid else null;
        # NixOS asserts that normal users have uids of 1000 or more; below that (CI
        # service accounts) the job user is a system user. Either way it gets what a
        # normal user has (home, default shell), so jobs see no difference.
        users.users.pikaci = {
          isNormalUser = cfg.uid >= 1000;
          isSystemUser = cfg.uid < 1000;
          inherit (cfg) uid;
          inherit group;
          home = "/home/pikaci";
          createHome = true;
          useDefaultShell = true;
        };
        environment.systemPackages = [ cfg.agent ];
      }

      (lib.mkIf (cfg.mode == "microvm") (
        lib.optionalAttrs (options ? microvm) {
          # pikaci starts the virtiofsd of each share itself, with the job's own
          # directories; `source` only fills microvm.nix's required field.
          microvm.shares = map (share: {
            proto = "virtiofs";
            inherit (share) tag mountPoint;
            source = if share.tag == "ro-store" then "/nix/store" else "/var/empty";
          }) cfg.shares;

          systemd.services.pikaci-job = {
            description = "pikaci job";
            wantedBy = [ "multi-user.target" ];
            after = [ "local-fs.target" ];
            serviceConfig = {
              Type = "oneshot";
              ExecStart = "${lib.getExe cfg.agent} run --poweroff ${requestDir}/request.json";
              StandardOutput = "journal+console";
              StandardError = "journal+console";
            };
          };
        }
      ))
    ]
  );
}
