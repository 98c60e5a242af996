//! Flake targets at plan time: each `[targets.T] flake = "REF#ATTR"` a run needs is
//! evaluated once, in the run's snapshot, and every derivation of that attribute set
//! becomes a build job `T.<name>` of a copy of the config, which the plan is then built
//! from like any config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use crate::cancel::Cancel;
use crate::config::{BackendKind, BuildSpec, Config, Job};
use crate::fsutil::tail;
use crate::ids::Id;
use crate::nix::flake_jobs::{Evaluated, eval_argv, job_ids, parse_evaluated};
use crate::nix::installable_in;
use crate::plan::FlakeEval;
use crate::transport::{Local, Step, Transport};

#[derive(Debug, thiserror::Error)]
pub enum FlakeTargetError {
    #[error(
        "targets.{target}.flake: cannot evaluate `{attr}` ({status}); last lines of nix's stderr:\n{stderr_tail}"
    )]
    Eval {
        target: Id,
        attr: String,
        status: String,
        stderr_tail: String,
    },
    #[error("targets.{target}.flake: cannot run `{command}`: {detail}")]
    Spawn {
        target: Id,
        command: String,
        detail: String,
    },
    #[error("targets.{target}.flake: `{command}` printed JSON pikaci cannot read: {detail}")]
    BadOutput {
        target: Id,
        command: String,
        detail: String,
    },
    #[error(
        "targets.{target}.flake: `{attr}` holds attributes that are not derivations: {names}; a flake target's attribute set must hold only derivations (for `{system}`)"
    )]
    NotDerivations {
        target: Id,
        attr: String,
        system: String,
        names: String,
    },
    #[error(
        "targets.{target}.flake: the build job of `{name}` would be `{id}`, which is already a job; rename that job"
    )]
    IdTaken { target: Id, name: String, id: Id },
    #[error("jobs.{job}.needs: flake target `{target}` has no job `{need}`; its jobs: {jobs}")]
    UnknownNeed {
        job: Id,
        need: Id,
        target: Id,
        jobs: String,
    },
}

/// The system build jobs are evaluated for: the build host's (`uname -m` there, as the
/// pool's probe reads it) when there is one, else this machine's. A build host that
/// does not answer leaves this machine's, with a note: its jobs fail when they start.
pub fn system_for(config: &Config, state_root: &Path, cancel: &Cancel) -> String {
    let Some(b) = config
        .nix
        .build_host
        .as_ref()
        .and_then(|b| config.hosts.get(b))
    else {
        return system();
    };
    let reached = crate::pool::reach_all(config, &[b], state_root, cancel);
    match reached.into_iter().next().map(|(_, r)| r) {
        Some(Ok(reached)) => reached.probe.system,
        Some(Err(e)) => {
            crate::errln!(
                "note: build host `{}` did not answer ({}); flake targets are evaluated for {}",
                b.name,
                crate::error::chain(&e),
                system()
            );
            system()
        }
        None => system(),
    }
}

/// This machine's system.
pub fn system() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    };
    format!("{}-{os}", std::env::consts::ARCH)
}

