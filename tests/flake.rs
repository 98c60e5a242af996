//! The flake as far as it can be checked without nixpkgs (which cannot be fetched on the
//! test machines): every Nix file parses, `flake.lock` agrees with `flake.nix`, and
//! `lib.mkGuest` accepts exactly the arguments pikaci's guest flake passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pikaci::config::MicrovmSettings;
use pikaci::nix::{GuestProfile, HostFacts};

use crate::harness::run_tool;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Evaluates `expr` in the repository (None: a skip without Nix outside CI).
fn eval(expr: &str) -> Option<serde_json::Value> {
    crate::harness::nix_eval_json(expr, &repo())
}

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && name != ".git" && name != ".pikaci" {
            nix_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "nix") {
            out.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let errors = rnix::Root::parse(&text).errors().to_vec();
        assert!(errors.is_empty(), "{}: rnix: {errors:?}", file.display());
        let Some(out) = run_tool(Command::new("nix-instantiate").arg("--parse").arg(&file)) else {
            return;
        };
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The keys of every attribute set bound to `path` (e.g. `pikaci.guest`) in `file`.
fn keys_under(file: &str, path: &str) -> Vec<String> {
    use rnix::ast::{self, HasEntry};
    use rowan::ast::AstNode;
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let root = rnix::Root::parse(&text).ok().unwrap();
    let mut keys = Vec::new();
    for binding in root
        .syntax()
        .descendants()
        .filter_map(ast::AttrpathValue::cast)
    {
        let Some(attrpath) = binding.attrpath() else {
            continue;
        };
        if attrpath.to_string() != path {
            continue;
        }
        if let Some(ast::Expr::AttrSet(set)) = binding.value() {
            for entry in set.attrpath_values() {
                if let Some(key) = entry.attrpath().and_then(|a| a.attrs().next()) {
                    keys.push(key.to_string());
                }
            }
        }
    }
    keys
}

/// Every `pikaci.guest.*` option that mkGuest and the Incus image set is declared by the
/// module (read with rnix, without evaluating anything).
#[test]
fn guest_options_used_are_declared() {
    let declared = keys_under("nix/guest/options.nix", "options.pikaci.guest");
    assert!(declared.contains(&"shares".to_string()), "{declared:?}");
    for user in ["nix/mk-guest.nix", "nix/incus-image.nix"] {
        let used = keys_under(user, "pikaci.guest");
        assert!(!used.is_empty(), "{user} sets pikaci.guest");
        for option in &used {
            assert!(
                declared.contains(option),
                "{user} sets pikaci.guest.{option}, which nix/guest/options.nix does not declare ({declared:?})"
            );
        }
    }
}

#[test]
fn flake_lock_agrees_with_flake_nix() {
    let Some(inputs) = eval("(import ./flake.nix).inputs") else {
        return;
    };
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("flake.lock")).unwrap()).unwrap();
    assert_eq!(lock["version"], 7);
    let nodes = lock["nodes"].as_object().unwrap();
    let root = &nodes[lock["root"].as_str().unwrap()];
    let declared: BTreeSet<&String> = inputs.as_object().unwrap().keys().collect();
    let locked: BTreeSet<&String> = root["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(
        declared, locked,
        "every input of flake.nix is locked, and nothing else"
    );

    for (name, input) in inputs.as_object().unwrap() {
        let node = &nodes[root["inputs"][name].as_str().unwrap()];
        assert!(
            node["locked"]["narHash"]
                .as_str()
                .is_some_and(|h| h.starts_with("sha256-")),
            "{name} is locked with a hash"
        );
        // `inputs.X.follows = "Y"` in flake.nix is `"X": ["Y"]` in the lock.
        for (sub, spec) in input["inputs"].as_object().into_iter().flatten() {
            let follows = spec["follows"].as_str().unwrap();
            assert_eq!(
                node["inputs"][sub],
                serde_json::json!(follows.split('/').collect::<Vec<_>>()),
                "{name}.inputs.{sub} follows {follows}"
            );
        }
    }
    // Every node an input names exists and is locked.
    for (name, node) in nodes {
        for target in node["inputs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, t)| t)
        {
            if let Some(target) = target.as_str() {
                assert!(
                    nodes.contains_key(target),
                    "{name} names missing node {target}"
                );
                assert!(nodes[target]["locked"].is_object(), "{target} is locked");
            }
        }
    }
}

