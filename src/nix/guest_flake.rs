//! The guest flake for a *guest profile*: everything a microVM runner depends on, and
//! nothing job-specific (command, timeout, inputs and environment reach the guest in the
//! request file), so its hash names the runner and an unchanged profile builds nothing.
//!
//! The flake calls `lib.mkGuest` of pikaci's own flake with the arguments documented in
//! docs/nix.md; `nixosConfigurations.pikaci-guest.config.microvm.declaredRunner` is the
//! runner that `nix build` produces.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Expr;
use crate::config::MicrovmSettings;

/// Set when pikaci is built by its own flake: `path:<its source in the store>?narHash=…`
/// (flake.nix), so guest flakes use the `lib.mkGuest` and agent of this very build.
pub const BUILT_FROM: Option<&str> = option_env!("PIKACI_FLAKE");

/// The flake that provides `lib.mkGuest`: `backends.microvm.pikaci-flake` (or `explicit`,
/// from the command line), else the one this pikaci was built from.
pub fn pikaci_flake(
    settings: &MicrovmSettings,
    explicit: Option<String>,
) -> Result<String, NoPikaciFlake> {
    explicit
        .or(settings.pikaci_flake.clone())
        .or(BUILT_FROM.map(str::to_string))
        .ok_or(NoPikaciFlake)
}

#[derive(Debug, thiserror::Error)]
#[error(
    "this pikaci was not built by its flake, so it cannot name one for the guest: set backends.microvm.pikaci-flake (the flake that provides lib.mkGuest, e.g. pinned to a revision) or backends.microvm.runner"
)]
pub struct NoPikaciFlake;

/// Where the guest flake finds pikaci's flake on the host. The package names its own
/// source in this machine's store (`path:/nix/store/…?narHash=…`); a remote host's store
/// lacks it, so the run sends that tree to `<work>/pikaci-source/<name>` there and the
/// flake names the copy, with the same narHash (Nix checks it when it locks the input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PikaciOnHost {
    /// The reference the guest flake's `pikaci` input gets.
    pub flake: String,
    /// The local store path to send, and where it goes on the host.
    pub send: Option<(PathBuf, PathBuf)>,
}

impl PikaciOnHost {
    pub fn resolve(flake: &str, work_dir: &Path, local: bool) -> PikaciOnHost {
        let as_is = PikaciOnHost {
            flake: flake.to_string(),
            send: None,
        };
        let Some(rest) = flake.strip_prefix("path:") else {
            return as_is;
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = Path::new(path);
        let in_store = path.parent() == Some(Path::new("/nix/store"));
        let (false, true, Some(name)) = (local, in_store, path.file_name()) else {
            return as_is;
        };
        let copy = work_dir.join("pikaci-source").join(name);
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        PikaciOnHost {
            flake: format!("path:{}{query}", copy.display()),
            send: Some((path.to_path_buf(), copy)),
        }
    }
}

/// What a guest profile takes from the host that builds and boots the guest, read there
/// with [`HOST_FACTS`]: the user's ids (files the job writes to shares are theirs) and
/// the machine, whose Linux the guest runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    /// A Nix system: `x86_64-linux` or `aarch64-linux`.
    pub system: String,
}

/// Prints the host user's uid, gid and the machine, a line each.
pub const HOST_FACTS: &str = "id -u && id -g && uname -m";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostFactsError {
    #[error("cannot read the host user's uid, gid and machine: `{HOST_FACTS}` printed {printed:?}")]
    Unreadable { printed: String },
    #[error(
        "the host's machine is `{machine}`; pikaci's guests are x86_64-linux or aarch64-linux (its flake builds the agent for those)"
    )]
    UnsupportedMachine { machine: String },
}

impl HostFacts {
    /// Reads what [`HOST_FACTS`] printed.
    pub fn parse(printed: &str) -> Result<HostFacts, HostFactsError> {
        let unreadable = || HostFactsError::Unreadable {
            printed: printed.to_string(),
        };
        let lines: Vec<&str> = printed.lines().map(str::trim).collect();
        let [uid, gid, machine] = lines[..] else {
            return Err(unreadable());
        };
        let system = match machine {
            "x86_64" | "amd64" => "x86_64-linux",
            // darwin's `uname -m` says arm64; its guests are aarch64-linux.
            "aarch64" | "arm64" => "aarch64-linux",
            _ => {
                return Err(HostFactsError::UnsupportedMachine {
                    machine: machine.to_string(),
                });
            }
        };
        Ok(HostFacts {
            uid: uid.parse().map_err(|_| unreadable())?,
            gid: gid.parse().map_err(|_| unreadable())?,
            system: system.to_string(),
        })
    }
}

