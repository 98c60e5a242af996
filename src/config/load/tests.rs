use std::path::Path;
use std::time::Duration;

use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/repo/pikaci.toml"), text)
}

fn error_of(text: &str) -> String {
    parse_str(text)
        .expect_err("config should be rejected")
        .to_string()
}

const GOOD: &str = r#"
[defaults]
backend = "host"
host = "ssh://ci@builder:2222"
timeout = "5m"

[backends.microvm]
hypervisor = "cloud-hypervisor"
vcpu = 4
memory = "4GiB"

[ssh]
identity-file = "keys/ci"
known-hosts-file = "/etc/ci/known_hosts"
connect-timeout = "5s"

[backends.incus]
project = "pikaci"
image = "pikaci/dev"
instance-type = "container"
profiles = ["default", "ci"]
limits = { cpu = 2, memory = "4GiB" }
sudo = true

[inputs]
toolchain = ".#ci-toolchain"

[jobs.build]
command = "cargo build"
inputs = ["toolchain"]

[jobs.test]
command = "cargo test"
needs = ["build"]
timeout = "90s"
root = true
writable-workspace = true
env = { RUST_BACKTRACE = "1" }

[targets.ci]
description = "Everything"
paths = ["src/**", "Cargo.*"]
jobs = ["test"]
"#;

#[test]
fn reads_a_full_config_into_types() {
    let config = parse_str(GOOD).unwrap();
    assert_eq!(config.root, Path::new("/repo"));
    assert_eq!(config.defaults.backend, BackendKind::Host);
    assert_eq!(
        config.main_host().spec,
        HostSpec::Ssh {
            user: Some("ci".into()),
            host: "builder".into(),
            port: Some(2222)
        }
    );
    assert_eq!(config.backends.microvm.memory_bytes, 4 << 30);
    assert_eq!(
        config.ssh.identity_file.as_deref(),
        Some(Path::new("/repo/keys/ci"))
    );
    assert_eq!(
        config.ssh.known_hosts_file.as_deref(),
        Some(Path::new("/etc/ci/known_hosts"))
    );
    assert_eq!(config.ssh.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.backends.incus.instance_type, InstanceType::Container);
    let limits: Vec<_> = config.backends.incus.limits.iter().collect();
    assert_eq!(
        limits,
        [
            (&"cpu".into(), &"2".into()),
            (&"memory".into(), &"4GiB".into())
        ]
    );
    assert!(config.backends.incus.sudo);
    let build = &config.jobs["build"];
    assert_eq!(
        build.timeout,
        Duration::from_secs(300),
        "inherits the default timeout"
    );
    assert_eq!(build.inputs, vec![Id::new("toolchain").unwrap()]);
    let test = &config.jobs["test"];
    assert_eq!(test.timeout, Duration::from_secs(90));
    assert!(test.root && test.writable_workspace);
    assert_eq!(test.env["RUST_BACKTRACE"], "1");
    assert_eq!(config.targets["ci"].paths, vec!["src/**", "Cargo.*"]);
}

#[test]
fn defaults_when_sections_are_missing() {
    let config = parse_str("[jobs.a]\ncommand = \"true\"\n").unwrap();
    assert_eq!(config.defaults.backend, BackendKind::Microvm);
    assert_eq!(config.main_host().spec, HostSpec::Local);
    assert_eq!(config.main_host().name.as_str(), DEFAULT_HOST);
    assert_eq!(config.hosts.len(), 1);
    assert_eq!(config.jobs["a"].timeout, Duration::from_secs(1200));
}

#[test]
fn unknown_key_names_key_path_and_position() {
    insta::assert_snapshot!(error_of("[jobs.clippy]\ncomand = \"x\"\n"), @"/repo/pikaci.toml:2:1: jobs.clippy.comand: unknown field `comand`, expected one of `command`, `backend`, `inputs`, `needs`, `timeout`, `root`, `writable-workspace`, `env`, `secrets`, `shell`, `runs-on`, `retries`, `incus-target`");
}

#[test]
fn unknown_top_level_section() {
    insta::assert_snapshot!(error_of("[job.x]\ncommand = \"x\"\n"), @"/repo/pikaci.toml:1:2: job: unknown field `job`, expected one of `defaults`, `backends`, `ssh`, `hosts`, `nix`, `inputs`, `jobs`, `targets`");
}

