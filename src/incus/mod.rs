//! The `incus` command line as pikaci uses it: argvs built as values (run through a
//! transport, pinned by snapshots) and the parts of its JSON that pikaci reads.

pub(crate) mod image;

use std::path::Path;

use serde::Deserialize;

pub use image::{
    ImageError, ImageFiles, ImageRow, Imported, build_image, image_root, import_image, list_images,
};

use crate::argv::Argv;
use crate::config::{IncusSettings, InstanceType};

/// Where the request goes inside the instance, and the workspace.
pub use crate::guest_layout::{REQUEST, WORKSPACE as GUEST_WORKSPACE};
/// The config key that tags an instance with its run (for gc).
pub const RUN_KEY: &str = "user.pikaci.run";

/// One record of `incus image list --format json` (or `GET /1.0/images/FP`), the fields
/// pikaci reads.
#[derive(Debug, Deserialize)]
struct ImageRecord {
    fingerprint: String,
    #[serde(default)]
    aliases: Vec<ImageAlias>,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    uploaded_at: String,
}

#[derive(Debug, Deserialize)]
struct ImageAlias {
    name: String,
}

/// What pikaci could not accept in what `incus` printed.
#[derive(Debug, thiserror::Error)]
pub enum IncusError {
    #[error("`incus {command}` printed JSON pikaci cannot read")]
    Json {
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "`incus image list` printed the image with the alias `{alias}` without a valid \
         fingerprint: {fingerprint:?}"
    )]
    NoFingerprint { alias: String, fingerprint: String },
    #[error(
        "no image has the alias `{alias}` in Incus project `{project}`; import an image \
         with pikaci-guest in it (`pikaci image build github:pikaci/pikaci#incus-image \
         && pikaci image import --alias {alias}`, or your own: docs/incus.md#images), \
         or set backends.incus.image to an alias that `incus image list --project \
         {project}` shows"
    )]
    NoAlias { alias: String, project: String },
    #[error("several images have the alias `{alias}` in project `{project}`: {}", fingerprints.join(", "))]
    Several {
        alias: String,
        project: String,
        fingerprints: Vec<String>,
    },
    #[error(
        "the image `{image}` is {}, but backends.incus.instance-type is \"{}\"; set \
         backends.incus.instance-type = \"{}\", or import an image of that type under \
         this alias",
        type_words(*wanted).0, type_words(*wanted).1, type_words(*wanted).2
    )]
    WrongType { image: String, wanted: InstanceType },
}

/// For an image of the other type than `wanted`: what it is, the setting as it is, and
/// the setting that would fit it.
fn type_words(wanted: InstanceType) -> (&'static str, &'static str, &'static str) {
    match wanted {
        InstanceType::Vm => ("a container image", "vm", "container"),
        InstanceType::Container => ("a VM image", "container", "vm"),
    }
}

/// The records of `incus image list --format json`.
fn image_records(json: &[u8]) -> Result<Vec<ImageRecord>, IncusError> {
    serde_json::from_slice(json).map_err(|source| IncusError::Json {
        command: "image list",
        source,
    })
}

/// The fingerprint of the one image whose alias is exactly `alias`.
pub fn select_image(json: &[u8], alias: &str, project: &str) -> Result<String, IncusError> {
    select_record(json, alias, project).map(|r| r.fingerprint)
}

/// The image a run of `settings` uses, from `incus image list ALIAS`: the one with exactly
/// the alias, of the type `instance-type` asks for. The run and doctor both select it so.
pub fn usable_image(json: &[u8], settings: &IncusSettings) -> Result<String, IncusError> {
    let record = select_record(json, &settings.image, &settings.project)?;
    let wanted = match settings.instance_type {
        InstanceType::Vm => "virtual-machine",
        InstanceType::Container => "container",
    };
    // Incus names the type of every image; an older one that does not is let through.
    if !record.kind.is_empty() && record.kind != wanted {
        return Err(IncusError::WrongType {
            image: settings.image.clone(),
            wanted: settings.instance_type,
        });
    }
    Ok(record.fingerprint)
}

