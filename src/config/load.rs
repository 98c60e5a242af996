//! Reading `pikaci.toml` into a [`Config`], with errors that point at file:line:col.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::ConfigError;
use super::hypervisor::{check_hypervisor, check_memory};
use super::model::*;
use super::raw::*;
use super::units::parse_size;
use crate::ids::Id;

const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates `text` as the content of the configuration file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let cx = Cx { path, text };
    let raw = cx.deserialize(text)?;
    cx.validate(raw)
}

/// What every error needs to point into the file.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let offset = span.map_or(0, |s| s.start.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            col,
            key: key.into(),
            message: message.into(),
        }
    }

    fn deserialize(&self, text: &str) -> Result<RawConfig, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| self.error(e.span(), "", e.message().trim_end().to_string()))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = key_path(e.path());
            let inner = e.into_inner();
            self.error(inner.span(), key, inner.message().trim_end().to_string())
        })
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let hosts = self.hosts(raw.defaults.host.as_ref(), raw.hosts)?;
        let nix = self.nix(raw.nix, &hosts)?;
        let defaults = Defaults {
            backend: raw.defaults.backend.unwrap_or(BackendKind::Microvm),
            timeout: raw.defaults.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            work_dir: raw.defaults.work_dir,
            shell: match &raw.defaults.shell {
                None => crate::protocol::DEFAULT_SHELL
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                Some(shell) => self.shell(shell, "defaults.shell")?,
            },
        };
        let backends = self.backends(raw.backends)?;
        let root = self
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let ssh = SshSettings {
            identity_file: raw.ssh.identity_file.map(|p| root.join(p)),
            known_hosts_file: raw.ssh.known_hosts_file.map(|p| root.join(p)),
            connect_timeout: raw
                .ssh
                .connect_timeout
                .map_or(SshSettings::default().connect_timeout, |t| t.0),
        };
        let inputs = self.inputs(raw.inputs)?;
        let flake_targets: BTreeSet<Id> = raw
            .targets
            .iter()
            .filter(|(_, t)| t.flake.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let jobs = self.jobs(raw.jobs, &defaults, &inputs, &hosts, &flake_targets)?;
        let targets = self.targets(raw.targets, &jobs)?;
        Ok(Config {
            root: self
                .path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            path: self.path.to_path_buf(),
            defaults,
            backends,
            ssh,
            hosts,
            nix,
            inputs,
            jobs,
            targets,
        })
    }

    /// `[hosts.X]`, or the one host `defaults.host` names (this machine when unset).
    fn hosts(
        &self,
        default: Option<&Spanned<String>>,
        raw: BTreeMap<Id, RawHost>,
    ) -> Result<BTreeMap<Id, PoolHost>, ConfigError> {
        if raw.is_empty() {
            let spec = match default {
                None => HostSpec::Local,
                Some(host) => parse_host(host.get_ref())
                    .map_err(|m| self.error(Some(host.span()), "defaults.host", m))?,
            };
            let name = Id::new(DEFAULT_HOST).expect("a valid id");
            let host = PoolHost {
                name: name.clone(),
                spec,
                slots: None,
                labels: BTreeSet::new(),
                work_dir: None,
            };
            return Ok(BTreeMap::from([(name, host)]));
        }
        if let Some(host) = default {
            return Err(self.error(
                Some(host.span()),
                "defaults.host",
                "is the pool of one host; with [hosts] tables, give this host a [hosts.NAME] of its own",
            ));
        }
        let mut hosts = BTreeMap::new();
        for (name, host) in raw {
            let key = format!("hosts.{name}");
            let spec = parse_host(host.url.get_ref())
                .map_err(|m| self.error(Some(host.url.span()), format!("{key}.url"), m))?;
            if let Some(slots) = &host.slots
                && *slots.get_ref() == 0
            {
                return Err(self.error(
                    Some(slots.span()),
                    format!("{key}.slots"),
                    "must be at least 1 (leave it out to size it from the host's cores)",
                ));
            }
            let mut labels = BTreeSet::new();
            for label in host.labels {
                let valid = !label.get_ref().is_empty()
                    && label
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !valid {
                    return Err(self.error(
                        Some(label.span()),
                        format!("{key}.labels"),
                        format!(
                            "`{}` is not a label: letters, digits, `.`, `_` and `-`",
                            label.get_ref()
                        ),
                    ));
                }
                labels.insert(label.into_inner());
            }
            let host = PoolHost {
                name: name.clone(),
                spec,
                slots: host.slots.map(Spanned::into_inner),
                labels,
                work_dir: host.work_dir,
            };
            hosts.insert(name, host);
        }
        Ok(hosts)
    }

    fn nix(&self, raw: RawNix, hosts: &BTreeMap<Id, PoolHost>) -> Result<NixSettings, ConfigError> {
        if let Some(name) = &raw.build_host
            && !hosts.contains_key(name.get_ref())
        {
            return Err(self.error(
                Some(name.span()),
                "nix.build-host",
                format!(
                    "unknown host `{}`; defined hosts: {}",
                    name.get_ref(),
                    list(hosts.keys())
                ),
            ));
        }
        if let Some(cache) = &raw.cache
            && (cache.get_ref().trim().is_empty() || cache.get_ref().contains(char::is_whitespace))
        {
            return Err(self.error(
                Some(cache.span()),
                "nix.cache",
                "must be a Nix store URL, such as \"file:///var/cache/ci\" or \"s3://bucket\"",
            ));
        }
        if let (None, Some(key)) = (&raw.cache, &raw.signing_key_file) {
            return Err(self.error(
                Some(key.span()),
                "nix.signing-key-file",
                "signs what is pushed to `nix.cache`, which is not set",
            ));
        }
        let root = self.path.parent().unwrap_or(Path::new("."));
        Ok(NixSettings {
            build_host: raw.build_host.map(Spanned::into_inner),
            cache: raw.cache.map(Spanned::into_inner),
            signing_key_file: raw.signing_key_file.map(|p| root.join(p.into_inner())),
        })
    }

    /// A job's `runs-on`: every label is one some host declares or pikaci detects, and at
    /// least one host may have them all.
    fn runs_on(
        &self,
        id: &Id,
        backend: BackendKind,
        runs_on: &Spanned<Vec<Spanned<String>>>,
        hosts: &BTreeMap<Id, PoolHost>,
    ) -> Result<(), ConfigError> {
        let key = format!("jobs.{id}.runs-on");
        if backend == BackendKind::Host {
            return Err(self.error(
                Some(runs_on.span()),
                key,
                "a `host` job runs on this machine; runs-on picks hosts for microvm and incus jobs",
            ));
        }
        let known: BTreeSet<&str> = hosts
            .values()
            .flat_map(|h| h.labels.iter().map(String::as_str))
            .chain(DETECTED_LABELS)
            .collect();
        for label in runs_on.get_ref() {
            if !known.contains(label.get_ref().as_str()) {
                return Err(self.error(
                    Some(label.span()),
                    key,
                    format!(
                        "no host has the label `{}`; known labels: {}",
                        label.get_ref(),
                        known
                            .iter()
                            .map(|l| format!("`{l}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let wanted: Vec<&str> = runs_on
            .get_ref()
            .iter()
            .map(|l| l.get_ref().as_str())
            .collect();
        let lacks = |host: &PoolHost| -> Vec<&str> {
            wanted
                .iter()
                .copied()
                .filter(|l| !host.labels.contains(*l) && !DETECTED_LABELS.contains(l))
                .collect()
        };
        let arches = wanted.iter().filter(|l| l.ends_with("-linux")).count();
        let why: Vec<String> = hosts
            .values()
            .filter_map(|h| {
                let lacking = lacks(h);
                (!lacking.is_empty())
                    .then(|| format!("{} lacks `{}`", h.name, lacking.join("`, `")))
            })
            .collect();
        if arches > 1 {
            return Err(self.error(
                Some(runs_on.span()),
                key,
                "names two systems; a host is one of them",
            ));
        }
        if why.len() == hosts.len() {
            return Err(self.error(
                Some(runs_on.span()),
                key,
                format!("no host can run this job: {}", why.join("; ")),
            ));
        }
        Ok(())
    }

    fn backends(&self, raw: RawBackends) -> Result<Backends, ConfigError> {
        let mut backends = Backends::default();
        if let Some(m) = raw.microvm {
            let settings = &mut backends.microvm;
            let hypervisor_span = m.hypervisor.as_ref().map(Spanned::span);
            if let Some(h) = m.hypervisor {
                check_hypervisor(h.get_ref()).map_err(|e| {
                    self.error(
                        hypervisor_span.clone(),
                        "backends.microvm.hypervisor",
                        e.to_string(),
                    )
                })?;
                settings.hypervisor = h.into_inner();
            }
            if let Some(vcpu) = m.vcpu {
                if *vcpu.get_ref() == 0 {
                    return Err(self.error(
                        Some(vcpu.span()),
                        "backends.microvm.vcpu",
                        "must be at least 1",
                    ));
                }
                settings.vcpu = vcpu.into_inner();
            }
            if let Some(memory) = m.memory {
                settings.memory_bytes = parse_size(memory.get_ref()).map_err(|msg| {
                    self.error(Some(memory.span()), "backends.microvm.memory", msg)
                })?;
                check_memory(&settings.hypervisor, settings.memory_bytes).map_err(|e| {
                    self.error(
                        Some(memory.span()),
                        "backends.microvm.memory",
                        e.to_string(),
                    )
                })?;
            }
            settings.runner = m.runner;
            settings.pikaci_flake = m.pikaci_flake;
            if let Some(virtiofsd) = m.virtiofsd {
                settings.virtiofsd = virtiofsd;
            }
            if let Some(boot) = m.boot_timeout {
                settings.boot_timeout = boot.0;
            }
        }
        if let Some(i) = raw.incus {
            let settings = &mut backends.incus;
            settings.project = i.project.unwrap_or(settings.project.clone());
            settings.image = i.image.unwrap_or(settings.image.clone());
            settings.instance_type = i.instance_type.unwrap_or(settings.instance_type);
            settings.profiles = i.profiles.unwrap_or(settings.profiles.clone());
            if let Some(agent) = i.guest_agent {
                settings.guest_agent = agent;
            }
            for (key, value) in i.limits.unwrap_or_default() {
                let span = value.span();
                let name = format!("backends.incus.limits.{}", toml_key(&key));
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(self.error(
                        Some(span),
                        name,
                        "is not an Incus limit name (letters, digits, `.`, `-`, `_`; e.g. `cpu`, `memory`)",
                    ));
                }
                let value = match value.into_inner() {
                    LimitValue::Number(n) => n.to_string(),
                    LimitValue::Text(text) if !text.trim().is_empty() => text,
                    LimitValue::Text(_) => {
                        return Err(self.error(Some(span), name, "must not be empty"));
                    }
                };
                settings.limits.insert(key, value);
            }
            settings.sudo = i.sudo.as_ref().map_or(settings.sudo, |s| *s.get_ref());
            self.incus_remote_and_target(settings, i.remote, i.target, i.sudo)?;
        }
        Ok(backends)
    }

    fn inputs(
        &self,
        raw: BTreeMap<Id, Spanned<String>>,
    ) -> Result<BTreeMap<Id, String>, ConfigError> {
        raw.into_iter()
            .map(|(id, installable)| {
                if installable.get_ref().trim().is_empty() {
                    let key = format!("inputs.{id}");
                    return Err(self.error(
                        Some(installable.span()),
                        key,
                        "must be a Nix installable such as `.#toolchain`",
                    ));
                }
                if installable.get_ref().starts_with("..") {
                    let key = format!("inputs.{id}");
                    return Err(self.error(
                        Some(installable.span()),
                        key,
                        "must not leave the repository: inputs are built from the snapshot of this workspace",
                    ));
                }
                Ok((id, installable.into_inner()))
            })
            .collect()
    }

    fn jobs(
        &self,
        raw: BTreeMap<Id, RawJob>,
        defaults: &Defaults,
        inputs: &BTreeMap<Id, String>,
        hosts: &BTreeMap<Id, PoolHost>,
        flake_targets: &BTreeSet<Id>,
    ) -> Result<BTreeMap<Id, Job>, ConfigError> {
        let known: BTreeSet<&Id> = raw.keys().collect();
        // `T.name`: a build job of flake target `T`, known once its flake is evaluated.
        let of_flake = |need: &Id| {
            need.as_str()
                .split_once('.')
                .is_some_and(|(target, _)| flake_targets.contains(target))
        };
        for (id, job) in &raw {
            if let Some(runs_on) = &job.runs_on {
                let backend = job.backend.unwrap_or(defaults.backend);
                self.runs_on(id, backend, runs_on, hosts)?;
            }
            for input in &job.inputs {
                if !inputs.contains_key(input.get_ref()) {
                    let allowed = list(inputs.keys());
                    return Err(self.error(
                        Some(input.span()),
                        format!("jobs.{id}.inputs"),
                        format!(
                            "unknown input `{}`; defined inputs: {allowed}",
                            input.get_ref()
                        ),
                    ));
                }
            }
            for secret in &job.secrets {
                let name = secret.get_ref();
                let key = format!("jobs.{id}.secrets");
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(self.error(
                        Some(secret.span()),
                        key,
                        format!("`{name}` is not an environment variable name"),
                    ));
                }
                if job.env.contains_key(name) {
                    return Err(self.error(
                        Some(secret.span()),
                        key,
                        format!("`{name}` is also in jobs.{id}.env; a secret comes from pikaci's environment only"),
                    ));
                }
            }
            if let Some(shell) = &job.shell {
                self.shell(shell, &format!("jobs.{id}.shell"))?;
            }
            for need in &job.needs {
                if !known.contains(need.get_ref()) && !of_flake(need.get_ref()) {
                    return Err(self.error(
                        Some(need.span()),
                        format!("jobs.{id}.needs"),
                        format!(
                            "unknown job `{}`; defined jobs: {}",
                            need.get_ref(),
                            list(known.iter().copied())
                        ),
                    ));
                }
            }
        }
        self.check_needs_acyclic(&raw)?;
        let mut incus_targets = BTreeMap::new();
        for (id, job) in &raw {
            let backend = job.backend.unwrap_or(defaults.backend);
            if let Some(member) = self.job_incus_target(id, job, backend)? {
                incus_targets.insert(id.clone(), member);
            }
        }
        Ok(raw
            .into_iter()
            .map(|(id, job)| {
                let job = Job {
                    id: id.clone(),
                    command: job.command,
                    backend: job.backend.unwrap_or(defaults.backend),
                    inputs: job.inputs.into_iter().map(Spanned::into_inner).collect(),
                    needs: job.needs.into_iter().map(Spanned::into_inner).collect(),
                    timeout: job.timeout.map_or(defaults.timeout, |t| t.0),
                    root: job.root,
                    writable_workspace: job.writable_workspace,
                    env: job.env,
                    secrets: job.secrets.into_iter().map(Spanned::into_inner).collect(),
                    shell: job
                        .shell
                        .and_then(|shell| match shell.into_inner() {
                            ShellValue::List(argv) => Some(argv),
                            ShellValue::Text(_) => None, // rejected above
                        })
                        .unwrap_or_else(|| defaults.shell.clone()),
                    runs_on: job
                        .runs_on
                        .map(|labels| {
                            labels
                                .into_inner()
                                .into_iter()
                                .map(Spanned::into_inner)
                                .collect()
                        })
                        .unwrap_or_default(),
                    retries: job.retries,
                    incus_target: incus_targets.remove(&id),
                    build: None,
                };
                (id, job)
            })
            .collect())
    }

    /// A shell is a program and its arguments; the job's command becomes the last one.
    fn shell(&self, shell: &Spanned<ShellValue>, key: &str) -> Result<Vec<String>, ConfigError> {
        let argv = match shell.get_ref() {
            ShellValue::List(argv) => argv,
            ShellValue::Text(text) => {
                return Err(self.error(
                    Some(shell.span()),
                    key,
                    format!(
                        "must be a list, such as {:?}; pikaci does not split the string `{text}`",
                        text.split_whitespace().collect::<Vec<_>>()
                    ),
                ));
            }
        };
        let problem = match argv.first() {
            None => Some("must name a program, e.g. [\"bash\", \"-eo\", \"pipefail\", \"-c\"]"),
            Some(program) if program.trim().is_empty() => {
                Some("the program (first element) is empty")
            }
            Some(_) if argv.iter().any(|a| a.contains('\0')) => {
                Some("an argument contains a NUL byte")
            }
            Some(_) => None,
        };
        match problem {
            Some(message) => Err(self.error(Some(shell.span()), key, message)),
            None => Ok(argv.clone()),
        }
    }

    /// Depth-first search; the error names the whole cycle.
    fn check_needs_acyclic(&self, raw: &BTreeMap<Id, RawJob>) -> Result<(), ConfigError> {
        let by_id: BTreeMap<&Id, &RawJob> = raw.iter().collect();
        let mut done: BTreeSet<&Id> = BTreeSet::new();
        for start in by_id.keys() {
            let mut stack: Vec<&Id> = Vec::new();
            if let Some(cycle) = find_cycle(start, &by_id, &mut stack, &mut done) {
                let first = cycle[0];
                let span = by_id[first]
                    .needs
                    .iter()
                    .find(|n| n.get_ref() == cycle[1])
                    .map(Spanned::span);
                let path: Vec<&str> = cycle.iter().map(|id| id.as_str()).collect();
                return Err(self.error(
                    span,
                    format!("jobs.{first}.needs"),
                    format!(
                        "jobs depend on each other in a cycle: {}",
                        path.join(" -> ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn targets(
        &self,
        raw: BTreeMap<Id, RawTarget>,
        jobs: &BTreeMap<Id, Job>,
    ) -> Result<BTreeMap<Id, Target>, ConfigError> {
        let mut targets = BTreeMap::new();
        for (id, target) in raw {
            let key = format!("targets.{id}");
            let jobs_span = target.jobs.as_ref().map(Spanned::span);
            let no_jobs = target.jobs.as_ref().is_none_or(|j| j.get_ref().is_empty());
            if no_jobs && target.flake.is_none() {
                return Err(self.error(
                    jobs_span,
                    format!("{key}.jobs"),
                    "a target needs at least one job, or a `flake` whose derivations are its jobs",
                ));
            }
            if let Some(flake) = &target.flake {
                self.flake_ref(flake, &key)?;
            }
            let target_jobs = target.jobs.map(Spanned::into_inner).unwrap_or_default();
            if jobs.contains_key(id.as_str()) {
                return Err(self.error(
                    jobs_span,
                    key,
                    format!(
                        "`{id}` is both a job and a target; `pikaci run {id}` would be ambiguous"
                    ),
                ));
            }
            for job in &target_jobs {
                if !jobs.contains_key(job.get_ref()) {
                    return Err(self.error(
                        Some(job.span()),
                        format!("{key}.jobs"),
                        format!(
                            "unknown job `{}`; defined jobs: {}",
                            job.get_ref(),
                            list(jobs.keys())
                        ),
                    ));
                }
            }
            for pattern in &target.paths {
                if let Err(e) = globset::Glob::new(pattern.get_ref()) {
                    return Err(self.error(
                        Some(pattern.span()),
                        format!("{key}.paths"),
                        format!("invalid glob: {e}"),
                    ));
                }
            }
            targets.insert(
                id.clone(),
                Target {
                    id,
                    description: target.description,
                    paths: target.paths.into_iter().map(Spanned::into_inner).collect(),
                    jobs: target_jobs.into_iter().map(Spanned::into_inner).collect(),
                    flake: target.flake.map(Spanned::into_inner),
                },
            );
        }
        Ok(targets)
    }
}

impl Cx<'_> {
    /// A flake target's `flake`: a flake reference and the attribute path of an attribute
    /// set of derivations (`.#checks`, `github:o/r#packages`).
    fn flake_ref(&self, flake: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
        let attr = flake.get_ref().split_once('#').map(|(_, attr)| attr);
        if attr.is_none_or(|a| a.is_empty() || a.starts_with('.') || a.ends_with('.')) {
            return Err(self.error(
                Some(flake.span()),
                format!("{key}.flake"),
                format!(
                    "`{}` names no attribute; write a flake reference and an attribute path, such as \".#checks\" or \".#packages\"",
                    flake.get_ref()
                ),
            ));
        }
        Ok(())
    }
}

/// `key`, or `"key"` when TOML needs quotes around it.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The dotted key as written in TOML: keys that are not bare are quoted, and the private
/// field through which `Spanned` values deserialize is left out.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        let part = match segment {
            Segment::Map { key } if key == "$__serde_spanned_private_value" => continue,
            Segment::Map { key } | Segment::Enum { variant: key } => toml_key(key),
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Unknown => "?".to_string(),
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&part);
    }
    out
}

fn find_cycle<'a>(
    id: &'a Id,
    jobs: &BTreeMap<&'a Id, &'a RawJob>,
    stack: &mut Vec<&'a Id>,
    done: &mut BTreeSet<&'a Id>,
) -> Option<Vec<&'a Id>> {
    if let Some(pos) = stack.iter().position(|s| *s == id) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(id);
        return Some(cycle);
    }
    if done.contains(id) {
        return None;
    }
    stack.push(id);
    // Needs of build jobs (`T.name`) end there: build jobs need nothing.
    for need in jobs[id]
        .needs
        .iter()
        .filter(|n| jobs.contains_key(n.get_ref()))
    {
        if let Some(cycle) = find_cycle(need.get_ref(), jobs, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(id);
    None
}

fn list<'a>(ids: impl IntoIterator<Item = &'a Id>) -> String {
    let names: Vec<String> = ids.into_iter().map(|id| format!("`{id}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `local` or `ssh://[user@]host[:port]`.
pub fn parse_host(text: &str) -> Result<HostSpec, String> {
    if text == "local" {
        return Ok(HostSpec::Local);
    }
    let bad = || format!("invalid host `{text}`: expected `local` or `ssh://[user@]host[:port]`");
    let rest = text.strip_prefix("ssh://").ok_or_else(bad)?;
    let (user, hostport) = match rest.split_once('@') {
        Some((user, hostport)) if !user.is_empty() => (Some(user.to_string()), hostport),
        Some(_) => return Err(bad()),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, Some(port.parse::<u16>().map_err(|_| bad())?))
        }
        _ => (hostport, None),
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        && !host.starts_with('-');
    if !valid_host
        || user
            .as_deref()
            .is_some_and(|u| u.starts_with('-') || u.contains(char::is_whitespace))
    {
        return Err(bad());
    }
    Ok(HostSpec::Ssh {
        user,
        host: host.to_string(),
        port,
    })
}

mod incus;
#[cfg(test)]
mod tests;
