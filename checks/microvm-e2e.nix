# A NixOS VM test: pikaci runs one job in a microVM built by `lib.mkGuest`, end to end
# (virtiofsd, qemu, the agent, result.json). The microVM nests inside the test VM, so
# this check needs KVM on the builder (`requiredSystemFeatures = [ "kvm" ]`).
{ pkgs, self }:
let
  system = pkgs.stdenv.hostPlatform.system;
  pikaci = self.packages.${system}.pikaci;
  # The runner pikaci would generate for root on the test VM (uid 0 maps to 1000) with
  # the shares of src/nix/guest_flake.rs (tests/flake.rs checks that they match);
  # prebuilt, because the test VM is offline.
  runner =
    (self.lib.mkGuest {
      inherit system;
      hypervisor = "qemu";
      vcpu = 1;
      memoryMiB = 512;
      uid = 1000;
      gid = 1000;
      shares = [
        {
          tag = "workspace";
          mountPoint = "/workspace";
        }
        {
          tag = "artifacts";
          mountPoint = "/artifacts";
        }
        {
          tag = "request";
          mountPoint = "/run/pikaci";
        }
        {
          tag = "ro-store";
          mountPoint = "/nix/.ro-store";
        }
      ];
    }).config.microvm.declaredRunner;
  config = pkgs.writeText "pikaci.toml" ''
    [defaults]
    backend = "microvm"

    [backends.microvm]
    runner = "${runner}"
    virtiofsd = "${pkgs.virtiofsd}/bin/virtiofsd"

    [jobs.hello]
    command = "id -un; cat README; echo made > $PIKACI_ARTIFACTS/made.txt"
  '';
in
(pkgs.testers.runNixOSTest {
  name = "pikaci-microvm-e2e";
  nodes.machine = {
    virtualisation = {
      cores = 2;
      memorySize = 2048;
      additionalPaths = [ runner ];
    };
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];
    environment.systemPackages = [
      pikaci
      pkgs.git
    ];
  };
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.succeed(
        "mkdir -p /repo && cd /repo && git init -q"
        " && cp ${config} pikaci.toml && echo hello > README && echo .pikaci/ > .gitignore"
        " && git add -A && git -c user.name=t -c user.email=t@t commit -qm init"
    )
    machine.succeed("cd /repo && pikaci run hello --no-progress >&2")
    status = machine.succeed("cd /repo && pikaci status latest --json")
    assert '"passed"' in status, status
    log = machine.succeed("cd /repo && pikaci logs latest --job hello")
    assert log == "pikaci\nhello\n", repr(log)
    machine.succeed("test \"$(cat /repo/.pikaci/runs/*/jobs/hello/artifacts/made.txt)\" = made")
  '';
}).overrideTestDerivation
  (old: {
    requiredSystemFeatures = pkgs.lib.unique ((old.requiredSystemFeatures or [ ]) ++ [ "kvm" ]);
  })
