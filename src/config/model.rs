//! The validated configuration. Everything downstream reads these types, never TOML.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::Id;

#[derive(Clone, Debug)]
pub struct Config {
    /// The `pikaci.toml` that was read.
    pub path: PathBuf,
    /// Its directory: the workspace that is snapshotted.
    pub root: PathBuf,
    pub defaults: Defaults,
    pub backends: Backends,
    pub ssh: SshSettings,
    /// The hosts guests run on, by name; never empty. Without `[hosts]`, one host named
    /// `default` at `defaults.host`.
    pub hosts: BTreeMap<Id, PoolHost>,
    pub nix: NixSettings,
    /// Input name → Nix installable, built once per run.
    pub inputs: BTreeMap<Id, String>,
    pub jobs: BTreeMap<Id, Job>,
    pub targets: BTreeMap<Id, Target>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub backend: BackendKind,
    pub timeout: Duration,
    /// pikaci's directory on the host (synced snapshots, GC roots, job dirs); relative
    /// paths are relative to the SSH user's home. `None`: `.pikaci/host` in the state
    /// dir when local, `.cache/pikaci` over SSH.
    pub work_dir: Option<String>,
    /// The program and arguments every job's command is appended to, unless the job
    /// names its own.
    pub shell: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Host,
    Microvm,
    Incus,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Host => "host",
            BackendKind::Microvm => "microvm",
            BackendKind::Incus => "incus",
        })
    }
}

/// The name of the one host a config without `[hosts]` has.
pub const DEFAULT_HOST: &str = "default";

/// Labels pikaci reads on a host itself; any other label is declared in `[hosts.X]`.
pub const DETECTED_LABELS: [&str; 3] = ["x86_64-linux", "aarch64-linux", "kvm"];

/// One host of the pool: where it is, how many guests it runs at once, what it offers.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolHost {
    pub name: Id,
    pub spec: HostSpec,
    /// Guests at once; `None`: from the host's cores and the guest size, read at run time.
    pub slots: Option<u32>,
    /// As declared; the detected ones are added when the host is probed.
    pub labels: std::collections::BTreeSet<String>,
    /// Overrides `defaults.work-dir` on this host.
    pub work_dir: Option<String>,
}

impl Config {
    /// The host a command that works on one host uses unless told otherwise: `default`,
    /// else the first by name.
    pub fn main_host(&self) -> &PoolHost {
        self.hosts
            .get(DEFAULT_HOST)
            .or_else(|| self.hosts.values().next())
            .expect("a config has at least one host")
    }

    /// pikaci's work dir on `host` as configured (see [`Defaults::work_dir`]).
    pub fn work_dir_on<'a>(&'a self, host: &'a PoolHost) -> Option<&'a str> {
        host.work_dir
            .as_deref()
            .or(self.defaults.work_dir.as_deref())
    }
}

/// `[nix]`: where builds happen.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NixSettings {
    /// A pool host that builds inputs and runners for every guest host, through Nix.
    pub build_host: Option<Id>,
    /// `[nix] cache`: a Nix store URL that passed build jobs and inputs are pushed to
    /// after the jobs, and that builds use as a substituter.
    pub cache: Option<String>,
    /// The secret key the pushed paths are signed with (`nix key generate-secret`).
    pub signing_key_file: Option<PathBuf>,
}