#[test]
fn invalid_job_id() {
    insta::assert_snapshot!(error_of("[jobs.\"a/b\"]\ncommand = \"x\"\n"), @r#"/repo/pikaci.toml:1:7: jobs."a/b": invalid id `a/b`: ids start with a letter or digit and contain only letters, digits, `.`, `_` and `-`"#);
}

#[test]
fn invalid_ids_with_dots_dashes_and_spaces() {
    for id in ["\"..\"", "\"-rf\"", "\"a b\""] {
        let err = error_of(&format!("[jobs.{id}]\ncommand = \"x\"\n"));
        assert!(err.contains("invalid id"), "{id}: {err}");
    }
}

#[test]
fn unknown_job_in_target() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\n[targets.t]\njobs = [\"a\", \"b\"]\n"), @"/repo/pikaci.toml:4:14: targets.t.jobs: unknown job `b`; defined jobs: `a`");
}

#[test]
fn unknown_input_in_job() {
    insta::assert_snapshot!(error_of("[inputs]\ntc = \".#tc\"\n[jobs.a]\ncommand = \"x\"\ninputs = [\"rust\"]\n"), @"/repo/pikaci.toml:5:11: jobs.a.inputs: unknown input `rust`; defined inputs: `tc`");
}

#[test]
fn unknown_need() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\nneeds = [\"nope\"]\n"), @"/repo/pikaci.toml:3:10: jobs.a.needs: unknown job `nope`; defined jobs: `a`");
}

#[test]
fn cycle_in_needs() {
    let text = "[jobs.a]\ncommand = \"x\"\nneeds = [\"b\"]\n[jobs.b]\ncommand = \"x\"\nneeds = [\"c\"]\n[jobs.c]\ncommand = \"x\"\nneeds = [\"a\"]\n";
    insta::assert_snapshot!(error_of(text), @"/repo/pikaci.toml:3:10: jobs.a.needs: jobs depend on each other in a cycle: a -> b -> c -> a");
}

#[test]
fn self_need_is_a_cycle() {
    let err = error_of("[jobs.a]\ncommand = \"x\"\nneeds = [\"a\"]\n");
    assert!(err.contains("cycle: a -> a"), "{err}");
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\ntimeout = \"10 parsecs\"\n"), @r#"/repo/pikaci.toml:3:11: jobs.a.timeout: invalid duration `10 parsecs`: unknown time unit "parsecs", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); write it like `90s`, `10m` or `1h 30m`"#);
}

#[test]
fn zero_duration() {
    insta::assert_snapshot!(error_of("[defaults]\ntimeout = \"0s\"\n"), @"/repo/pikaci.toml:2:11: defaults.timeout: invalid duration `0s`: must be greater than zero");
}

#[test]
fn bad_backend_name() {
    insta::assert_snapshot!(error_of("[defaults]\nbackend = \"docker\"\n"), @"/repo/pikaci.toml:2:11: defaults.backend: unknown variant `docker`, expected one of `host`, `microvm`, `incus`");
}

#[test]
fn bad_host() {
    insta::assert_snapshot!(error_of("[defaults]\nhost = \"builder:22\"\n"), @"/repo/pikaci.toml:2:8: defaults.host: invalid host `builder:22`: expected `local` or `ssh://[user@]host[:port]`");
}

#[test]
fn bad_secret() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"true\"\nsecrets = [\"MY-TOKEN\"]\n"), @"/repo/pikaci.toml:3:12: jobs.a.secrets: `MY-TOKEN` is not an environment variable name");
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"true\"\nsecrets = [\"T\"]\nenv = { T = \"x\" }\n"), @"/repo/pikaci.toml:3:12: jobs.a.secrets: `T` is also in jobs.a.env; a secret comes from pikaci's environment only");
}

