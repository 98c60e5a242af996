//! `pikaci image build|import|list`: Incus images for the `incus` backend, on the host.
//!
//! An image is a directory with a metadata tarball (`metadata.tar*`) and a root file
//! system (`rootfs.tar*`, `rootfs.squashfs` or `*.qcow2`), as the flake's `incus-image`
//! package and `scripts/testbed/incus.sh` produce. Import moves the alias in one API call
//! so that a lookup never finds it missing, then removes the image it named before unless
//! something still uses it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Incus, IncusError, image_records, instance_records, is_fingerprint};
use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::nix::{BUILD_TIMEOUT, NixBuild, StorePath};
use crate::transport::{Transport, TransportError};

/// What `pikaci image build|import|list` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Host(#[from] TransportError),
    #[error(transparent)]
    Incus(#[from] IncusError),
    #[error("cannot build the image")]
    Build(#[source] crate::nix::NixError),
    #[error("`{0}` produced no output")]
    NoOutput(String),
    #[error("unexpected output while hashing the image: {0:?}")]
    Listing(String),
    #[error("unexpected image hash {0:?}")]
    Hash(String),
    #[error(
        "Incus imported the image, but not as {fingerprint} (the SHA-256 of its metadata and \
         rootfs); is {} a split image?",
        dir.display()
    )]
    NotAsHashed { fingerprint: String, dir: PathBuf },
    #[error("cannot read {what} from Incus")]
    Record {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Deadline for small Incus API calls.
const STEP: Duration = crate::transport::Step::Bookkeeping.duration();
/// Deadline for importing (hashing and unpacking a few GiB).
const IMPORT_TIMEOUT: Duration = crate::transport::Step::Import.duration();

/// The GC root of the last `pikaci image build`, under the host's work dir; `image
/// import` takes it when no directory is given.
pub fn image_root(work_dir: &Path) -> PathBuf {
    work_dir.join("gcroots").join("incus-image")
}

/// Builds `installable` on the host; the out-link replaces the previous image's root.
pub fn build_image(
    transport: &dyn Transport,
    work_dir: &Path,
    installable: &str,
    cwd: &Path,
    log: &Path,
    cancel: &Cancel,
) -> Result<StorePath, ImageError> {
    let out_link = image_root(work_dir);
    let build = NixBuild {
        installable,
        out_link: &out_link,
        cwd,
    };
    let results = build
        .run(transport, log, Instant::now() + BUILD_TIMEOUT, cancel)
        .map_err(ImageError::Build)?;
    results
        .into_iter()
        .flat_map(|r| r.outputs.into_values())
        .next()
        .ok_or_else(|| ImageError::NoOutput(installable.to_string()))
}

/// The files of an image directory and the fingerprint Incus will give them.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageFiles {
    pub metadata: PathBuf,
    pub rootfs: PathBuf,
    /// Incus fingerprints a split image as the SHA-256 of metadata then rootfs.
    pub fingerprint: String,
}

/// Finds the two files in `$1` (symlinks resolved) and hashes them as Incus does.
pub(crate) const IMAGE_FILES: &str = r#"set -eu
[ -d "$1" ] || { echo "$1 is not a directory (build one with \`pikaci image build\` or name an image directory)" >&2; exit 3; }
cd -P -- "$1"
meta='' rootfs=''
for f in *; do
  case $f in
    metadata.tar|metadata.tar.*)
      [ -z "$meta" ] || { echo "$PWD has two metadata tarballs: $meta and $f" >&2; exit 3; }
      meta=$f ;;
    rootfs.tar|rootfs.tar.*|rootfs.squashfs|*.qcow2)
      [ -z "$rootfs" ] || { echo "$PWD has two root file systems: $rootfs and $f" >&2; exit 3; }
      rootfs=$f ;;
  esac
done
[ -n "$meta" ] || { echo "$PWD has no metadata tarball (metadata.tar or metadata.tar.*)" >&2; exit 3; }
[ -n "$rootfs" ] || { echo "$PWD has no root file system (rootfs.tar*, rootfs.squashfs or *.qcow2)" >&2; exit 3; }
printf '%s\n%s\n' "$PWD/$meta" "$PWD/$rootfs"
cat -- "$meta" "$rootfs" | sha256sum
"#;

pub fn image_files_argv(dir: &Path) -> Argv {
    Argv::new("sh")
        .args(["-c", IMAGE_FILES, "pikaci-image-files"])
        .arg(dir)
}