fn select_record(json: &[u8], alias: &str, project: &str) -> Result<ImageRecord, IncusError> {
    let records = image_records(json)?;
    let mut matching: Vec<ImageRecord> = records
        .into_iter()
        .filter(|r| r.aliases.iter().any(|a| a.name == alias))
        .collect();
    match &matching[..] {
        [one] if !is_fingerprint(&one.fingerprint) => Err(IncusError::NoFingerprint {
            alias: alias.to_string(),
            fingerprint: one.fingerprint.clone(),
        }),
        [_] => Ok(matching.remove(0)),
        [] => Err(IncusError::NoAlias {
            alias: alias.to_string(),
            project: project.to_string(),
        }),
        _ => Err(IncusError::Several {
            alias: alias.to_string(),
            project: project.to_string(),
            fingerprints: matching.iter().map(|r| r.fingerprint.clone()).collect(),
        }),
    }
}

/// Why a job has no result when `incus exec GUEST_AGENT run …` ended without writing
/// one: the exit status says whether the agent is missing from the image (127, 126),
/// and `host_log_tail` is what `incus exec` and the agent printed.
pub fn agent_without_result(
    status: &std::process::ExitStatus,
    settings: &IncusSettings,
    host_log_tail: &str,
) -> String {
    let (agent, image) = (&settings.guest_agent, &settings.image);
    let what = match status.code() {
        Some(127) => format!(
            "the guest agent `{agent}` does not exist in the image `{image}` (`incus exec` \
             exit status 127); set backends.incus.guest-agent to where pikaci-guest is in \
             the image, or import an image that has it (docs/incus.md#images)"
        ),
        Some(126) => format!(
            "the guest agent `{agent}` in the image `{image}` cannot be executed (`incus \
             exec` exit status 126); it must be a pikaci-guest built for the guest's \
             architecture"
        ),
        _ => format!("the guest agent `{agent}` ended without a result (`incus exec`: {status})"),
    };
    let tail = host_log_tail.trim_end();
    if tail.is_empty() {
        what
    } else {
        format!("{what}; last lines of host.log:\n{tail}")
    }
}

/// Incus names images by the hex SHA-256 of their files.
pub(crate) fn is_fingerprint(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The argvs pikaci runs; pure, so a snapshot pins them.
pub struct Incus<'a> {
    pub project: &'a str,
    /// Prefix every command with `sudo -n` (never prompts: no terminal to answer it).
    pub sudo: bool,
    /// The `incus remote` whose server holds the instances and images: every name is
    /// written `REMOTE:NAME`. `None`: the CLI's default remote.
    pub remote: Option<&'a str>,
}

