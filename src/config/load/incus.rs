//! `backends.incus.remote`, `backends.incus.target` and a job's `incus-target`: names
//! the `incus` command line takes before a colon or after `--target`.

use toml::Spanned;

use super::Cx;
use crate::config::ConfigError;
use crate::config::model::{BackendKind, IncusSettings};
use crate::config::raw::RawJob;
use crate::ids::Id;

impl Cx<'_> {
    pub(super) fn incus_remote_and_target(
        &self,
        settings: &mut IncusSettings,
        remote: Option<Spanned<String>>,
        target: Option<Spanned<String>>,
        sudo: Option<Spanned<bool>>,
    ) -> Result<(), ConfigError> {
        if let Some(remote) = remote {
            let key = "backends.incus.remote";
            self.incus_name(&remote, key, "an `incus remote` name (`incus remote list`)")?;
            if let Some(sudo) = sudo.filter(|s| *s.get_ref()) {
                // sudo serves a local socket only; a remote is reached over HTTPS with
                // the client certificate of the user that added it.
                return Err(self.error(
                    Some(sudo.span()),
                    "backends.incus.sudo",
                    format!(
                        "cannot be true with backends.incus.remote = {:?}: a remote is \
                         reached over HTTPS with this user's client certificate, not \
                         through incusd's socket; remove sudo",
                        remote.get_ref()
                    ),
                ));
            }
            settings.remote = Some(remote.into_inner());
        }
        if let Some(target) = target {
            self.incus_name(&target, "backends.incus.target", "a cluster member name")?;
            settings.target = Some(target.into_inner());
        }
        Ok(())
    }

    /// A job's `incus-target`, checked: only Incus jobs have an instance to place.
    pub(super) fn job_incus_target(
        &self,
        id: &Id,
        job: &RawJob,
        backend: BackendKind,
    ) -> Result<Option<String>, ConfigError> {
        let Some(target) = &job.incus_target else {
            return Ok(None);
        };
        let key = format!("jobs.{id}.incus-target");
        self.incus_name(target, &key, "a cluster member name")?;
        if backend != BackendKind::Incus {
            return Err(self.error(
                Some(target.span()),
                key,
                format!(
                    "only an Incus job is placed on a cluster member, and this job's \
                     backend is `{backend}`"
                ),
            ));
        }
        Ok(Some(target.get_ref().clone()))
    }

    /// A remote or member name as `incus` reads it: one word, no colon (the remote
    /// separator), no slash, not an option.
    fn incus_name(
        &self,
        value: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Result<(), ConfigError> {
        let name = value.get_ref();
        let problem = if name.trim().is_empty() {
            Some("must not be empty".to_string())
        } else if name.starts_with('-') {
            Some(format!(
                "`{name}` would be read as an option; it must be {what}"
            ))
        } else if name.contains([':', '/']) || name.contains(char::is_whitespace) {
            Some(format!(
                "`{name}` is not {what}: no `:`, `/` or spaces in it"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(self.error(Some(value.span()), key, message)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load::parse;

    fn error_of(text: &str) -> String {
        parse(Path::new("/repo/pikaci.toml"), text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn remote_target_and_job_target_are_read() {
        let text = r#"
[defaults]
backend = "incus"
[backends.incus]
remote = "ci-cluster"
target = "node1"
[jobs.a]
command = "true"
[jobs.b]
command = "true"
incus-target = "node2"
"#;
        let config = parse(Path::new("/repo/pikaci.toml"), text).unwrap();
        let incus = &config.backends.incus;
        assert_eq!(incus.remote.as_deref(), Some("ci-cluster"));
        assert_eq!(incus.target.as_deref(), Some("node1"));
        assert_eq!(config.jobs["a"].incus_target, None);
        assert_eq!(config.jobs["b"].incus_target.as_deref(), Some("node2"));
        let unset = parse(Path::new("/repo/pikaci.toml"), "[backends.incus]\n").unwrap();
        assert_eq!(unset.backends.incus.remote, None);
        assert_eq!(unset.backends.incus.target, None);
    }

    #[test]
    fn bad_remotes_and_members_are_named_where_they_are_written() {
        insta::assert_snapshot!(error_of("[backends.incus]\nremote = \"\"\n"), @"/repo/pikaci.toml:2:10: backends.incus.remote: must not be empty");
        insta::assert_snapshot!(error_of("[backends.incus]\nremote = \"ci:x\"\n"), @"/repo/pikaci.toml:2:10: backends.incus.remote: `ci:x` is not an `incus remote` name (`incus remote list`): no `:`, `/` or spaces in it");
        insta::assert_snapshot!(error_of("[backends.incus]\ntarget = \"-x\"\n"), @"/repo/pikaci.toml:2:10: backends.incus.target: `-x` would be read as an option; it must be a cluster member name");
        insta::assert_snapshot!(error_of("[backends.incus]\nsudo = true\nremote = \"ci\"\n"), @r#"/repo/pikaci.toml:2:8: backends.incus.sudo: cannot be true with backends.incus.remote = "ci": a remote is reached over HTTPS with this user's client certificate, not through incusd's socket; remove sudo"#);
        insta::assert_snapshot!(error_of("[defaults]\nbackend = \"incus\"\n[jobs.a]\ncommand = \"true\"\nincus-target = \"node 1\"\n"), @"/repo/pikaci.toml:5:16: jobs.a.incus-target: `node 1` is not a cluster member name: no `:`, `/` or spaces in it");
        insta::assert_snapshot!(error_of("[defaults]\nbackend = \"host\"\n[jobs.a]\ncommand = \"true\"\nincus-target = \"node1\"\n"), @"/repo/pikaci.toml:5:16: jobs.a.incus-target: only an Incus job is placed on a cluster member, and this job's backend is `host`");
    }
}
