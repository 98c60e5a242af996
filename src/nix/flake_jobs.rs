//! The Nix side of flake targets: evaluating an attribute set of derivations into job
//! names, telling whether a build job's outputs are already there, and pushing outputs to
//! a binary cache. Every command line is built here and pinned by a snapshot; running
//! them and recording jobs is `run::build_job`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::StorePath;
use crate::argv::Argv;
use crate::ids::{Id, MAX_ID_LEN};

fn nix() -> Argv {
    Argv::new("nix").args(["--extra-experimental-features", "nix-command flakes"])
}

/// What evaluating a flake target's attribute set found.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluated {
    /// The set had an attribute named after the system that is not a derivation
    /// (`checks.<system>.<name>`), and the names are those under it.
    pub per_system: bool,
    /// Names of the attributes that are derivations, sorted as Nix sorts them.
    pub derivations: Vec<String>,
    /// Names of the attributes that are not (a build job cannot be made of them).
    pub others: Vec<String>,
}

/// The Nix function `nix eval --apply` gives the attribute set: per-system when it has
/// an attribute `system` that is not itself a derivation; only `.type` of each value is
/// looked at, so nothing is built or instantiated.
fn classify(system: &str) -> String {
    format!(
        "s: let sys = {system:?}; \
         per = builtins.isAttrs s && s ? ${{sys}} && (s.${{sys}}.type or null) != \"derivation\"; \
         set = if per then s.${{sys}} else s; \
         isDrv = n: (set.${{n}}.type or null) == \"derivation\"; \
         names = builtins.attrNames set; \
         in {{ perSystem = per; derivations = builtins.filter isDrv names; \
         others = builtins.filter (n: !(isDrv n)) names; }}"
    )
}

/// `nix eval --json --apply …` of `installable` (a flake reference and attribute path,
/// pinned to the snapshot) for the build host's `system`.
pub fn eval_argv(installable: &str, system: &str, cwd: &Path) -> Argv {
    nix()
        .args(["eval", "--json", "--apply"])
        .arg(classify(system))
        .arg(installable)
        .cwd(cwd)
}

pub fn parse_evaluated(json: &str) -> Result<Evaluated, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// `name` as an attribute in a Nix attribute path: bare when Nix reads it so, else a
/// quoted string.
pub fn attr_name(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'));
    if bare {
        return name.to_string();
    }
    let mut quoted = String::from("\"");
    for c in name.chars() {
        if matches!(c, '"' | '\\' | '$') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The job ids of a flake target's attributes, in their order: `<target>.<name>`, each
/// character an id may not hold as `_`, cut to the longest id; an id two names map to
/// gets `-2`, `-3`, … on the later names.
pub fn job_ids(target: &Id, names: &[String]) -> Vec<Id> {
    let mut taken = BTreeSet::new();
    names
        .iter()
        .map(|name| {
            let mapped: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = format!("{target}.{mapped}");
            let mut n = 1;
            loop {
                let suffix = if n == 1 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                let cut = MAX_ID_LEN - suffix.len();
                let id = format!("{}{suffix}", &base[..base.len().min(cut)]);
                if taken.insert(id.clone()) {
                    // ASCII only, starting with the target's id: always valid.
                    return Id::new(id).expect("mapped ids are valid");
                }
                n += 1;
            }
        })
        .collect()
}

/// `nix build --dry-run --json INSTALLABLE`: evaluates and instantiates, builds nothing,
/// and prints the outputs' paths (Nix 2.8 and current Nix print the `nix build --json`
/// form).
pub fn dry_run_argv(installable: &str, cwd: &Path) -> Argv {
    nix()
        .args(["build", "--dry-run", "--json"])
        .arg(installable)
        .cwd(cwd)
}

/// Whether `nix build --dry-run`'s stderr announces no build: every output is valid or
/// will be fetched from a substituter of that Nix (its nix.conf's, the daemon's). Only
/// this text says so (the JSON lists outputs either way); Nix 2.8 to current Nix print
/// "this derivation will be built:" / "these N derivations will be built:" before what
/// they would build.
pub fn dry_run_builds_nothing(stderr: &str) -> bool {
    !stderr
        .lines()
        .any(|l| l.trim_end().ends_with("will be built:"))
}

/// `nix path-info --json [--store URL] PATHS`: which of them `store` (the local one when
/// `None`) holds. An invalid path is not an error.
pub fn path_info_argv(store: Option<&str>, paths: &[StorePath]) -> Argv {
    let mut argv = nix().args(["path-info", "--json"]);
    if let Some(store) = store {
        argv = argv.arg("--store").arg(store);
    }
    for path in paths {
        argv = argv.arg(path.to_string());
    }
    argv
}

/// The paths `nix path-info --json` says are valid. Nix 2.8 prints a list of
/// `{"path", "valid": false}` or `{"path", "narHash", …}`; Nix 2.19 and later an object
/// from path to `null` or its info.
pub fn parse_valid(json: &str) -> Result<BTreeSet<String>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum PathInfo {
        List(Vec<serde_json::Map<String, serde_json::Value>>),
        Map(serde_json::Map<String, serde_json::Value>),
    }
    let info: PathInfo = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(match info {
        PathInfo::List(items) => items
            .into_iter()
            .filter(|i| i.get("valid").and_then(|v| v.as_bool()) != Some(false))
            .filter_map(|i| i.get("path")?.as_str().map(str::to_string))
            .collect(),
        PathInfo::Map(items) => items
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(path, _)| path)
            .collect(),
    })
}