/// The flake targets a run of `selection` needs: the selected ones (every target when
/// nothing is selected), those whose jobs are selected by id, and those whose jobs the
/// selected TOML jobs need, directly or through other TOML jobs.
pub fn needed(config: &Config, selection: &[String]) -> BTreeSet<Id> {
    let flake_of = |name: &str| -> Option<Id> {
        let (target, _) = name.split_once('.')?;
        let t = config.targets.get(target)?;
        t.flake.is_some().then(|| t.id.clone())
    };
    let mut wanted = BTreeSet::new();
    let mut jobs: Vec<&Id> = Vec::new();
    let selected: Vec<&crate::config::Target> = if selection.is_empty() {
        config.targets.values().collect()
    } else {
        selection
            .iter()
            .filter_map(|name| config.targets.get(name.as_str()))
            .collect()
    };
    for target in selected {
        if target.flake.is_some() {
            wanted.insert(target.id.clone());
        }
        jobs.extend(&target.jobs);
    }
    for name in selection {
        if let Some(job) = config.jobs.get(name.as_str()) {
            jobs.push(&job.id);
        } else if let Some(target) = flake_of(name) {
            wanted.insert(target);
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(id) = jobs.pop() {
        if !seen.insert(id) {
            continue;
        }
        match config.jobs.get(id) {
            Some(job) => jobs.extend(&job.needs),
            None => wanted.extend(flake_of(id.as_str())),
        }
    }
    wanted
}

/// Evaluates each of `targets` in `snapshot` and returns the config with their build
/// jobs, and what each evaluation found.
pub fn expand(
    config: &Config,
    targets: &BTreeSet<Id>,
    at: (&Path, &str),
    skip_cached: bool,
    cancel: &Cancel,
) -> Result<(Config, Vec<FlakeEval>), FlakeTargetError> {
    let (snapshot, system) = at;
    let mut expanded = config.clone();
    let mut evaluations = Vec::new();
    for id in targets {
        let Some(flake) = config.targets[id].flake.clone() else {
            continue;
        };
        let eval = evaluate(id, &flake, system, snapshot, cancel)?;
        for (name, job_id) in &eval.jobs {
            if expanded.jobs.contains_key(job_id) {
                return Err(FlakeTargetError::IdTaken {
                    target: id.clone(),
                    name: name.clone(),
                    id: job_id.clone(),
                });
            }
            let spec = BuildSpec {
                flake: flake.clone(),
                attr_path: eval.attr_path.clone(),
                name: name.clone(),
                skip_cached,
            };
            expanded
                .jobs
                .insert(job_id.clone(), build_job(config, job_id, spec));
        }
        let target = expanded
            .targets
            .get_mut(id)
            .expect("a target of the config");
        target
            .jobs
            .extend(eval.jobs.iter().map(|(_, id)| id.clone()));
        evaluations.push(eval);
    }
    check_needs(&expanded, targets)?;
    Ok((expanded, evaluations))
}

/// A TOML job's `needs` on `T.x` names a job `T`'s evaluation made.
fn check_needs(config: &Config, evaluated: &BTreeSet<Id>) -> Result<(), FlakeTargetError> {
    for job in config.jobs.values() {
        for need in &job.needs {
            if config.jobs.contains_key(need) {
                continue;
            }
            let Some((target, _)) = need.as_str().split_once('.') else {
                continue;
            };
            let Some(target) = evaluated.iter().find(|t| t.as_str() == target) else {
                continue;
            };
            let jobs: Vec<&str> = config.targets[target].jobs.iter().map(Id::as_str).collect();
            return Err(FlakeTargetError::UnknownNeed {
                job: job.id.clone(),
                need: need.clone(),
                target: target.clone(),
                jobs: if jobs.is_empty() {
                    "none".into()
                } else {
                    jobs.join(", ")
                },
            });
        }
    }
    Ok(())
}

fn build_job(config: &Config, id: &Id, spec: BuildSpec) -> Job {
    Job {
        id: id.clone(),
        command: format!("nix build {}", spec.installable()),
        // It runs where builds run (this machine or the build host), never in a guest.
        backend: BackendKind::Host,
        inputs: Vec::new(),
        needs: Vec::new(),
        timeout: config.defaults.timeout,
        root: false,
        writable_workspace: false,
        env: BTreeMap::new(),
        secrets: Vec::new(),
        shell: config.defaults.shell.clone(),
        runs_on: Vec::new(),
        retries: 0,
        incus_target: None,
        build: Some(spec),
    }
}

/// One `nix eval` of a flake target's attribute set, on this machine.
fn evaluate(
    target: &Id,
    flake: &str,
    system: &str,
    snapshot: &Path,
    cancel: &Cancel,
) -> Result<FlakeEval, FlakeTargetError> {
    let started = Instant::now();
    let installable = installable_in(snapshot, flake);
    let argv = eval_argv(&installable, system, snapshot);
    let command = argv.to_string();
    let output = Local
        .run_unchecked(&argv, b"", Step::Build.from_now(), cancel)
        .map_err(|e| FlakeTargetError::Spawn {
            target: target.clone(),
            command: command.clone(),
            detail: crate::error::chain(&e),
        })?;
    if !output.status.success() {
        return Err(FlakeTargetError::Eval {
            target: target.clone(),
            attr: flake.to_string(),
            status: output.status.to_string(),
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), 15),
        });
    }
    let evaluated: Evaluated =
        parse_evaluated(&String::from_utf8_lossy(&output.stdout)).map_err(|detail| {
            FlakeTargetError::BadOutput {
                target: target.clone(),
                command,
                detail,
            }
        })?;
    let attr = flake.split_once('#').map_or("", |(_, a)| a);
    let attr_path = if evaluated.per_system {
        format!("{attr}.{system}")
    } else {
        attr.to_string()
    };
    if !evaluated.others.is_empty() {
        return Err(FlakeTargetError::NotDerivations {
            target: target.clone(),
            attr: attr_path,
            system: system.to_string(),
            names: evaluated.others.join(", "),
        });
    }
    let ids = job_ids(target, &evaluated.derivations);
    Ok(FlakeEval {
        target: target.clone(),
        flake: flake.to_string(),
        attr_path,
        system: system.to_string(),
        duration_ms: started.elapsed().as_millis() as u64,
        jobs: evaluated.derivations.into_iter().zip(ids).collect(),
    })
}