/// The configuration name inside every generated flake.
pub const GUEST_NAME: &str = "pikaci-guest";

/// A virtiofs share the guest mounts (tags and mount points: [`crate::guest_layout`]).
pub use crate::guest_layout::ShareTag as Share;

/// The shares every guest has: workspace, artifacts, the request, the host's Nix store.
pub const SHARES: &[Share] = &Share::ALL;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestProfile {
    pub system: String,
    pub hypervisor: String,
    pub vcpu: u32,
    pub memory_mib: u64,
    /// The job user's ids in the guest: the host user's, so files written to shares
    /// belong to the host user.
    pub uid: u32,
    pub gid: u32,
    pub shares: Vec<Share>,
    /// Flake reference of pikaci itself, which provides `lib.mkGuest`.
    pub pikaci_flake: String,
}

impl GuestProfile {
    pub fn from_settings(
        settings: &MicrovmSettings,
        pikaci_flake: String,
        host: &HostFacts,
    ) -> GuestProfile {
        // The job user is never root: with a root host user, jobs write shares as 1000.
        let (uid, gid) = if host.uid == 0 {
            (1000, 1000)
        } else {
            (host.uid, host.gid)
        };
        GuestProfile {
            system: host.system.clone(),
            hypervisor: settings.hypervisor.clone(),
            vcpu: settings.vcpu,
            memory_mib: settings.memory_bytes >> 20,
            uid,
            gid,
            shares: SHARES.to_vec(),
            pikaci_flake,
        }
    }

    pub fn flake(&self) -> Expr {
        let shares = self
            .shares
            .iter()
            .map(|s| {
                Expr::attrs([
                    ("tag", Expr::str(s.tag())),
                    ("mountPoint", Expr::str(s.mount_point())),
                ])
            })
            .collect();
        let guest = Expr::Ident("pikaci")
            .select(&["lib", "mkGuest"])
            .apply(Expr::attrs([
                ("system", Expr::str(&self.system)),
                ("hypervisor", Expr::str(&self.hypervisor)),
                ("vcpu", Expr::Int(self.vcpu.into())),
                ("memoryMiB", Expr::Int(self.memory_mib as i64)),
                ("uid", Expr::Int(self.uid.into())),
                ("gid", Expr::Int(self.gid.into())),
                ("shares", Expr::List(shares)),
            ]));
        Expr::attrs([
            (
                "description",
                Expr::str("pikaci guest profile (generated by pikaci; do not edit)"),
            ),
            (
                "inputs",
                Expr::attrs([(
                    "pikaci",
                    Expr::attrs([("url", Expr::str(&self.pikaci_flake))]),
                )]),
            ),
            (
                "outputs",
                Expr::Lambda {
                    args: vec!["self", "pikaci"],
                    ellipsis: true,
                    body: Box::new(Expr::attrs([(
                        "nixosConfigurations",
                        Expr::attrs([(GUEST_NAME, guest)]),
                    )])),
                },
            ),
        ])
    }

    /// `flake.nix` as written to the host.
    pub fn flake_nix(&self) -> String {
        self.flake().to_nix()
    }

    /// Names the runner: the first 16 hex digits of the flake's sha256.
    pub fn hash(&self) -> String {
        crate::snapshot::hex(&Sha256::digest(self.flake_nix().as_bytes())[..8])
    }

