{ config, lib, ... }:
let
  cfg = config.pikaci.guest;
  tags = map (s: s.tag) cfg.shares;
  duplicates = lib.filter (t: lib.count (x: x == t) tags > 1) (lib.unique tags);
  # Unlike a gid, a uid cannot be shared: NixOS would fail with "UIDs and GIDs must be
  # unique!" without saying whose.
  sameUid = lib.attrNames (
    lib.filterAttrs (name: user: name != "pikaci" && user.uid == cfg.uid) config.users.users
  );
in
{
  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = sameUid == [ ];
        message = "pikaci.guest.uid: ${toString cfg.uid} (the host user's uid) belongs to ${lib.concatStringsSep ", " sameUid} in the guest; run pikaci on the host as a user with another uid";
      }
      {
        assertion = duplicates == [ ];
        message = "pikaci.guest.shares: the tags ${lib.concatStringsSep ", " duplicates} appear more than once";
      }
      {
        assertion = cfg.mode != "microvm" || lib.elem "request" tags;
        message = "pikaci.guest.shares: a microVM guest needs the `request` share, where its job arrives";
      }
      {
        assertion = cfg.mode != "microvm" || lib.elem "artifacts" tags;
        message = "pikaci.guest.shares: a microVM guest needs the `artifacts` share, where its result goes";
      }
    ];
  };
}
