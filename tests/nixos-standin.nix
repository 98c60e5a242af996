# Stand-ins for what a generated guest flake meets where nixpkgs and microvm.nix can be
# fetched (they cannot on the test machines): `nixpkgs.lib.nixosSystem` as a small
# module system with the users, groups and assertions of NixOS's users-groups.nix, and
# microvm.nix's module with its hypervisor list and what its runners throw or warn about.
# Each part says what it copies; the revisions read are in docs/nix.md ("Checked
# against"). tests/flake.rs evaluates nix/mk-guest.nix with these.
{
  # The system of the host that builds and boots the guest.
  hostSystem ? "x86_64-linux",
}:
let
  inherit (builtins)
    all
    attrNames
    attrValues
    concatLists
    concatMap
    elem
    filter
    head
    isAttrs
    isFunction
    isInt
    isList
    isString
    length
    listToAttrs
    mapAttrs
    ;

  lib = rec {
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkDefault = mkOverride 1000;
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = _: mkOption {
      type = types.bool;
      default = false;
    };
    types = rec {
      bool.check = builtins.isBool;
      str.check = isString;
      package.check = v: isString v || isAttrs v;
      enum = values: { check = v: elem v values; };
      ints.positive.check = v: isInt v && v > 0;
      ints.unsigned.check = v: isInt v && v >= 0;
      listOf = type: { check = v: isList v && all type.check v; };
      submodule = _: { check = isAttrs; };
      attrsOf = submodule;
    };
    filterAttrs =
      pred: set:
      listToAttrs (
        concatMap (name: if pred name set.${name} then [ { inherit name; value = set.${name}; } ] else [ ]) (
          attrNames set
        )
      );
    mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
    optionalAttrs = cond: set: if cond then set else { };
    findFirst = pred: default: list: if filter pred list == [ ] then default else head (filter pred list);
    count = pred: list: length (filter pred list);
    unique = builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    concatStringsSep = builtins.concatStringsSep;
    inherit attrNames elem filter head;
    getExe = package: "${package}/bin/pikaci-guest";
  };

  isOption = v: isAttrs v && v._type or null == "option";
  kind = v: if isAttrs v then v._type or null else null;

  # The module system's pushDownProperties: the children of one definition, each wrapped
  # in the conditions above it, found without evaluating any condition.
  children =
    def:
    if kind def == "if" then
      mapAttrs (_: lib.mkIf def.condition) (children def.content)
    else if kind def == "override" then
      mapAttrs (_: lib.mkOverride def.priority) (children def.content)
    else if kind def == "merge" then
      builtins.zipAttrsWith (_: lib.mkMerge) (map children def.contents)
    else
      def;
  # Whether a definition defines an attribute set (looking through mkIf, mkMerge, …).
  definesSet =
    def:
    if elem (kind def) [
      "if"
      "override"
    ] then
      definesSet def.content
    else if kind def == "merge" then
      all definesSet def.contents
    else
      isAttrs def;
  # The values of a leaf whose conditions hold, each with its priority (plain: 100).
  leaves =
    priority: def:
    if kind def == "if" then
      (if def.condition then leaves priority def.content else [ ])
    else if kind def == "override" then
      leaves def.priority def.content
    else if kind def == "merge" then
      concatMap (leaves priority) def.contents
    else
      [ { inherit priority; value = def; } ];
  mergeDefs =
    path: defs:
    if defs != [ ] && all definesSet defs then
      let
        sets = map children defs;
        names = lib.unique (concatMap attrNames sets);
      in
      listToAttrs (
        map (name: {
          inherit name;
          value = mergeDefs (path ++ [ name ]) (concatMap (s: if s ? ${name} then [ s.${name} ] else [ ]) sets);
        }) names
      )
    else
      let
        all' = concatMap (leaves 100) defs;
        best = builtins.foldl' (m: l: if l.priority < m then l.priority else m) 9999 all';
        values = map (l: l.value) (filter (l: l.priority == best) all');
        where = builtins.concatStringsSep "." path;
      in
      if values == [ ] then
        throw "stand-in: the option `${where}' is used but not defined"
      else if length values == 1 then
        head values
      else if all isList values then
        concatLists values
      else if all (v: v == head values) values then
        head values
      else
        throw "stand-in: the option `${where}' has conflicting definitions";

  # Modules and their imports, called with the module arguments.
  load =
    args: module:
    let
      fn = if builtins.isPath module then import module else module;
      value = if isFunction fn then fn args else fn;
    in
    [
      {
        options = value.options or { };
        config =
          value.config or (removeAttrs value [
            "imports"
            "options"
          ]);
      }
    ]
    ++ concatMap (load args) (value.imports or [ ]);

  mergeDecls =
    a: b:
    a
    // mapAttrs (
      name: v: if a ? ${name} && !isOption v && !isOption a.${name} then mergeDecls a.${name} v else v
    ) b;
  # Option defaults as definitions of the lowest priority, as the module system has them.
  defaultsOf =
    decl:
    if isOption decl then
      lib.mkOverride 1500 decl.default
    else
      mapAttrs (_: defaultsOf) (lib.filterAttrs (_: d: !(isOption d) || d ? default) decl);
  typeErrors =
    prefix: decl: value:
    concatLists (
      lib.mapAttrsToList (
        name: d:
        let
          where = "${prefix}${name}";
        in
        if !(value ? ${name}) then
          [ ]
        else if isOption d then
          (if d ? type && !(d.type.check value.${name}) then [ "The option `${where}' has a value of the wrong type" ] else [ ])
        else
          typeErrors "${where}." d value.${name}
      ) decl
    );

  # users-groups.nix (nixpkgs): root and nobody, its groups with their gids from
  # ids.nix; and ids that a minimal guest gets from other modules it enables by default
  # (dbus: messagebus; systemd: journal, networkd, timesyncd, coredump).
  nixosBase = {
    users.users = {
      root = {
        uid = 0;
        group = "root";
        home = "/root";
      };
      nobody = {
        uid = 65534;
        isSystemUser = true;
        group = "nogroup";
      };
      messagebus = {
        uid = 4;
        isSystemUser = true;
        group = "messagebus";
      };
      systemd-coredump = {
        uid = 151;
        isSystemUser = true;
        group = "systemd-coredump";
      };
      systemd-network = {
        uid = 152;
        isSystemUser = true;
        group = "systemd-network";
      };
      systemd-timesync = {
        uid = 154;
        isSystemUser = true;
        group = "systemd-timesync";
      };
    };
    users.groups = mapAttrs (_: gid: { inherit gid; }) {
      root = 0;
      wheel = 1;
      kmem = 2;
      tty = 3;
      messagebus = 4;
      disk = 6;
      audio = 17;
      floppy = 18;
      uucp = 19;
      lp = 20;
      cdrom = 24;
      tape = 25;
      video = 26;
      dialout = 27;
      utmp = 29;
      adm = 55;
      systemd-journal = 62;
      users = 100;
      systemd-network = 152;
      systemd-timesync = 154;
      input = 174;
      kvm = 302;
      render = 303;
      sgx = 304;
      shadow = 318;
      nixbld = 30000;
      nogroup = 65534;
    } // { systemd-coredump.gid = null; };
  };

  # userOpts and groupOpts of users-groups.nix: the defaults, and what isNormalUser implies.
  normalizeUser =
    name: user:
    {
      uid = null;
      isSystemUser = false;
      isNormalUser = false;
      group = "";
      home = "/var/empty";
      createHome = false;
      useDefaultShell = false;
    }
    // lib.optionalAttrs (user.isNormalUser or false) {
      group = "users";
      home = "/home/${name}";
      createHome = true;
      useDefaultShell = true;
    }
    // user;
  normalizeGroup = name: group: { gid = null; inherit name; } // group;

  # The assertions of users-groups.nix that a job user can hit, with their messages.
  nixosAssertions =
    config:
    let
      users = config.users.users;
      groups = config.users.groups;
      idsAreUnique =
        attr: set:
        let
          ids = map (v: toString v.${attr}) (filter (v: v.${attr} != null) (attrValues set));
        in
        length ids == length (lib.unique ids);
      groupNames = map (g: g.name) (attrValues groups);
    in
    [
      {
        assertion = idsAreUnique "uid" users && idsAreUnique "gid" groups;
        message = "UIDs and GIDs must be unique!";
      }
    ]
    ++ concatLists (
      lib.mapAttrsToList (name: user: [
        {
          assertion = user.group == "" || elem user.group groupNames;
          message = "The following users have a primary group that is undefined: ${name}";
        }
        {
          assertion = !(user.isNormalUser && user.uid != null) || user.uid >= 1000;
          message = "A user cannot have a users.users.${name}.uid set below 1000 and set users.users.${name}.isNormalUser.";
        }
        {
          assertion =
            let
              isEffectivelySystemUser = user.isSystemUser || (user.uid != null && user.uid < 1000 && !user.isNormalUser);
            in
            isEffectivelySystemUser != user.isNormalUser;
          message = "Exactly one of users.users.${name}.isSystemUser and users.users.${name}.isNormalUser must be set.";
        }
        {
          assertion = user.group != "";
          message = "users.users.${name}.group is unset.";
        }
      ]) users
    );

  nixosSystem =
    { system, modules }:
    let
      args = {
        inherit config lib options;
        pkgs = { };
      };
      loaded = concatMap (load args) ([ nixosBase ] ++ modules);
      options = builtins.foldl' mergeDecls { } (map (m: m.options) loaded);
      merged = mergeDefs [ ] ([ (defaultsOf options) ] ++ map (m: m.config) loaded);
      config = merged // {
        users = merged.users // {
          users = mapAttrs normalizeUser merged.users.users;
          groups = mapAttrs normalizeGroup merged.users.groups;
        };
      };
      checked = config.assertions ++ nixosAssertions config;
    in
    {
      inherit system config;
      failedAssertions = map (a: a.message) (filter (a: !a.assertion) checked) ++ typeErrors "" options config;
    };

  # microvm.nix: lib/default.nix's hypervisor list (the option's enum), and what
  # lib/runners/*.nix throw for virtiofs shares or warn about memory.
  hypervisors = [
    "qemu"
    "cloud-hypervisor"
    "firecracker"
    "crosvm"
    "kvmtool"
    "stratovirt"
    "alioth"
    "vfkit"
  ];
  isDarwin = builtins.match ".*-darwin" hostSystem != null;
  runner =
    cfg:
    let
      virtiofs = filter (s: s.proto == "virtiofs") cfg.shares;
    in
    if cfg.hypervisor == "firecracker" && cfg.shares != [ ] then
      throw "9p/virtiofs shares not implemented for Firecracker"
    else if cfg.hypervisor == "kvmtool" && virtiofs != [ ] then
      throw "virtiofs shares not implemented for kvmtool"
    else if cfg.hypervisor == "vfkit" && !isDarwin then
      throw "vfkit only works on macOS (Darwin). Current host: ${hostSystem}"
    else
      {
        inherit (cfg) hypervisor;
        warnings = if cfg.hypervisor == "qemu" && cfg.mem == 2048 then [ "QEMU hangs if memory is exactly 2GB" ] else [ ];
      };
  microvmModule =
    { config, lib, ... }:
    {
      options.microvm = {
        hypervisor = lib.mkOption {
          type = lib.types.enum hypervisors;
          default = "qemu";
        };
        vcpu = lib.mkOption {
          type = lib.types.ints.positive;
          default = 1;
        };
        mem = lib.mkOption {
          type = lib.types.ints.positive;
          default = 512;
        };
        shares = lib.mkOption {
          type = lib.types.listOf (lib.types.submodule { });
          default = [ ];
        };
      };
      config.microvm.declaredRunner = runner config.microvm;
    };
in
{
  nixpkgs.lib.nixosSystem = nixosSystem;
  microvm.nixosModules.microvm = microvmModule;
  self = {
    nixosModules.guest = ../nix/guest;
    packages = mapAttrs (_: _: { pikaci-guest = "/nix/store/00000000000000000000000000000000-pikaci-guest"; }) {
      x86_64-linux = null;
      aarch64-linux = null;
    };
  };
  inherit hypervisors;
}