#[test]
fn bad_incus_limit() {
    insta::assert_snapshot!(error_of("[backends.incus]\nlimits = { \"cpu count\" = 2 }\n"), @r#"/repo/pikaci.toml:2:26: backends.incus.limits."cpu count": is not an Incus limit name (letters, digits, `.`, `-`, `_`; e.g. `cpu`, `memory`)"#);
    insta::assert_snapshot!(error_of("[backends.incus]\nlimits = { memory = \"\" }\n"), @"/repo/pikaci.toml:2:21: backends.incus.limits.memory: must not be empty");
    // Found in a user's trial: the value error named serde internals and an untagged enum.
    insta::assert_snapshot!(error_of("[backends.incus]\nlimits = { \"bad key\" = true }\n"), @r#"/repo/pikaci.toml:2:24: backends.incus.limits."bad key": invalid type: boolean `true`, expected a number (`cpu = 2`) or a string (`memory = "4GiB"`)"#);
    insta::assert_snapshot!(error_of("[backends.incus]\nlimits = { cpu = -1 }\n"), @r#"/repo/pikaci.toml:2:18: backends.incus.limits.cpu: invalid value: integer `-1`, expected a number (`cpu = 2`) or a string (`memory = "4GiB"`)"#);
}

#[test]
fn bad_memory() {
    insta::assert_snapshot!(error_of("[backends.microvm]\nmemory = \"4GB\"\n"), @"/repo/pikaci.toml:2:10: backends.microvm.memory: invalid size unit `GB` in `4GB`: allowed units are B, KiB, MiB, GiB, TiB");
}

#[test]
fn bad_glob() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\n[targets.t]\njobs = [\"a\"]\npaths = [\"src/[\"]\n"), @"/repo/pikaci.toml:5:10: targets.t.paths: invalid glob: error parsing glob 'src/[': unclosed character class; missing ']'");
}

#[test]
fn empty_target() {
    insta::assert_snapshot!(error_of("[targets.t]\njobs = []\n"), @"/repo/pikaci.toml:2:8: targets.t.jobs: a target needs at least one job, or a `flake` whose derivations are its jobs");
}

#[test]
fn a_flake_target_needs_an_attribute() {
    insta::assert_snapshot!(error_of("[targets.t]\nflake = \".\"\n"), @r#"/repo/pikaci.toml:2:9: targets.t.flake: `.` names no attribute; write a flake reference and an attribute path, such as ".#checks" or ".#packages""#);
    insta::assert_snapshot!(error_of("[targets.t]\nflake = \"github:o/r#\"\n"), @r#"/repo/pikaci.toml:2:9: targets.t.flake: `github:o/r#` names no attribute; write a flake reference and an attribute path, such as ".#checks" or ".#packages""#);
}

#[test]
fn needs_on_a_flake_target_job_wait_for_its_evaluation() {
    let config = parse_str(
        "[targets.checks]\nflake = \".#checks\"\n[jobs.deploy]\ncommand = \"x\"\nneeds = [\"checks.ok\"]\n",
    )
    .unwrap();
    assert_eq!(config.jobs["deploy"].needs[0].as_str(), "checks.ok");
    assert_eq!(config.targets["checks"].flake.as_deref(), Some(".#checks"));
    assert!(config.targets["checks"].jobs.is_empty());
    // Not a flake target's: still an unknown job.
    let err = error_of("[jobs.deploy]\ncommand = \"x\"\nneeds = [\"checks.ok\"]\n");
    assert!(err.contains("unknown job `checks.ok`"), "{err}");
}

#[test]
fn a_cache_and_its_signing_key() {
    let config =
        parse_str("[nix]\ncache = \"file:///var/cache/ci\"\nsigning-key-file = \"ci.sec\"\n")
            .unwrap();
    assert_eq!(config.nix.cache.as_deref(), Some("file:///var/cache/ci"));
    assert_eq!(
        config.nix.signing_key_file.as_deref(),
        Some(std::path::Path::new("/repo/ci.sec"))
    );
    insta::assert_snapshot!(error_of("[nix]\nsigning-key-file = \"ci.sec\"\n"), @"/repo/pikaci.toml:2:20: nix.signing-key-file: signs what is pushed to `nix.cache`, which is not set");
    insta::assert_snapshot!(error_of("[nix]\ncache = \"\"\n"), @r#"/repo/pikaci.toml:2:9: nix.cache: must be a Nix store URL, such as "file:///var/cache/ci" or "s3://bucket""#);
}

#[test]
fn job_and_target_share_a_name() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\n[targets.a]\njobs = [\"a\"]\n"), @"/repo/pikaci.toml:4:8: targets.a: `a` is both a job and a target; `pikaci run a` would be ambiguous");
}

#[test]
fn missing_command() {
    insta::assert_snapshot!(error_of("[jobs.a]\ntimeout = \"1m\"\n"), @"/repo/pikaci.toml:1:1: jobs.a: missing field `command`");
}

#[test]
fn toml_syntax_error() {
    insta::assert_snapshot!(error_of("[jobs.a\ncommand = \"x\"\n"), @"/repo/pikaci.toml:1:8: unclosed table, expected `]`");
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"x\"\nroot = \"yes\"\n"), @r#"/repo/pikaci.toml:3:8: jobs.a.root: invalid type: string "yes", expected a boolean"#);
}

#[test]
fn hosts_parse() {
    assert_eq!(parse_host("local"), Ok(HostSpec::Local));
    assert_eq!(
        parse_host("ssh://h"),
        Ok(HostSpec::Ssh {
            user: None,
            host: "h".into(),
            port: None
        })
    );
    assert_eq!(
        parse_host("ssh://u@127.0.0.1:22"),
        Ok(HostSpec::Ssh {
            user: Some("u".into()),
            host: "127.0.0.1".into(),
            port: Some(22)
        })
    );
    for bad in [
        "ssh://",
        "ssh://-oProxyCommand=x",
        "ssh://@h",
        "ssh://h:port",
        "http://h",
        "ssh://a b",
    ] {
        assert!(parse_host(bad).is_err(), "{bad}");
    }
}

#[test]
fn hypervisors_pikaci_guests_cannot_use() {
    insta::assert_snapshot!(error_of("[backends.microvm]\nhypervisor = \"kvmtool\"\n"), @r#"/repo/pikaci.toml:2:14: backends.microvm.hypervisor: `kvmtool` cannot serve virtiofs shares (microvm.nix's runner throws "virtiofs shares not implemented for kvmtool"), and a pikaci guest gets its workspace, request and artifacts over virtiofs; use one of qemu, cloud-hypervisor, crosvm, stratovirt, alioth"#);
    insta::assert_snapshot!(error_of("[backends.microvm]\nvcpu = 2\nhypervisor = \"vfkit\"\n"), @r#"/repo/pikaci.toml:3:14: backends.microvm.hypervisor: `vfkit` runs only on macOS hosts (microvm.nix: "vfkit only works on macOS"), and pikaci's microVM hosts are Linux, where it starts a virtiofsd for each share; use one of qemu, cloud-hypervisor, crosvm, stratovirt, alioth"#);
    insta::assert_snapshot!(error_of("[backends.microvm]\nhypervisor = \"kvm\"\n"), @"/repo/pikaci.toml:2:14: backends.microvm.hypervisor: `kvm` is not a microvm.nix hypervisor; pikaci guests can use qemu, cloud-hypervisor, crosvm, stratovirt, alioth");
    let crosvm = parse_str("[backends.microvm]\nhypervisor = \"crosvm\"\n").unwrap();
    assert_eq!(crosvm.backends.microvm.hypervisor, "crosvm");
}

#[test]
fn qemu_memory_of_exactly_2gib() {
    insta::assert_snapshot!(error_of("[backends.microvm]\nmemory = \"2GiB\"\n"), @"/repo/pikaci.toml:2:10: backends.microvm.memory: QEMU hangs with exactly 2GiB of memory (microvm.nix warns about it, its issue 171); use, e.g., 2047MiB or 3GiB");
    insta::assert_snapshot!(error_of("[backends.microvm]\nmemory = \"2048MiB\"\n"), @"/repo/pikaci.toml:2:10: backends.microvm.memory: QEMU hangs with exactly 2GiB of memory (microvm.nix warns about it, its issue 171); use, e.g., 2047MiB or 3GiB");
    let other =
        parse_str("[backends.microvm]\nhypervisor = \"cloud-hypervisor\"\nmemory = \"2GiB\"\n");
    assert_eq!(other.unwrap().backends.microvm.memory_bytes, 2 << 30);
    let default = parse_str("").unwrap().backends.microvm;
    assert_eq!(
        super::super::hypervisor::check_memory(&default.hypervisor, default.memory_bytes),
        Ok(())
    );
}

#[test]
fn shell_defaults_to_ci_bash_and_can_be_changed() {
    let config = parse_str("[jobs.a]\ncommand = \"true\"\n").unwrap();
    assert_eq!(config.jobs["a"].shell, crate::protocol::DEFAULT_SHELL);
    let config = parse_str(
        "[defaults]\nshell = [\"sh\", \"-euc\"]\n[jobs.a]\ncommand = \"true\"\n\
         [jobs.b]\ncommand = \"true\"\nshell = [\"bash\", \"-c\"]\n",
    )
    .unwrap();
    assert_eq!(config.jobs["a"].shell, ["sh", "-euc"]);
    assert_eq!(config.jobs["b"].shell, ["bash", "-c"]);
}

#[test]
fn bad_shell() {
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"true\"\nshell = []\n"), @r#"/repo/pikaci.toml:3:9: jobs.a.shell: must name a program, e.g. ["bash", "-eo", "pipefail", "-c"]"#);
    insta::assert_snapshot!(error_of("[defaults]\nshell = [\" \", \"-c\"]\n"), @r#"/repo/pikaci.toml:2:9: defaults.shell: the program (first element) is empty"#);
    insta::assert_snapshot!(error_of("[jobs.a]\ncommand = \"true\"\nshell = \"bash -c\"\n"), @r#"/repo/pikaci.toml:3:9: jobs.a.shell: must be a list, such as ["bash", "-c"]; pikaci does not split the string `bash -c`"#);
}

const POOL: &str = r#"
[hosts.a]
url = "ssh://ci@a"
slots = 4
labels = ["gpu", "big-disk"]
[hosts.b]
url = "local"
work-dir = "/srv/pikaci"
[nix]
build-host = "a"
[jobs.train]
command = "true"
runs-on = ["gpu", "kvm"]
retries = 2
[jobs.any]
command = "true"
"#;

#[test]
fn a_pool_of_hosts_with_slots_labels_and_a_build_host() {
    let config = parse_str(POOL).unwrap();
    let a = &config.hosts["a"];
    assert_eq!(a.slots, Some(4));
    assert_eq!(a.labels.iter().collect::<Vec<_>>(), ["big-disk", "gpu"]);
    assert_eq!(config.hosts["b"].slots, None);
    assert_eq!(config.work_dir_on(&config.hosts["b"]), Some("/srv/pikaci"));
    assert_eq!(
        config.nix.build_host.as_ref().map(|h| h.as_str()),
        Some("a")
    );
    assert_eq!(config.jobs["train"].runs_on, ["gpu", "kvm"]);
    assert_eq!(config.jobs["train"].retries, 2);
    assert!(config.jobs["any"].runs_on.is_empty());
    assert_eq!(config.main_host().name.as_str(), "a");
}

#[test]
fn pool_errors_point_at_the_key() {
    let pool = |extra: &str| format!("[hosts.a]\nurl = \"local\"\nlabels = [\"gpu\"]\n{extra}");
    insta::assert_snapshot!(error_of("[hosts.a]\nurl = \"a:22\"\n"), @"/repo/pikaci.toml:2:7: hosts.a.url: invalid host `a:22`: expected `local` or `ssh://[user@]host[:port]`");
    insta::assert_snapshot!(error_of("[hosts.a]\nurl = \"local\"\nslots = 0\n"), @"/repo/pikaci.toml:3:9: hosts.a.slots: must be at least 1 (leave it out to size it from the host's cores)");
    insta::assert_snapshot!(error_of("[hosts.a]\nurl = \"local\"\nlabels = [\"g p u\"]\n"), @"/repo/pikaci.toml:3:11: hosts.a.labels: `g p u` is not a label: letters, digits, `.`, `_` and `-`");
    insta::assert_snapshot!(error_of("[defaults]\nhost = \"local\"\n[hosts.a]\nurl = \"local\"\n"), @"/repo/pikaci.toml:2:8: defaults.host: is the pool of one host; with [hosts] tables, give this host a [hosts.NAME] of its own");
    insta::assert_snapshot!(error_of(&pool("[jobs.j]\ncommand = \"true\"\nruns-on = [\"tpu\"]\n")), @"/repo/pikaci.toml:6:12: jobs.j.runs-on: no host has the label `tpu`; known labels: `aarch64-linux`, `gpu`, `kvm`, `x86_64-linux`");
    insta::assert_snapshot!(error_of(&pool("[hosts.b]\nurl = \"local\"\nlabels = [\"tpu\"]\n[jobs.j]\ncommand = \"true\"\nruns-on = [\"gpu\", \"tpu\"]\n")), @"/repo/pikaci.toml:9:11: jobs.j.runs-on: no host can run this job: a lacks `tpu`; b lacks `gpu`");
    insta::assert_snapshot!(error_of(&pool("[jobs.j]\ncommand = \"true\"\nruns-on = [\"x86_64-linux\", \"aarch64-linux\"]\n")), @"/repo/pikaci.toml:6:11: jobs.j.runs-on: names two systems; a host is one of them");
    insta::assert_snapshot!(error_of(&pool("[jobs.j]\ncommand = \"true\"\nbackend = \"host\"\nruns-on = [\"gpu\"]\n")), @"/repo/pikaci.toml:7:11: jobs.j.runs-on: a `host` job runs on this machine; runs-on picks hosts for microvm and incus jobs");
    insta::assert_snapshot!(error_of(&pool("[nix]\nbuild-host = \"z\"\n")), @"/repo/pikaci.toml:5:14: nix.build-host: unknown host `z`; defined hosts: `a`");
}