/// The guest flake pikaci generates with default settings.
fn guest_flake() -> GuestProfile {
    GuestProfile::from_settings(
        &MicrovmSettings::default(),
        "path:/pikaci".into(),
        &host(1000, 1000),
    )
}

fn host(uid: u32, gid: u32) -> HostFacts {
    HostFacts {
        uid,
        gid,
        system: "x86_64-linux".into(),
    }
}

/// What the pikaci package's build passes in (flake.nix): its source, pinned.
const PINNED: &str = "path:/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source?narHash=sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// The generated flake evaluated through `nix/mk-guest.nix` and `nix/guest` with the
/// stand-ins of `tests/nixos-standin.nix` for nixpkgs and microvm.nix: which assertions
/// fail, whether the runner evaluates and what it warns about, and the job user.
fn evaluate_guest(profile: &GuestProfile) -> Option<serde_json::Value> {
    let expr = format!(
        r#"
      let
        standin = import ./tests/nixos-standin.nix {{ hostSystem = "{system}"; }};
        mkGuest = import ./nix/mk-guest.nix {{ inherit (standin) nixpkgs microvm self; }};
        flake = {flake};
        sys = (flake.outputs {{ self = null; pikaci = {{ lib.mkGuest = mkGuest; }}; }}).nixosConfigurations.{name};
        user = sys.config.users.users.pikaci;
        runner = builtins.tryEval (builtins.deepSeq sys.config.microvm.declaredRunner sys.config.microvm.declaredRunner);
      in {{
        inherit (sys) system failedAssertions;
        runnerEvaluates = runner.success;
        runnerWarnings = if runner.success then runner.value.warnings else [ ];
        user = {{
          inherit (user) uid group home isNormalUser isSystemUser;
          gid = sys.config.users.groups.${{user.group}}.gid;
        }};
      }}"#,
        system = profile.system,
        flake = profile.flake_nix(),
        name = pikaci::nix::GUEST_NAME,
    );
    eval(&expr)
}

/// Guest profiles of hosts as they are: a NixOS normal user (gid 100, `users`), CI
/// service accounts below uid 1000, a gid NixOS gives a group of its own, an aarch64
/// host, crosvm. Each flake is pinned by a snapshot, and evaluates with no NixOS
/// assertion failing, no microvm.nix warning, and the job user having the host's ids.
#[test]
fn guest_profiles_evaluate_on_real_hosts() {
    let crosvm = MicrovmSettings {
        hypervisor: "crosvm".into(),
        ..MicrovmSettings::default()
    };
    let aarch64 = HostFacts {
        system: "aarch64-linux".into(),
        ..host(1000, 1000)
    };
    let cases = [
        (
            "nixos_normal_user",
            host(1000, 100),
            MicrovmSettings::default(),
        ),
        (
            "service_account",
            host(999, 999),
            MicrovmSettings::default(),
        ),
        (
            "service_account_in_users",
            host(998, 100),
            MicrovmSettings::default(),
        ),
        (
            "gid_of_systemd_journal",
            host(1001, 62),
            MicrovmSettings::default(),
        ),
        ("aarch64_host", aarch64, MicrovmSettings::default()),
        ("crosvm", host(1000, 100), crosvm),
    ];
    for (name, facts, settings) in cases {
        let profile = GuestProfile::from_settings(&settings, PINNED.into(), &facts);
        insta::assert_snapshot!(format!("guest_profile_{name}"), profile.flake_nix());
        let Some(got) = evaluate_guest(&profile) else {
            return;
        };
        assert_eq!(
            got["failedAssertions"],
            serde_json::json!([]),
            "{name}: {got}"
        );
        assert_eq!(got["runnerEvaluates"], true, "{name}");
        assert_eq!(got["runnerWarnings"], serde_json::json!([]), "{name}");
        assert_eq!(got["system"], facts.system, "{name}");
        assert_eq!(got["user"]["uid"], facts.uid, "{name}");
        assert_eq!(got["user"]["gid"], facts.gid, "{name}");
        assert_eq!(got["user"]["home"], "/home/pikaci", "{name}");
    }
}

