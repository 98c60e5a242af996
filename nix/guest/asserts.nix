{ config, lib, ... }:
let
  cfg = config.pikaci.guest;
  tags = map (s: s.tag) cfg.shares;
  duplicates = lib.filter (t: lib.count (x: x == t) tags > 1) (lib.unique tags);
in
{
  config = lib.mkIf cfg.enable {
    assertions = [
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