/// Where guests run: this machine, or a Linux host reached over SSH.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HostSpec {
    Local,
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSpec::Local => f.write_str("local"),
            HostSpec::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                f.write_str(host)?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Backends {
    pub microvm: MicrovmSettings,
    pub incus: IncusSettings,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MicrovmSettings {
    pub hypervisor: String,
    pub vcpu: u32,
    pub memory_bytes: u64,
    /// A prebuilt runner installable that replaces the generated guest flake.
    pub runner: Option<String>,
    /// Flake reference of pikaci itself, whose `lib.mkGuest` the guest flake calls.
    pub pikaci_flake: Option<String>,
    /// The virtiofsd program on the host.
    pub virtiofsd: String,
    /// How long a guest may take to boot, on top of the job's timeout.
    pub boot_timeout: Duration,
}

impl Default for MicrovmSettings {
    fn default() -> Self {
        MicrovmSettings {
            hypervisor: "qemu".into(),
            vcpu: 2,
            // Not 2GiB: QEMU hangs with exactly that (config::hypervisor::QEMU_HANG_MIB).
            memory_bytes: 3 << 30,
            runner: None,
            pikaci_flake: None,
            virtiofsd: "virtiofsd".into(),
            boot_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceType {
    Vm,
    Container,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IncusSettings {
    pub project: String,
    pub image: String,
    pub instance_type: InstanceType,
    pub profiles: Vec<String>,
    /// `pikaci-guest` inside the image.
    pub guest_agent: String,
    /// Incus `limits.*` keys (without the prefix) and their values, set at `init`.
    pub limits: BTreeMap<String, String>,
    /// Run every `incus` command through `sudo -n` (a host user outside the incus group).
    pub sudo: bool,
    /// An `incus remote` (Incus's HTTPS API): instances and images are named `NAME:…`,
    /// and nothing of the host's filesystem reaches the server.
    pub remote: Option<String>,
    /// The cluster member instances are created on (`--target`); `None` leaves placement
    /// to Incus. A job's own `incus-target` comes first.
    pub target: Option<String>,
}

impl Default for IncusSettings {
    fn default() -> Self {
        IncusSettings {
            project: "default".into(),
            image: "pikaci/dev".into(),
            instance_type: InstanceType::Vm,
            profiles: vec!["default".into()],
            guest_agent: "/run/current-system/sw/bin/pikaci-guest".into(),
            limits: BTreeMap::new(),
            sudo: false,
            remote: None,
            target: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Id,
    pub command: String,
    pub backend: BackendKind,
    pub inputs: Vec<Id>,
    pub needs: Vec<Id>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub root: bool,
    pub writable_workspace: bool,
    pub env: BTreeMap<String, String>,
    /// Environment variables of pikaci whose values the job gets as secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The program and arguments the command is appended to. Plans recorded before the
    /// key existed ran their jobs with the legacy `bash -c`.
    #[serde(default = "legacy_shell")]
    pub shell: Vec<String>,
    /// Labels a host must all have to run the job (`runs-on`).
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "runs-on")]
    pub runs_on: Vec<String>,
    /// How many more times a job that met a host failure may run, on another host.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The Incus cluster member this job's instance is created on, over
    /// `backends.incus.target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incus_target: Option<String>,
    /// A build job of a flake target: its work is `nix build` of this, not `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
}

/// What a build job builds, as its flake target's evaluation found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The flake reference as configured (`.#checks`), relative to the snapshot.
    pub flake: String,
    /// The attribute path under the flake, the system included (`checks.x86_64-linux`).
    pub attr_path: String,
    /// The attribute's name as Nix has it (the job id may be mapped from it).
    pub name: String,
    /// Whether outputs already valid or in the cache are recorded `cached` unbuilt
    /// (`false` with `--no-cache-skip`).
    pub skip_cached: bool,
}

impl BuildSpec {
    /// `<flake>#<attr path>.<name>`, the name quoted when Nix needs it.
    pub fn installable(&self) -> String {
        let (reference, _) = self.flake.split_once('#').unwrap_or((&self.flake, ""));
        format!(
            "{reference}#{}.{}",
            self.attr_path,
            crate::nix::flake_jobs::attr_name(&self.name)
        )
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn legacy_shell() -> Vec<String> {
    crate::protocol::LEGACY_SHELL
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub id: Id,
    pub description: Option<String>,
    /// Globs: the target runs only when a matching file changed. Empty = always.
    pub paths: Vec<String>,
    /// The target's TOML jobs; a flake target's build jobs are added to a run's copy of
    /// the config when its flake is evaluated (`run::flake_targets`).
    pub jobs: Vec<Id>,
    /// `flake = ".#checks"`: every derivation of that attribute set is a build job.
    pub flake: Option<String>,
}

/// How `ssh://` hosts are reached. Relative paths are relative to the config file.
#[derive(Clone, Debug, PartialEq)]
pub struct SshSettings {
    pub identity_file: Option<PathBuf>,
    /// When set, host keys are checked strictly against this file only.
    pub known_hosts_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            identity_file: None,
            known_hosts_file: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}