/// A uid NixOS already gives a guest user cannot be shared; the guest module's own
/// assertion names whose it is (before NixOS's own, which does not).
#[test]
fn a_host_uid_taken_in_the_guest_is_named() {
    let profile =
        GuestProfile::from_settings(&MicrovmSettings::default(), PINNED.into(), &host(4, 4));
    let Some(got) = evaluate_guest(&profile) else {
        return;
    };
    let failed = got["failedAssertions"].as_array().unwrap();
    assert!(
        failed[0]
            .as_str()
            .unwrap()
            .contains("belongs to messagebus in the guest"),
        "{got}"
    );
}

/// The hypervisors the configuration accepts are exactly those whose runner evaluates
/// with pikaci's shares (stand-ins of microvm.nix's runners, a Linux host), and the
/// stand-in knows the same hypervisor list as pikaci.
#[test]
fn hypervisors_accepted_are_those_microvm_nix_can_run() {
    use pikaci::config::hypervisor::{HYPERVISORS, check_hypervisor};
    let Some(listed) = eval("(import ./tests/nixos-standin.nix { }).hypervisors") else {
        return;
    };
    assert_eq!(listed, serde_json::json!(HYPERVISORS));
    for hypervisor in HYPERVISORS {
        let settings = MicrovmSettings {
            hypervisor: hypervisor.to_string(),
            ..MicrovmSettings::default()
        };
        let profile = GuestProfile::from_settings(&settings, PINNED.into(), &host(1000, 100));
        let got = evaluate_guest(&profile).unwrap();
        assert_eq!(
            got["runnerEvaluates"].as_bool().unwrap(),
            check_hypervisor(hypervisor).is_ok(),
            "{hypervisor}: {got}"
        );
    }
    // And QEMU at exactly 2GiB, which the configuration rejects, is what it warns about.
    let hang = MicrovmSettings {
        memory_bytes: 2 << 30,
        ..MicrovmSettings::default()
    };
    let profile = GuestProfile::from_settings(&hang, PINNED.into(), &host(1000, 100));
    let got = evaluate_guest(&profile).unwrap();
    assert_eq!(got["runnerWarnings"].as_array().unwrap().len(), 1, "{got}");
}

#[test]
fn mk_guest_accepts_exactly_what_the_guest_flake_passes() {
    let profile = guest_flake();
    // The generated flake's outputs, with a stand-in mkGuest that returns its arguments.
    let passed = format!(
        "builtins.attrNames ((({flake}).outputs {{ self = null; pikaci = {{ lib.mkGuest = args: args; }}; }}).nixosConfigurations.{name})",
        flake = profile.flake_nix(),
        name = pikaci::nix::GUEST_NAME,
    );
    let Some(passed) = eval(&passed) else {
        return;
    };
    let accepted = eval(
        "builtins.attrNames (builtins.functionArgs (import ./nix/mk-guest.nix { nixpkgs = null; microvm = null; self = null; }))",
    )
    .unwrap();
    assert_eq!(passed, accepted);
    // And the flake's lib.mkGuest is that function.
    let wired = eval(
        "builtins.attrNames (builtins.functionArgs ((import ./flake.nix).outputs { self = null; nixpkgs = null; microvm = null; }).lib.mkGuest)",
    )
    .unwrap();
    assert_eq!(wired, accepted);
}