/// `--option NAME VALUE` pairs that make a `nix build` use the cache as a substituter,
/// trusting its key. A nix-daemon takes them only from a trusted user (or for URLs its
/// `trusted-substituters` lists); others get a warning and no substitution.
pub fn substituter_options(cache: &str, public_key: Option<&str>) -> Vec<(String, String)> {
    let mut options = vec![("extra-substituters".to_string(), cache.to_string())];
    if let Some(key) = public_key {
        options.push(("extra-trusted-public-keys".to_string(), key.to_string()));
    }
    options
}

/// The `--option`s of every `nix build` pikaci runs with `[nix] cache` set (none
/// without), and why the cache's key could not be read, if it could not (the builds then
/// substitute only what other keys they trust have signed).
pub fn cache_options(
    nix: &crate::config::NixSettings,
) -> (Vec<(String, String)>, Option<SigningKeyError>) {
    let Some(cache) = &nix.cache else {
        return (Vec::new(), None);
    };
    let (key, error) = match nix.signing_key_file.as_deref().map(public_key) {
        None => (None, None),
        Some(Ok(key)) => (Some(key), None),
        Some(Err(e)) => (None, Some(e)),
    };
    (substituter_options(cache, key.as_deref()), error)
}

/// `nix copy --to CACHE PATHS`, signed with the key file when one is given: binary cache
/// stores (`file://`, `s3://`, `http(s)://`) sign what they receive with their
/// `secret-key` parameter (Nix 2.8 and current Nix).
pub fn copy_argv(cache: &str, signing_key_file: Option<&Path>, paths: &[StorePath]) -> Argv {
    let url = match signing_key_file {
        None => cache.to_string(),
        Some(key) => {
            let sep = if cache.contains('?') { '&' } else { '?' };
            format!("{cache}{sep}secret-key={}", key.display())
        }
    };
    let mut argv = nix().args(["copy", "--to"]).arg(url);
    for path in paths {
        argv = argv.arg(path.to_string());
    }
    argv
}

/// `nix store sign --store CACHE --key-file KEY --recursive PATHS`: signs, in the cache
/// itself, what was pushed there unsigned from another machine (Nix 2.8 adds the
/// signatures to a binary cache's `.narinfo` files).
pub fn sign_argv(cache: &str, key_file: &Path, paths: &[StorePath]) -> Argv {
    let mut argv = nix()
        .args(["store", "sign", "--store"])
        .arg(cache)
        .arg("--key-file")
        .arg(key_file)
        .arg("--recursive");
    for path in paths {
        argv = argv.arg(path.to_string());
    }
    argv
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningKeyError {
    #[error("cannot read the signing key {path}: {detail}")]
    Read { path: String, detail: String },
    #[error(
        "the signing key {path} is not a Nix secret key (`NAME:BASE64` of 64 bytes, as `nix key generate-secret` writes)"
    )]
    Malformed { path: String },
}