impl<'a> Incus<'a> {
    pub fn new(settings: &'a IncusSettings) -> Incus<'a> {
        Incus {
            project: &settings.project,
            sudo: settings.sudo,
            remote: settings.remote.as_deref(),
        }
    }

    fn base(&self, args: &[&str]) -> Argv {
        self.bare().args(args).args(["--project", self.project])
    }

    /// An instance, image, alias or API path on the server pikaci uses.
    fn on(&self, name: &str) -> String {
        match self.remote {
            Some(remote) => format!("{remote}:{name}"),
            None => name.to_string(),
        }
    }

    /// The server itself (`REMOTE:`), where a command takes it as an argument of its own.
    fn server_arg(&self) -> Option<String> {
        self.remote.map(|remote| format!("{remote}:"))
    }

    pub fn image_list(&self, alias: &str) -> Argv {
        self.base(&["image", "list"])
            .arg(self.on(alias))
            .args(["--format", "json"])
    }

    /// From the alias: Incus resolves it when it creates the instance. `target` places
    /// it on a cluster member.
    pub fn init(
        &self,
        settings: &IncusSettings,
        name: &str,
        run: &str,
        target: Option<&str>,
    ) -> Argv {
        let mut argv = self
            .base(&["init"])
            .arg(self.on(&settings.image))
            .arg(self.on(name));
        if settings.instance_type == InstanceType::Vm {
            argv = argv.arg("--vm");
        }
        if let Some(member) = target {
            argv = argv.arg("--target").arg(member);
        }
        for profile in &settings.profiles {
            argv = argv.arg("--profile").arg(profile);
        }
        for (key, value) in &settings.limits {
            argv = argv.arg("--config").arg(format!("limits.{key}={value}"));
        }
        argv.arg("--config").arg(format!("{RUN_KEY}={run}"))
    }

    pub fn base_image(&self, name: &str) -> Argv {
        self.base(&["config", "get"])
            .arg(self.on(name))
            .arg("volatile.base_image")
    }

    pub fn add_workspace(&self, name: &str, source: &Path) -> Argv {
        self.base(&["config", "device", "add"])
            .arg(self.on(name))
            .args(["workspace", "disk"])
            .arg(format!("source={}", source.display()))
            .arg(format!("path={GUEST_WORKSPACE}"))
            .arg("readonly=true")
    }

    /// The host's `/nix/store`, read-only at `/nix/store` in the instance (which has no
    /// store of its own); added to a running instance.
    pub fn add_host_store(&self, name: &str, device: &str) -> Argv {
        self.base(&["config", "device", "add"])
            .arg(self.on(name))
            .args([device, "disk"])
            .args(["source=/nix/store", "path=/nix/store", "readonly=true"])
    }

    pub fn start(&self, name: &str) -> Argv {
        self.base(&["start"]).arg(self.on(name))
    }

    pub fn exec(&self, name: &str, command: &[&str]) -> Argv {
        self.base(&["exec"])
            .arg(self.on(name))
            .arg("--")
            .args(command)
    }

    /// `incus` without `--project`, which `incus query` refuses.
    fn bare(&self) -> Argv {
        if self.sudo {
            Argv::new("sudo").args(["-n", "incus"])
        } else {
            Argv::new("incus")
        }
    }

    /// `GET /1.0`: whether incusd answers this user, and (its `auth`) trusts it.
    pub fn server(&self) -> Argv {
        self.bare().arg("query").arg(self.on("/1.0"))
    }

    /// The remotes the `incus` client knows, as JSON (name → address, protocol, …).
    pub fn remote_list(&self) -> Argv {
        self.bare().args(["remote", "list", "--format", "json"])
    }

    /// `GET` of a cluster member: fails when the server has no member of that name.
    pub fn member_info(&self, member: &str) -> Argv {
        self.bare()
            .arg("query")
            .arg(self.on(&format!("/1.0/cluster/members/{}", image::escape(member))))
    }

    /// `GET` of the configured project: fails when it does not exist.
    pub fn project_info(&self) -> Argv {
        self.bare()
            .arg("query")
            .arg(self.on(&format!("/1.0/projects/{}", image::escape(self.project))))
    }

    /// `GET` of a profile as the project sees it: fails when `init` could not use it.
    pub fn profile_info(&self, profile: &str) -> Argv {
        self.query(&format!("/1.0/profiles/{}", image::escape(profile)))
    }

    /// A raw API `GET`; the project goes in the URL.
    pub fn query(&self, path: &str) -> Argv {
        self.bare().arg("query").arg(self.in_project(path))
    }

    fn in_project(&self, path: &str) -> String {
        self.on(&format!("{path}?project={}", image::escape(self.project)))
    }

    /// Retargets an alias in one API call.
    pub fn alias_put(&self, alias: &str, body: &str) -> Argv {
        self.bare()
            .args(["query", "-X", "PUT"])
            .arg(self.in_project(&image::alias_path(alias)))
            .args(["-d", body])
    }

    pub fn alias_create(&self, alias: &str, fingerprint: &str) -> Argv {
        self.base(&["image", "alias", "create"])
            .arg(self.on(alias))
            .arg(fingerprint)
    }

    /// Uploads the files from where `incus` runs (to the remote's server, when set).
    pub fn image_import(&self, metadata: &Path, rootfs: &Path) -> Argv {
        self.base(&["image", "import"])
            .arg(metadata)
            .arg(rootfs)
            .args(self.server_arg())
    }

    pub fn image_delete(&self, fingerprint: &str) -> Argv {
        self.base(&["image", "delete"]).arg(self.on(fingerprint))
    }

    pub fn image_list_all(&self) -> Argv {
        self.base(&["image", "list"])
            .args(self.server_arg())
            .args(["--format", "json"])
    }

    pub fn list_instances(&self) -> Argv {
        self.base(&["list"])
            .args(self.server_arg())
            .args(["--format", "json"])
    }

    pub fn delete(&self, name: &str) -> Argv {
        self.base(&["delete", "--force"]).arg(self.on(name))
    }
}

/// One record of `incus list --format json`, the fields gc reads.
#[derive(Debug, Deserialize)]
struct InstanceRecord {
    name: String,
    /// Null for some instances; values are not all strings.
    #[serde(default)]
    config: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

impl InstanceRecord {
    fn config_str(&self, key: &str) -> Option<&str> {
        self.config.as_ref()?.get(key)?.as_str()
    }