/// The NixOS VM test builds its runner with the same `lib.mkGuest` call shape and shares
/// as pikaci's guest flake, and the Incus image has the file names `pikaci image import`
/// looks for. Both evaluated with stand-ins for nixpkgs (which cannot be fetched here)
/// that record what they are given.
#[test]
fn vm_test_and_incus_image_match_what_pikaci_expects() {
    let vm_test = r#"
      let
        pkgs = {
          stdenv.hostPlatform.system = "x86_64-linux";
          writeText = name: text: text;
          virtiofsd = "/virtiofsd";
          git = null;
          lib.unique = xs: xs;
          testers.runNixOSTest = t: t // { overrideTestDerivation = f: t // f { }; };
        };
        self = {
          packages.x86_64-linux.pikaci = null;
          lib.mkGuest = args: { config.microvm.declaredRunner = args; };
        };
        test = import ./checks/microvm-e2e.nix { inherit pkgs self; };
        args = builtins.head test.nodes.machine.virtualisation.additionalPaths;
      in {
        mkGuestArgs = builtins.attrNames args;
        inherit (args) shares;
        features = test.requiredSystemFeatures;
      }"#;
    let Some(vm) = eval(vm_test) else { return };
    let generated = format!(
        "(({flake}).outputs {{ self = null; pikaci = {{ lib.mkGuest = args: args; }}; }}).nixosConfigurations.{name}.shares",
        flake = guest_flake().flake_nix(),
        name = pikaci::nix::GUEST_NAME,
    );
    assert_eq!(vm["shares"], eval(&generated).unwrap());
    let accepted = eval(
        "builtins.attrNames (builtins.functionArgs (import ./nix/mk-guest.nix { nixpkgs = null; microvm = null; self = null; }))",
    )
    .unwrap();
    assert_eq!(vm["mkGuestArgs"], accepted);
    assert_eq!(vm["features"], serde_json::json!(["kvm"]));

    let image = r#"
      let
        nixpkgs = {
          outPath = "/nixpkgs";
          lib.nixosSystem = args: {
            config.system.build = { metadata = "/metadata"; qemuImage = "/disk"; };
            modules = args.modules;
          };
          legacyPackages.x86_64-linux.runCommand = name: env: script: script;
        };
        self = { nixosModules.guest = "guest-module"; packages.x86_64-linux.pikaci-guest = "agent"; };
      in import ./nix/incus-image.nix { inherit nixpkgs self; system = "x86_64-linux"; }"#;
    let script = eval(image).unwrap();
    let script = script.as_str().unwrap();
    // Names that the import script's patterns take (metadata.tar*, *.qcow2).
    assert!(
        script.contains("$out/metadata.tar.xz") && script.contains("$out/disk.qcow2"),
        "{script}"
    );
}

/// Which outputs each system gets: the CLI everywhere, the guest agent and checks on
/// Linux, the Incus image on x86_64-linux. Evaluated with a stand-in nixpkgs that only
/// knows the systems the flake should ask for.
#[test]
fn outputs_per_system() {
    let expr = r#"
      let
        lib = {
          genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
          optionalAttrs = cond: attrs: if cond then attrs else { };
        };
        pkgsFor = system: {
          stdenv.hostPlatform = { inherit system; isLinux = builtins.match ".*-linux" system != null; };
          callPackage = fn: args: { guest = "agent"; inherit (args) flakeRef; };
        };
        nixpkgs = {
          inherit lib;
          legacyPackages = lib.genAttrs
            [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ] pkgsFor;
        };
        self = out // { outPath = "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source"; narHash = "sha256-AAAA"; };
        out = (import ./flake.nix).outputs { inherit self nixpkgs; microvm = null; };
        names = builtins.mapAttrs (_: builtins.attrNames);
      in {
        packages = names out.packages;
        apps = names out.apps;
        devShells = builtins.attrNames out.devShells;
        checks = builtins.attrNames out.checks;
        flakeRef = out.packages.x86_64-linux.pikaci.flakeRef;
      }"#;
    let Some(got) = eval(expr) else { return };
    let cli = serde_json::json!(["default", "pikaci"]);
    let linux = serde_json::json!(["default", "pikaci", "pikaci-guest"]);
    let x86 = serde_json::json!(["default", "incus-image", "pikaci", "pikaci-guest"]);
    assert_eq!(
        got["packages"],
        serde_json::json!({
            "aarch64-darwin": cli, "x86_64-darwin": cli,
            "aarch64-linux": linux, "x86_64-linux": x86,
        })
    );
    assert_eq!(got["apps"]["aarch64-darwin"], cli);
    let all = serde_json::json!([
        "aarch64-darwin",
        "aarch64-linux",
        "x86_64-darwin",
        "x86_64-linux"
    ]);
    assert_eq!(got["devShells"], all);
    // Guest flakes of the built pikaci use its own source, pinned by its hash.
    assert_eq!(
        got["flakeRef"],
        "path:/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source?narHash=sha256-AAAA"
    );
    assert_eq!(
        got["checks"],
        serde_json::json!(["aarch64-linux", "x86_64-linux"])
    );
}