/// The public key of a Nix ed25519 secret key file (`NAME:BASE64`, 64 bytes whose second
/// half is the public key): what hosts trust the cache's paths by.
pub fn public_key(key_file: &Path) -> Result<String, SigningKeyError> {
    use base64::Engine;
    let path = key_file.display().to_string();
    let text = std::fs::read_to_string(key_file).map_err(|e| SigningKeyError::Read {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let malformed = || SigningKeyError::Malformed { path: path.clone() };
    let (name, secret) = text.trim().split_once(':').ok_or_else(malformed)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|_| malformed())?;
    if name.is_empty() || bytes.len() != 64 {
        return Err(malformed());
    }
    let public = base64::engine::general_purpose::STANDARD.encode(&bytes[32..]);
    Ok(format!("{name}:{public}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<StorePath> {
        ["/nix/store/kgprdxa573dcaf9z0dpmvcid0pf7qgpz-ok"]
            .iter()
            .map(|p| StorePath::new(p).unwrap())
            .collect()
    }

    #[test]
    fn command_lines() {
        let cwd = Path::new("/state/cache/snapshots/abc");
        let lines = [
            eval_argv(
                "path:/state/cache/snapshots/abc#checks",
                "x86_64-linux",
                cwd,
            ),
            dry_run_argv("path:/s#checks.x86_64-linux.ok", cwd),
            path_info_argv(None, &paths()),
            path_info_argv(Some("file:///var/cache/ci"), &paths()),
            copy_argv("file:///var/cache/ci", None, &paths()),
            copy_argv(
                "s3://bucket?region=eu-west-1",
                Some(Path::new("/etc/ci/cache.sec")),
                &paths(),
            ),
            sign_argv(
                "file:///var/cache/ci",
                Path::new("/etc/ci/cache.sec"),
                &paths(),
            ),
        ];
        let text: Vec<String> = lines.iter().map(|a| a.to_string()).collect();
        insta::assert_snapshot!(text.join("\n"));
    }

    #[test]
    fn the_classifying_function_parses_as_nix() {
        let expr = classify("x86_64-linux");
        let parsed = rnix::Root::parse(&expr);
        assert!(parsed.errors().is_empty(), "{:?}: {expr}", parsed.errors());
    }

    #[test]
    fn names_nix_cannot_read_bare_are_quoted() {
        let names = ["ok", "with-dash", "x86_64", "1st", "a b", "q\"u$x", "a.b"];
        let shown: Vec<String> = names.iter().map(|n| attr_name(n)).collect();
        insta::assert_snapshot!(shown.join("\n"), @r#"
        ok
        with-dash
        x86_64
        "1st"
        "a b"
        "q\"u\$x"
        "a.b"
        "#);
    }

    #[test]
    fn names_that_are_not_ids_are_mapped_and_kept_apart() {
        let target = Id::new("checks").unwrap();
        let names: Vec<String> = ["ok", "a b", "a+b", "_private", "x".repeat(200).as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ids = job_ids(&target, &names);
        let shown: Vec<&str> = ids.iter().map(Id::as_str).collect();
        assert_eq!(
            &shown[..4],
            ["checks.ok", "checks.a_b", "checks.a_b-2", "checks._private"]
        );
        assert_eq!(shown[4].len(), MAX_ID_LEN);
    }

    /// As Nix 2.8 prints them here (`nix build --dry-run` of a new, a substitutable and a
    /// valid derivation).
    #[test]
    fn a_dry_run_that_would_build_is_told_from_one_that_would_fetch() {
        let builds = "this derivation will be built:\n  /nix/store/iiysg02fc69rrq5kj1qfvjb0xwvx9nsg-ok.drv\n";
        let several =
            "these 2 derivations will be built:\n  /nix/store/a-x.drv\n  /nix/store/b-y.drv\n";
        let fetches = "this path will be fetched (0.00 MiB download, 0.00 MiB unpacked):\n  /nix/store/kgprdxa573dcaf9z0dpmvcid0pf7qgpz-ok\n";
        assert!(!dry_run_builds_nothing(builds));
        assert!(!dry_run_builds_nothing(several));
        assert!(dry_run_builds_nothing(fetches));
        assert!(dry_run_builds_nothing(""));
    }

    #[test]
    fn valid_paths_from_both_forms_of_path_info() {
        let old = r#"[{"path":"/nix/store/a-x","valid":false},{"path":"/nix/store/b-y","narHash":"sha256-x"}]"#;
        let new = r#"{"/nix/store/a-x":null,"/nix/store/b-y":{"narHash":"sha256-x"}}"#;
        for json in [old, new] {
            assert_eq!(
                parse_valid(json).unwrap(),
                BTreeSet::from(["/nix/store/b-y".to_string()])
            );
        }
        assert!(parse_valid("error").is_err());
    }

    #[test]
    fn the_public_key_is_the_second_half_of_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.sec");
        // Written by `nix key generate-secret --key-name test-1` (Nix 2.8); its public
        // key from `nix key convert-secret-to-public`.
        std::fs::write(&key, "test-1:BgcaCMkK8sz+qwyw77euUYqqELmyCCjYwPV8Etwk/RR61jNH0DJfcHiT7IhP+1A4J6aNJHB1V7I696bR/ioiVQ==").unwrap();
        assert_eq!(
            public_key(&key).unwrap(),
            "test-1:etYzR9AyX3B4k+yIT/tQOCemjSRwdVeyOvem0f4qIlU="
        );
        std::fs::write(&key, "nonsense").unwrap();
        assert!(matches!(
            public_key(&key),
            Err(SigningKeyError::Malformed { .. })
        ));
    }
}
