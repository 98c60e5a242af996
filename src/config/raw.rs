//! The file as written: serde types that keep spans for error messages.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

use super::model::{BackendKind, InstanceType};
use super::units::DurationText;
use crate::ids::Id;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub backends: RawBackends,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub hosts: BTreeMap<Id, RawHost>,
    #[serde(default)]
    pub nix: RawNix,
    #[serde(default)]
    pub inputs: BTreeMap<Id, Spanned<String>>,
    #[serde(default)]
    pub jobs: BTreeMap<Id, RawJob>,
    #[serde(default)]
    pub targets: BTreeMap<Id, RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHost {
    pub url: Spanned<String>,
    pub slots: Option<Spanned<u32>>,
    #[serde(default)]
    pub labels: Vec<Spanned<String>>,
    pub work_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNix {
    pub build_host: Option<Spanned<Id>>,
    pub cache: Option<Spanned<String>>,
    pub signing_key_file: Option<Spanned<std::path::PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub backend: Option<BackendKind>,
    pub host: Option<Spanned<String>>,
    pub timeout: Option<DurationText>,
    #[serde(rename = "work-dir")]
    pub work_dir: Option<String>,
    pub shell: Option<Spanned<ShellValue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackends {
    pub microvm: Option<RawMicrovm>,
    pub incus: Option<RawIncus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMicrovm {
    pub hypervisor: Option<Spanned<String>>,
    pub vcpu: Option<Spanned<u32>>,
    pub memory: Option<Spanned<String>>,
    pub runner: Option<String>,
    pub pikaci_flake: Option<String>,
    pub virtiofsd: Option<String>,
    pub boot_timeout: Option<DurationText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawIncus {
    pub project: Option<String>,
    pub image: Option<String>,
    pub instance_type: Option<InstanceType>,
    pub profiles: Option<Vec<String>>,
    pub guest_agent: Option<String>,
    pub limits: Option<BTreeMap<String, Spanned<LimitValue>>>,
    pub sudo: Option<Spanned<bool>>,
    pub remote: Option<Spanned<String>>,
    pub target: Option<Spanned<String>>,
}

/// `shell = ["bash", "-c"]`; a string is read only to say it must be a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum ShellValue {
    List(Vec<String>),
    Text(String),
}

/// `limits.cpu = 2` and `limits.memory = "4GiB"` are both natural to write.
pub enum LimitValue {
    Number(u64),
    Text(String),
}

/// By hand rather than `untagged`, so a wrong value is told what is allowed.
impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LimitValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number (`cpu = 2`) or a string (`memory = \"4GiB\"`)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<LimitValue, E> {
                Ok(LimitValue::Number(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<LimitValue, E> {
                u64::try_from(n)
                    .map(LimitValue::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<LimitValue, E> {
                Ok(LimitValue::Text(text.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawJob {
    pub command: String,
    pub backend: Option<BackendKind>,
    #[serde(default)]
    pub inputs: Vec<Spanned<Id>>,
    #[serde(default)]
    pub needs: Vec<Spanned<Id>>,
    pub timeout: Option<DurationText>,
    #[serde(default)]
    pub root: bool,
    #[serde(default)]
    pub writable_workspace: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    pub shell: Option<Spanned<ShellValue>>,
    pub runs_on: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub retries: u32,
    pub incus_target: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub description: Option<String>,
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    pub jobs: Option<Spanned<Vec<Spanned<Id>>>>,
    /// An attribute set of derivations whose every attribute is a build job.
    pub flake: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSsh {
    pub identity_file: Option<std::path::PathBuf>,
    pub known_hosts_file: Option<std::path::PathBuf>,
    pub connect_timeout: Option<DurationText>,
}