    /// The fingerprint of the image the instance was created from.
    fn base_image(&self) -> Option<&str> {
        self.config_str("volatile.base_image")
    }
}

/// The records of `incus list --format json`.
fn instance_records(json: &[u8]) -> Result<Vec<InstanceRecord>, IncusError> {
    serde_json::from_slice(json).map_err(|source| IncusError::Json {
        command: "list",
        source,
    })
}

/// The instances tagged with one of `runs`.
pub fn instances_of_runs(json: &[u8], runs: &[String]) -> Result<Vec<String>, IncusError> {
    Ok(instance_records(json)?
        .into_iter()
        .filter(|r| {
            r.config_str(RUN_KEY)
                .is_some_and(|run| runs.iter().any(|r| r == run))
        })
        .map(|r| r.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    #[test]
    fn image_selection_takes_the_exact_alias_only() {
        let one = br#"[{"fingerprint":"aaa","aliases":[{"name":"pikaci/dev"}],"type":"container"},
                       {"fingerprint":"bbb","aliases":[{"name":"pikaci/dev-old"}]}]"#;
        assert_eq!(select_image(one, "pikaci/dev", "p").unwrap(), "aaa");
        let prefix_only = br#"[{"fingerprint":"bbb","aliases":[{"name":"pikaci/dev-old"}]}]"#;
        let none = select_image(prefix_only, "pikaci/dev", "p").unwrap_err();
        insta::assert_snapshot!(none, @"no image has the alias `pikaci/dev` in Incus project `p`; import an image with pikaci-guest in it (`pikaci image build github:pikaci/pikaci#incus-image && pikaci image import --alias pikaci/dev`, or your own: docs/incus.md#images), or set backends.incus.image to an alias that `incus image list --project p` shows");
        assert!(select_image(b"[]", "x", "p").is_err());
        let two = br#"[{"fingerprint":"aaa","aliases":[{"name":"x"}]},{"fingerprint":"ccc","aliases":[{"name":"x"}]}]"#;
        let several = select_image(two, "x", "p").unwrap_err().to_string();
        assert!(several.contains("aaa, ccc"), "{several}");
        let bad = select_image(b"{not json", "x", "p")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("cannot read"), "{bad}");
        let wrong_shape = select_image(br#"{"fingerprint":"a"}"#, "x", "p")
            .unwrap_err()
            .to_string();
        assert!(wrong_shape.contains("cannot read"), "{wrong_shape}");
        // Found by fuzzing: an empty fingerprint was selected.
        for fingerprint in ["", "../x"] {
            let json =
                serde_json::json!([{"fingerprint": fingerprint, "aliases": [{"name": "x"}]}]);
            let err = select_image(json.to_string().as_bytes(), "x", "p")
                .unwrap_err()
                .to_string();
            assert!(err.contains("without a valid fingerprint"), "{err}");
        }
    }

    /// A container image with the default `instance-type = "vm"` is refused before any
    /// instance is made, by the run and by doctor alike.
    #[test]
    fn the_image_type_must_match_the_instance_type() {
        let json =
            br#"[{"fingerprint":"aaa","aliases":[{"name":"pikaci/dev"}],"type":"container"}]"#;
        let vm = IncusSettings::default();
        insta::assert_snapshot!(usable_image(json, &vm).unwrap_err(), @r#"the image `pikaci/dev` is a container image, but backends.incus.instance-type is "vm"; set backends.incus.instance-type = "container", or import an image of that type under this alias"#);
        let container = IncusSettings {
            instance_type: InstanceType::Container,
            ..IncusSettings::default()
        };
        assert_eq!(usable_image(json, &container).unwrap(), "aaa");
        let vm_image = br#"[{"fingerprint":"bbb","aliases":[{"name":"pikaci/dev"}],"type":"virtual-machine"}]"#;
        assert_eq!(usable_image(vm_image, &vm).unwrap(), "bbb");
        let refused = usable_image(vm_image, &container).unwrap_err().to_string();
        assert!(refused.contains("is a VM image"), "{refused}");
        let untyped = br#"[{"fingerprint":"ccc","aliases":[{"name":"pikaci/dev"}]}]"#;
        assert_eq!(usable_image(untyped, &vm).unwrap(), "ccc");
    }

    #[test]
    fn an_agent_without_a_result_says_why() {
        use std::os::unix::process::ExitStatusExt;
        let settings = IncusSettings {
            image: "pikaci/dev".into(),
            guest_agent: "/usr/bin/pikaci-guest".into(),
            ..IncusSettings::default()
        };
        let missing = ExitStatus::from_raw(127 << 8);
        let tail = "Error: Command not found\n";
        insta::assert_snapshot!(agent_without_result(&missing, &settings, tail), @"
        the guest agent `/usr/bin/pikaci-guest` does not exist in the image `pikaci/dev` (`incus exec` exit status 127); set backends.incus.guest-agent to where pikaci-guest is in the image, or import an image that has it (docs/incus.md#images); last lines of host.log:
        Error: Command not found
        ");
        let broken = ExitStatus::from_raw(126 << 8);
        insta::assert_snapshot!(agent_without_result(&broken, &settings, ""), @"the guest agent `/usr/bin/pikaci-guest` in the image `pikaci/dev` cannot be executed (`incus exec` exit status 126); it must be a pikaci-guest built for the guest's architecture");
        let other = ExitStatus::from_raw(3 << 8);
        insta::assert_snapshot!(agent_without_result(&other, &settings, ""), @"the guest agent `/usr/bin/pikaci-guest` ended without a result (`incus exec`: exit status: 3)");
    }

    #[test]
    fn gc_finds_instances_by_their_run_tag() {
        let json = br#"[{"name":"a","config":{"user.pikaci.run":"R1"}},
                        {"name":"b","config":{"user.pikaci.run":"R2"}},
                        {"name":"c","config":{}},
                        {"name":"d","config":null}]"#;
        let runs = vec!["R1".to_string(), "R3".to_string()];
        assert_eq!(instances_of_runs(json, &runs).unwrap(), vec!["a"]);
        assert!(
            instances_of_runs(b"[{]", &runs)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn incus_argv_shapes() {
        let incus = Incus {
            project: "pikaci",
            sudo: false,
            remote: None,
        };
        let settings = IncusSettings {
            instance_type: InstanceType::Container,
            profiles: vec!["default".into(), "ci".into()],
            limits: [("cpu", "2"), ("memory", "4GiB")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ..IncusSettings::default()
        };
        let name = "pikaci-lint-0123456789ab";
        let shown: Vec<String> = [
            incus.image_list("pikaci/dev"),
            incus.init(&settings, name, "R1", None),
            incus.init(&IncusSettings::default(), name, "R1", None),
            incus.base_image(name),
            incus.add_workspace(name, Path::new("/state/cache/snapshots/ab")),
            incus.start(name),
            incus.add_host_store(name, "nix-store"),
            incus.exec(name, &["/usr/local/bin/pikaci-guest", "run", REQUEST]),
            incus.delete(name),
            incus.list_instances(),
            incus.query("/1.0/images/aliases/pikaci/dev"),
            incus.alias_put("pikaci/dev", r#"{"description":"","target":"f00d"}"#),
            incus.alias_create("pikaci/dev", "f00d"),
            incus.image_import(
                Path::new("/w/img/metadata.tar.xz"),
                Path::new("/w/img/disk.qcow2"),
            ),
            incus.image_delete("beef"),
            incus.image_list_all(),
            incus.server(),
            incus.project_info(),
            incus.profile_info("ci"),
            Incus::new(&IncusSettings {
                sudo: true,
                ..IncusSettings::default()
            })
            .start(name),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        insta::assert_snapshot!(shown.join("\n"), @r#"
        incus image list --project pikaci pikaci/dev --format json
        incus init --project pikaci pikaci/dev pikaci-lint-0123456789ab --profile default --profile ci --config limits.cpu=2 --config limits.memory=4GiB --config user.pikaci.run=R1
        incus init --project pikaci pikaci/dev pikaci-lint-0123456789ab --vm --profile default --config user.pikaci.run=R1
        incus config get --project pikaci pikaci-lint-0123456789ab volatile.base_image
        incus config device add --project pikaci pikaci-lint-0123456789ab workspace disk source=/state/cache/snapshots/ab path=/workspace readonly=true
        incus start --project pikaci pikaci-lint-0123456789ab
        incus config device add --project pikaci pikaci-lint-0123456789ab nix-store disk source=/nix/store path=/nix/store readonly=true
        incus exec --project pikaci pikaci-lint-0123456789ab -- /usr/local/bin/pikaci-guest run /run/pikaci/request.json
        incus delete --force --project pikaci pikaci-lint-0123456789ab
        incus list --project pikaci --format json
        incus query '/1.0/images/aliases/pikaci/dev?project=pikaci'
        incus query -X PUT '/1.0/images/aliases/pikaci/dev?project=pikaci' -d '{"description":"","target":"f00d"}'
        incus image alias create --project pikaci pikaci/dev f00d
        incus image import --project pikaci /w/img/metadata.tar.xz /w/img/disk.qcow2
        incus image delete --project pikaci beef
        incus image list --project pikaci --format json
        incus query /1.0
        incus query /1.0/projects/pikaci
        incus query '/1.0/profiles/ci?project=pikaci'
        sudo -n incus start --project default pikaci-lint-0123456789ab
        "#);
    }

    /// Through an `incus remote`: every instance, image and API path is `REMOTE:…`, the
    /// server-wide commands name `REMOTE:` itself, and `--target` places the instance.
    #[test]
    fn incus_argv_shapes_through_a_remote() {
        let settings = IncusSettings {
            project: "pikaci".into(),
            instance_type: InstanceType::Container,
            remote: Some("ci".into()),
            ..IncusSettings::default()
        };
        let incus = Incus::new(&settings);
        let name = "pikaci-lint-0123456789ab";
        let shown: Vec<String> = [
            incus.image_list("pikaci/dev"),
            incus.init(&settings, name, "R1", None),
            incus.init(&settings, name, "R1", Some("node2")),
            incus.base_image(name),
            incus.start(name),
            incus.exec(name, &["/usr/local/bin/pikaci-guest", "run", REQUEST]),
            incus.delete(name),
            incus.list_instances(),
            incus.query("/1.0/images/aliases/pikaci/dev"),
            incus.alias_put("pikaci/dev", r#"{"description":"","target":"f00d"}"#),
            incus.alias_create("pikaci/dev", "f00d"),
            incus.image_import(
                Path::new("/w/img/metadata.tar.xz"),
                Path::new("/w/img/rootfs.tar"),
            ),
            incus.image_delete("beef"),
            incus.image_list_all(),
            incus.server(),
            incus.remote_list(),
            incus.member_info("node2"),
            incus.project_info(),
            incus.profile_info("ci"),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        insta::assert_snapshot!(shown.join("\n"), @r#"
        incus image list --project pikaci ci:pikaci/dev --format json
        incus init --project pikaci ci:pikaci/dev ci:pikaci-lint-0123456789ab --profile default --config user.pikaci.run=R1
        incus init --project pikaci ci:pikaci/dev ci:pikaci-lint-0123456789ab --target node2 --profile default --config user.pikaci.run=R1
        incus config get --project pikaci ci:pikaci-lint-0123456789ab volatile.base_image
        incus start --project pikaci ci:pikaci-lint-0123456789ab
        incus exec --project pikaci ci:pikaci-lint-0123456789ab -- /usr/local/bin/pikaci-guest run /run/pikaci/request.json
        incus delete --force --project pikaci ci:pikaci-lint-0123456789ab
        incus list --project pikaci ci: --format json
        incus query 'ci:/1.0/images/aliases/pikaci/dev?project=pikaci'
        incus query -X PUT 'ci:/1.0/images/aliases/pikaci/dev?project=pikaci' -d '{"description":"","target":"f00d"}'
        incus image alias create --project pikaci ci:pikaci/dev f00d
        incus image import --project pikaci /w/img/metadata.tar.xz /w/img/rootfs.tar ci:
        incus image delete --project pikaci ci:beef
        incus image list --project pikaci ci: --format json
        incus query ci:/1.0
        incus remote list --format json
        incus query ci:/1.0/cluster/members/node2
        incus query ci:/1.0/projects/pikaci
        incus query 'ci:/1.0/profiles/ci?project=pikaci'
        "#);
        // Without a remote, the member goes to the CLI's default server.
        let local = IncusSettings {
            remote: None,
            ..settings.clone()
        };
        let incus = Incus::new(&local);
        let shown = [
            incus.init(&local, name, "R1", Some("node1")),
            incus.member_info("node1"),
        ]
        .map(|argv| argv.to_string());
        insta::assert_snapshot!(shown.join("\n"), @"
        incus init --project pikaci pikaci/dev pikaci-lint-0123456789ab --target node1 --profile default --config user.pikaci.run=R1
        incus query /1.0/cluster/members/node1
        ");
    }
}
