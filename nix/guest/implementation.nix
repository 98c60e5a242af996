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
in
{
  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        users.groups.pikaci.gid = cfg.gid;
        users.users.pikaci = {
          isNormalUser = true;
          inherit (cfg) uid;
          group = "pikaci";
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