/// `pikaci targets`: every flake target of the config evaluated in a fresh snapshot of
/// the workspace, as a run would.
pub fn evaluate_all(
    config: &Config,
    state: &crate::state::StateDir,
    cancel: &Cancel,
) -> Result<Vec<FlakeEval>, crate::error::Error> {
    let all: BTreeSet<Id> = config
        .targets
        .values()
        .filter(|t| t.flake.is_some())
        .map(|t| t.id.clone())
        .collect();
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let exclude = vec![state.root().to_path_buf()];
    let snapshot =
        crate::snapshot::take_cancellable(&config.root, &state.cache(), &exclude, cancel).map_err(
            |e| crate::error::Error::infra("taking the snapshot to evaluate flake targets in", e),
        )?;
    let system = system_for(config, state.root(), cancel);
    let (_, evaluations) = expand(config, &all, (&snapshot.dir, &system), true, cancel)?;
    Ok(evaluations)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[defaults]
backend = "host"
[targets.checks]
flake = ".#checks"
[targets.pkgs]
flake = ".#packages"
[jobs.deploy]
command = "x"
needs = ["checks.ok"]
[jobs.lint]
command = "y"
[targets.release]
jobs = ["deploy"]
[targets.style]
jobs = ["lint"]
"#;

    fn config() -> Config {
        crate::config::parse(Path::new("/r/pikaci.toml"), CONFIG).unwrap()
    }

    fn names(set: BTreeSet<Id>) -> Vec<String> {
        set.into_iter().map(String::from).collect()
    }

    #[test]
    fn only_the_flake_targets_a_run_needs_are_evaluated() {
        let config = config();
        let needed = |selection: &[&str]| {
            let selection: Vec<String> = selection.iter().map(|s| s.to_string()).collect();
            names(needed(&config, &selection))
        };
        assert_eq!(needed(&[]), ["checks", "pkgs"]);
        assert_eq!(needed(&["release"]), ["checks"], "deploy needs checks.ok");
        assert_eq!(needed(&["deploy"]), ["checks"]);
        assert_eq!(needed(&["pkgs.hello"]), ["pkgs"], "a build job named by id");
        assert!(needed(&["style"]).is_empty());
    }

    /// What an evaluation of `checks` adds, without Nix.
    fn with_checks(config: &Config, names: &[&str]) -> Config {
        let mut config = config.clone();
        let target = Id::new("checks").unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        for (name, id) in names.iter().zip(job_ids(&target, &names)) {
            let spec = BuildSpec {
                flake: ".#checks".into(),
                attr_path: "checks.x86_64-linux".into(),
                name: name.clone(),
                skip_cached: true,
            };
            config
                .jobs
                .insert(id.clone(), build_job(&config, &id, spec));
            config.targets.get_mut("checks").unwrap().jobs.push(id);
        }
        config
    }

    #[test]
    fn a_need_on_a_build_job_the_evaluation_did_not_make_is_named() {
        let evaluated = BTreeSet::from([Id::new("checks").unwrap()]);
        let config = with_checks(&config(), &["fmt", "unit tests"]);
        let err = check_needs(&config, &evaluated).unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"jobs.deploy.needs: flake target `checks` has no job `checks.ok`; its jobs: checks.fmt, checks.unit_tests");
        let config = with_checks(&self::config(), &["ok"]);
        assert!(check_needs(&config, &evaluated).is_ok());
    }

    #[test]
    fn build_jobs_are_planned_before_the_jobs_that_need_them() {
        let config = with_checks(&config(), &["ok", "a b"]);
        let plan = crate::plan::Plan::build(&config, &["release".into()], |_| None).unwrap();
        let ids: Vec<&str> = plan.jobs.iter().map(|n| n.job.id.as_str()).collect();
        assert_eq!(ids, ["checks.ok", "deploy"]);
        let build = plan.jobs[0].job.build.as_ref().unwrap();
        assert_eq!(build.installable(), ".#checks.x86_64-linux.ok");
        let all = crate::plan::Plan::build(&config, &["checks".into()], |_| None).unwrap();
        let spaced = all.jobs.iter().find(|n| n.job.id.as_str() == "checks.a_b");
        let spaced = spaced.unwrap().job.build.as_ref().unwrap();
        assert_eq!(spaced.installable(), ".#checks.x86_64-linux.\"a b\"");
        assert_eq!(
            all.jobs[0].job.command,
            "nix build .#checks.x86_64-linux.\"a b\""
        );
    }
}