/// Reads what [`IMAGE_FILES`] printed.
pub fn parse_image_files(text: &str) -> Result<ImageFiles, ImageError> {
    let mut lines = text.lines();
    let (Some(metadata), Some(rootfs), Some(sum)) = (lines.next(), lines.next(), lines.next())
    else {
        return Err(ImageError::Listing(text.to_string()));
    };
    let fingerprint = sum.split_whitespace().next().unwrap_or_default();
    if fingerprint.len() != 64 || !is_fingerprint(fingerprint) {
        return Err(ImageError::Hash(sum.to_string()));
    }
    Ok(ImageFiles {
        metadata: metadata.into(),
        rootfs: rootfs.into(),
        fingerprint: fingerprint.to_ascii_lowercase(),
    })
}

/// What `image import` did.
#[derive(Debug)]
pub struct Imported {
    pub fingerprint: String,
    /// False when Incus already had this image.
    pub uploaded: bool,
    /// The image the alias named before, when it named another.
    pub previous: Option<String>,
    /// Why the previous image was kept (instances, other aliases); None when removed.
    pub kept_because: Option<String>,
}

/// The host's `incus`, with the deadlines of this module.
struct Api<'a> {
    transport: &'a dyn Transport,
    incus: &'a Incus<'a>,
    cancel: &'a Cancel,
}

impl Api<'_> {
    fn run(&self, argv: &Argv, deadline: Duration) -> Result<Vec<u8>, TransportError> {
        self.transport
            .run(argv, b"", Instant::now() + deadline, self.cancel)
            .map(|o| o.stdout)
    }

    /// `GET path`, or None when Incus answers with an error (it does not exist).
    fn probe(&self, path: &str) -> Result<Option<Vec<u8>>, TransportError> {
        let out = self.transport.run_unchecked(
            &self.incus.query(path),
            b"",
            Instant::now() + STEP,
            self.cancel,
        )?;
        Ok(out.status.success().then_some(out.stdout))
    }
}

/// `GET /1.0/images/aliases/NAME`, the fields pikaci reads.
#[derive(Deserialize)]
struct AliasRecord {
    target: String,
    #[serde(default)]
    description: String,
}

/// Imports the image in `dir` on the host and points `alias` at it.
pub fn import_image(
    transport: &dyn Transport,
    incus: &Incus,
    dir: &Path,
    alias: &str,
    cancel: &Cancel,
) -> Result<Imported, ImageError> {
    let api = Api {
        transport,
        incus,
        cancel,
    };
    let listing = api.run(&image_files_argv(dir), IMPORT_TIMEOUT)?;
    let files = parse_image_files(&String::from_utf8_lossy(&listing))?;
    let fingerprint = files.fingerprint.clone();

    let uploaded = api.probe(&image_path(&fingerprint))?.is_none();
    if uploaded {
        let import = incus.image_import(&files.metadata, &files.rootfs);
        api.run(&import, IMPORT_TIMEOUT)?;
        if api.probe(&image_path(&fingerprint))?.is_none() {
            return Err(ImageError::NotAsHashed {
                fingerprint,
                dir: dir.to_path_buf(),
            });
        }
    }

    let current = match api.probe(&alias_path(alias))? {
        Some(json) => Some(
            serde_json::from_slice::<AliasRecord>(&json).map_err(|source| ImageError::Record {
                what: format!("the alias `{alias}`"),
                source,
            })?,
        ),
        None => None,
    };
    let previous = match current {
        None => {
            api.run(&incus.alias_create(alias, &fingerprint), STEP)?;
            None
        }
        Some(old) if old.target == fingerprint => None,
        Some(old) => {
            // One PUT retargets the alias: there is no moment without it.
            let body = serde_json::json!({ "target": fingerprint, "description": old.description });
            api.run(&incus.alias_put(alias, &body.to_string()), STEP)?;
            Some(old.target)
        }
    };
    let kept_because = match &previous {
        Some(old) => remove_unless_used(&api, old)?,
        None => None,
    };
    Ok(Imported {
        fingerprint,
        uploaded,
        previous,
        kept_because,
    })
}

/// Deletes image `fingerprint` unless an instance was created from it or another alias
/// names it; returns why it was kept.
fn remove_unless_used(api: &Api, fingerprint: &str) -> Result<Option<String>, ImageError> {
    let instances = users_of(&api.run(&api.incus.list_instances(), STEP)?, fingerprint)?;
    if !instances.is_empty() {
        return Ok(Some(format!("used by {}", instances.join(", "))));
    }
    let record: super::ImageRecord =
        serde_json::from_slice(&api.run(&api.incus.query(&image_path(fingerprint)), STEP)?)
            .map_err(|source| ImageError::Record {
                what: format!("image {fingerprint}"),
                source,
            })?;
    if !record.aliases.is_empty() {
        let names: Vec<&str> = record.aliases.iter().map(|a| a.name.as_str()).collect();
        return Ok(Some(format!("still aliased as {}", names.join(", "))));
    }
    api.run(&api.incus.image_delete(fingerprint), STEP)?;
    Ok(None)
}