/// `nix flake check` of a flake dir (as a `path:` flake, so no git is involved).
fn flake_check(dir: &Path) {
    let out = Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "flake",
            "check",
        ])
        .arg(format!("path:{}", dir.display()))
        .output()
        .expect("nix");
    assert!(
        out.status.success(),
        "nix flake check {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn testbed_flakes_pass_nix_flake_check() {
    if eval("1").is_none() {
        return;
    }
    flake_check(&repo().join("demo"));
    // The runner fixture, as scripts/testbed/microvm.sh assembled it (kernel, initrd).
    let Some(testbed) = crate::harness::testbed_microvm() else {
        return;
    };
    let dir = testbed
        .runner
        .strip_prefix("path:")
        .and_then(|r| r.strip_suffix("#runner"))
        .expect("path:DIR#runner");
    flake_check(Path::new(dir));
}

/// The shell pikaci runs on hosts and guests, and the project's scripts, pass shellcheck.
#[test]
fn scripts_pass_shellcheck() {
    let root = repo();
    let mut files: Vec<PathBuf> = [
        "src/backend/microvm/supervise.bash",
        "testbed/guest-init",
        ".ci/run",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    for dir in ["scripts", "scripts/testbed", "benches"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "sh") {
                files.push(entry.path());
            }
        }
    }
    // Debian's ShellCheck (0.9) and a newer one (scripts/setup.sh): each adds checks.
    let mut shellchecks = vec!["shellcheck".to_string()];
    shellchecks.extend(crate::harness::testbed_var(
        "PIKACI_TEST_SHELLCHECK_NEW",
        "../setup.sh",
    ));
    for shellcheck in &shellchecks {
        // The supervisor is bash; the rest say what they are in their shebang.
        let mut supervisor = Command::new(shellcheck);
        supervisor.args(["-s", "bash"]).arg(&files[0]);
        let mut scripts = Command::new(shellcheck);
        scripts.args(&files[1..]);
        for check in [&mut supervisor, &mut scripts] {
            let Some(out) = run_tool(check) else { return };
            assert!(
                out.status.success(),
                "{shellcheck}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// On an SSH host, `render guest-flake` prints the flake that `run` writes there (the
/// host's uid, gid and system; pikaci's flake as the host sees it), and `--hash` names
/// the directory and runner of that flake.
#[test]
fn render_names_the_flake_run_builds_on_an_ssh_host() {
    let Some(ssh) = crate::harness::testbed_ssh() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let host = std::env::var("PIKACI_TEST_SSH_HOST").unwrap();
    let config = format!(
        "[defaults]\nbackend = \"microvm\"\nhost = \"{host}\"\nwork-dir = \"{work}\"\n\n\
         [ssh]\nidentity-file = \"{key}\"\nknown-hosts-file = \"{known}\"\n\n\
         [backends.microvm]\npikaci-flake = \"path:/nonexistent/pikaci\"\n\n\
         [jobs.a]\ncommand = \"true\"\ntimeout = \"1m\"\n",
        work = work.path().display(),
        key = ssh.identity.unwrap().display(),
        known = ssh.known_hosts.unwrap().display(),
    );
    let repo = crate::harness::Repo::new(&config);
    let rendered = repo.pikaci(&["render", "guest-flake"]);
    rendered.expect(0);
    let hash = repo.pikaci(&["render", "guest-flake", "--hash"]);
    hash.expect(0);
    // The build fails (the pikaci flake does not exist), after the flake is written.
    let run = repo.pikaci(&["run", "a"]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    let written = work
        .path()
        .join("flakes")
        .join(hash.stdout().trim())
        .join("flake.nix");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap_or_else(|e| panic!("{}: {e}", written.display())),
        rendered.stdout()
    );
}