    /// The attribute `nix build` builds from the generated flake.
    pub fn runner_attribute() -> String {
        format!("nixosConfigurations.{GUEST_NAME}.config.microvm.declaredRunner")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> GuestProfile {
        GuestProfile {
            system: "x86_64-linux".into(),
            hypervisor: "qemu".into(),
            vcpu: 2,
            memory_mib: 3072,
            uid: 1000,
            gid: 100,
            shares: SHARES.to_vec(),
            pikaci_flake: "github:example/pikaci".into(),
        }
    }

    #[test]
    fn flake_shape() {
        insta::assert_snapshot!(profile().flake_nix(), @r#"
        {
          description = "pikaci guest profile (generated by pikaci; do not edit)";
          inputs = {
            pikaci = {
              url = "github:example/pikaci";
            };
          };
          outputs = { self, pikaci, ... }: {
            nixosConfigurations = {
              pikaci-guest = pikaci.lib.mkGuest {
                system = "x86_64-linux";
                hypervisor = "qemu";
                vcpu = 2;
                memoryMiB = 3072;
                uid = 1000;
                gid = 100;
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
              };
            };
          };
        }
        "#);
    }

    #[test]
    fn host_facts_are_read_as_printed() {
        let facts = |text: &str| HostFacts::parse(text);
        assert_eq!(
            facts("1500\n100\nx86_64\n"),
            Ok(HostFacts {
                uid: 1500,
                gid: 100,
                system: "x86_64-linux".into()
            })
        );
        // darwin calls it arm64; its guests are aarch64-linux.
        assert_eq!(facts("501\n20\narm64\n").unwrap().system, "aarch64-linux");
        assert_eq!(facts("0\n0\naarch64").unwrap().system, "aarch64-linux");
        let errors: Vec<String> = ["1000\n100\n", "me\n100\nx86_64\n", "1000\n100\nriscv64\n"]
            .iter()
            .map(|t| facts(t).unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!(errors.join("\n"), @r#"
            cannot read the host user's uid, gid and machine: `id -u && id -g && uname -m` printed "1000\n100\n"
            cannot read the host user's uid, gid and machine: `id -u && id -g && uname -m` printed "me\n100\nx86_64\n"
            the host's machine is `riscv64`; pikaci's guests are x86_64-linux or aarch64-linux (its flake builds the agent for those)
        "#);
    }

    #[test]
    fn profile_takes_the_hosts_system_and_ids() {
        let host = HostFacts {
            uid: 999,
            gid: 100,
            system: "aarch64-linux".into(),
        };
        let settings = MicrovmSettings::default();
        let p = GuestProfile::from_settings(&settings, "path:/p".into(), &host);
        assert_eq!(
            (p.system.as_str(), p.uid, p.gid),
            ("aarch64-linux", 999, 100)
        );
        assert_eq!(p.memory_mib, 3072, "the default avoids QEMU's hang at 2048");
        let root = HostFacts {
            uid: 0,
            gid: 0,
            ..host
        };
        let p = GuestProfile::from_settings(&settings, "path:/p".into(), &root);
        assert_eq!((p.uid, p.gid), (1000, 1000), "the job user is never root");
    }

    #[test]
    fn pikaci_flake_prefers_what_is_configured() {
        let mut settings = MicrovmSettings::default();
        let explicit = pikaci_flake(&settings, Some("github:a/b".into())).unwrap();
        assert_eq!(explicit, "github:a/b");
        settings.pikaci_flake = Some("github:c/d".into());
        assert_eq!(pikaci_flake(&settings, None).unwrap(), "github:c/d");
        settings.pikaci_flake = None;
        // cargo builds have no PIKACI_FLAKE; the package build sets it (flake.nix).
        match BUILT_FROM {
            None => assert!(pikaci_flake(&settings, None).is_err()),
            Some(built) => assert_eq!(pikaci_flake(&settings, None).unwrap(), built),
        }
    }

    #[test]
    fn pikaci_source_is_sent_to_remote_hosts_only() {
        let pinned = "path:/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source?narHash=sha256-AAAA";
        let work = Path::new("/home/ci/.cache/pikaci");
        let remote = PikaciOnHost::resolve(pinned, work, false);
        insta::assert_debug_snapshot!(remote, @r#"
            PikaciOnHost {
                flake: "path:/home/ci/.cache/pikaci/pikaci-source/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source?narHash=sha256-AAAA",
                send: Some(
                    (
                        "/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source",
                        "/home/ci/.cache/pikaci/pikaci-source/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-source",
                    ),
                ),
            }
        "#);
        assert_eq!(PikaciOnHost::resolve(pinned, work, true).flake, pinned);
        for other in ["github:a/b/0123abc", "path:/src/pikaci", "path:/nix/store"] {
            let resolved = PikaciOnHost::resolve(other, work, false);
            assert_eq!((resolved.flake.as_str(), resolved.send), (other, None));
        }
    }

    #[test]
    fn hash_follows_the_profile_only() {
        let base = profile();
        assert_eq!(base.hash(), profile().hash(), "stable");
        let more_cpus = GuestProfile {
            vcpu: 4,
            ..profile()
        };
        assert_ne!(base.hash(), more_cpus.hash());
        assert_eq!(base.hash().len(), 16);
    }
}