/// The instances created from `fingerprint`, from `incus list --format json`.
pub fn users_of(json: &[u8], fingerprint: &str) -> Result<Vec<String>, IncusError> {
    Ok(instance_records(json)?
        .into_iter()
        .filter(|r| r.base_image() == Some(fingerprint))
        .map(|r| r.name)
        .collect())
}

/// The API path of an image.
fn image_path(fingerprint: &str) -> String {
    format!("/1.0/images/{fingerprint}")
}

/// The API path of an alias; names may hold `/`, which the route accepts as is.
pub fn alias_path(alias: &str) -> String {
    format!("/1.0/images/aliases/{}", escape(alias))
}

/// Percent-encodes all but unreserved URL characters and `/`.
pub fn escape(text: &str) -> String {
    let mut escaped = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// One line of `pikaci image list`.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRow {
    pub fingerprint: String,
    pub aliases: Vec<String>,
    pub kind: String,
    pub size: u64,
    pub uploaded_at: String,
    pub instances: usize,
}

/// The project's images, with how many instances were created from each.
pub fn list_images(
    transport: &dyn Transport,
    incus: &Incus,
    cancel: &Cancel,
) -> Result<Vec<ImageRow>, ImageError> {
    let api = Api {
        transport,
        incus,
        cancel,
    };
    let images = api.run(&incus.image_list_all(), STEP)?;
    let instances = api.run(&incus.list_instances(), STEP)?;
    image_rows(&images, &instances)
}

pub fn image_rows(images: &[u8], instances: &[u8]) -> Result<Vec<ImageRow>, ImageError> {
    let images = image_records(images)?;
    let instances = instance_records(instances)?;
    Ok(images
        .into_iter()
        .map(|r| ImageRow {
            instances: instances
                .iter()
                .filter(|i| i.base_image() == Some(&r.fingerprint))
                .count(),
            aliases: r.aliases.into_iter().map(|a| a.name).collect(),
            fingerprint: r.fingerprint,
            kind: r.kind,
            size: r.size,
            uploaded_at: r.uploaded_at,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_are_read_from_the_script_output() {
        let sum = "ab".repeat(32);
        let files =
            parse_image_files(&format!("/s/metadata.tar.xz\n/s/disk.qcow2\n{sum}  -\n")).unwrap();
        assert_eq!(files.metadata, Path::new("/s/metadata.tar.xz"));
        assert_eq!(files.rootfs, Path::new("/s/disk.qcow2"));
        assert_eq!(files.fingerprint, sum);
        assert!(parse_image_files("/s/metadata.tar\n").is_err());
        assert!(parse_image_files("/a\n/b\nnot-a-hash  -\n").is_err());
    }

    #[test]
    fn alias_paths_keep_slashes_and_escape_the_rest() {
        assert_eq!(alias_path("pikaci/dev"), "/1.0/images/aliases/pikaci/dev");
        assert_eq!(alias_path("a b?c#d"), "/1.0/images/aliases/a%20b%3Fc%23d");
    }

    #[test]
    fn rows_count_the_instances_made_from_each_image() {
        let images = br#"[{"fingerprint":"aaa","aliases":[{"name":"pikaci/dev"}],"type":"container","size":1048576,"uploaded_at":"2026-11-25T10:00:00Z"},
                          {"fingerprint":"bbb","aliases":[],"type":"virtual-machine","size":5}]"#;
        let instances = br#"[{"name":"i1","config":{"volatile.base_image":"aaa"}},
                             {"name":"i2","config":{"volatile.base_image":"aaa"}},
                             {"name":"i3","config":null}]"#;
        let rows = image_rows(images, instances).unwrap();
        assert_eq!(rows[0].instances, 2);
        assert_eq!(rows[0].aliases, ["pikaci/dev"]);
        assert_eq!(rows[0].size, 1 << 20);
        assert_eq!(
            (rows[1].instances, rows[1].kind.as_str()),
            (0, "virtual-machine")
        );
        assert_eq!(users_of(instances, "aaa").unwrap(), ["i1", "i2"]);
        assert!(
            image_rows(b"{}", instances)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn image_host_commands_are_pinned() {
        let out_link = image_root(Path::new("/w"));
        let build = NixBuild {
            installable: ".#incus-image",
            out_link: &out_link,
            cwd: Path::new("/repo"),
        };
        let files = image_files_argv(Path::new("/w/gcroots/incus-image")).summary();
        insta::assert_snapshot!(format!("{}\n{files}", build.argv()), @"
        env -C /repo -- nix --extra-experimental-features 'nix-command flakes' build --json -o /w/gcroots/incus-image '.#incus-image'
        sh -c … pikaci-image-files /w/gcroots/incus-image
        ");
    }
}
