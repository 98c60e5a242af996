//! Targets → a DAG: prepare nodes (Nix builds of inputs, one per distinct installable)
//! and execute nodes (jobs, ordered by `needs`). Written to `plan.json`, which is also
//! what `pikaci rerun` replays.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Job, Target};
use crate::ids::Id;

pub const PLAN_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema_version: u32,
    pub prepare: Vec<PrepareNode>,
    /// In an order where every job comes after the jobs it needs.
    pub jobs: Vec<ExecuteNode>,
    pub skipped: Vec<SkippedJob>,
    /// The flake targets evaluated into build jobs for this plan, with how long each took
    /// (the run's `eval` phase).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluations: Vec<FlakeEval>,
}

/// One flake target's evaluation: what was evaluated, for which system, how long it took,
/// and each attribute's job id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlakeEval {
    pub target: Id,
    /// As configured (`.#checks`).
    pub flake: String,
    /// The attribute path the jobs are under (`checks.x86_64-linux` when per-system).
    pub attr_path: String,
    pub system: String,
    pub duration_ms: u64,
    /// Attribute name → job id, in Nix's order.
    pub jobs: Vec<(String, Id)>,
}

/// A Nix build shared by every job whose inputs name the same installable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareNode {
    pub installable: String,
    /// Input names that resolve to this build; the first names its GC root.
    pub inputs: Vec<Id>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteNode {
    pub job: Job,
    pub targets: Vec<Id>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedJob {
    pub job: Id,
    pub targets: Vec<Id>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown target or job `{name}`; targets: {targets}; jobs: {jobs}")]
pub struct UnknownSelection {
    pub name: String,
    pub targets: String,
    pub jobs: String,
}

impl Plan {
    /// Resolves `selection` (target or job names; empty = every target, or every job when
    /// there are no targets). `skip` says why a target's path filter excludes it.
    pub fn build(
        config: &Config,
        selection: &[String],
        skip: impl Fn(&Target) -> Option<String>,
    ) -> Result<Plan, UnknownSelection> {
        // job → the targets that asked for it (empty for a job named directly)
        let mut wanted: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
        let mut skipped: BTreeMap<Id, (BTreeSet<Id>, String)> = BTreeMap::new();
        let mut add_target = |target: &Target, wanted: &mut BTreeMap<Id, BTreeSet<Id>>| {
            let reason = skip(target);
            for job in &target.jobs {
                match &reason {
                    None => {
                        wanted
                            .entry(job.clone())
                            .or_default()
                            .insert(target.id.clone());
                    }
                    Some(reason) => {
                        let entry = skipped
                            .entry(job.clone())
                            .or_insert_with(|| (BTreeSet::new(), reason.clone()));
                        entry.0.insert(target.id.clone());
                    }
                }
            }
        };
        if selection.is_empty() {
            if config.targets.is_empty() {
                wanted.extend(config.jobs.keys().map(|id| (id.clone(), BTreeSet::new())));
            }
            for target in config.targets.values() {
                add_target(target, &mut wanted);
            }
        }
        for name in selection {
            if let Some(target) = config.targets.get(name.as_str()) {
                add_target(target, &mut wanted);
            } else if let Some(job) = config.jobs.get(name.as_str()) {
                wanted.entry(job.id.clone()).or_default();
            } else {
                return Err(unknown(config, name));
            }
        }
        close_over_needs(config, &mut wanted);
        let jobs: Vec<&Job> = topological(config, wanted.keys());
        let prepare = prepare_nodes(config, &jobs);
        Ok(Plan {
            schema_version: PLAN_SCHEMA,
            prepare,
            jobs: jobs
                .into_iter()
                .map(|job| ExecuteNode {
                    job: job.clone(),
                    targets: wanted[&job.id].iter().cloned().collect(),
                })
                .collect(),
            skipped: skipped
                .into_iter()
                .filter(|(job, _)| !wanted.contains_key(job))
                .map(|(job, (targets, reason))| SkippedJob {
                    job,
                    targets: targets.into_iter().collect(),
                    reason,
                })
                .collect(),
            evaluations: Vec::new(),
        })
    }

    /// The plan restricted to `keep`; `needs` on jobs that are not kept are dropped,
    /// since their results are already recorded. Used by `rerun --failed`.
    pub fn subset(&self, keep: &BTreeSet<Id>) -> Plan {
        let jobs: Vec<ExecuteNode> = self
            .jobs
            .iter()
            .filter(|n| keep.contains(&n.job.id))
            .cloned()
            .map(|mut node| {
                node.job.needs.retain(|need| keep.contains(need));
                node
            })
            .collect();
        let used: BTreeSet<&Id> = jobs.iter().flat_map(|n| &n.job.inputs).collect();
        let prepare = self
            .prepare
            .iter()
            .filter(|p| p.inputs.iter().any(|i| used.contains(i)))
            .cloned()
            .collect();
        Plan {
            schema_version: PLAN_SCHEMA,
            prepare,
            jobs,
            skipped: Vec::new(),
            evaluations: Vec::new(),
        }
    }
}

fn unknown(config: &Config, name: &str) -> UnknownSelection {
    let join = |ids: Vec<&Id>| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    UnknownSelection {
        name: name.to_string(),
        targets: join(config.targets.keys().collect()),
        jobs: join(config.jobs.keys().collect()),
    }
}

fn close_over_needs(config: &Config, wanted: &mut BTreeMap<Id, BTreeSet<Id>>) {
    let mut stack: Vec<Id> = wanted.keys().cloned().collect();
    while let Some(id) = stack.pop() {
        for need in &config.jobs[&id].needs {
            if !wanted.contains_key(need) {
                wanted.insert(need.clone(), BTreeSet::new());
                stack.push(need.clone());
            }
        }
    }
}

/// Kahn's algorithm, ties broken by id so plans are stable. Config load rejected cycles.
fn topological<'a>(config: &'a Config, ids: impl Iterator<Item = &'a Id>) -> Vec<&'a Job> {
    let set: BTreeSet<&Id> = ids.collect();
    let mut waiting: BTreeMap<&Id, usize> = set
        .iter()
        .map(|id| {
            (
                *id,
                config.jobs[*id]
                    .needs
                    .iter()
                    .filter(|n| set.contains(n))
                    .count(),
            )
        })
        .collect();
    let mut order = Vec::new();
    while let Some(next) = waiting.iter().find(|(_, n)| **n == 0).map(|(id, _)| *id) {
        waiting.remove(next);
        order.push(&config.jobs[next]);
        for (id, count) in waiting.iter_mut() {
            if config.jobs[*id].needs.contains(next) {
                *count -= 1;
            }
        }
    }
    order
}

fn prepare_nodes(config: &Config, jobs: &[&Job]) -> Vec<PrepareNode> {
    let mut by_installable: BTreeMap<&str, BTreeSet<Id>> = BTreeMap::new();
    for input in jobs.iter().flat_map(|j| &j.inputs) {
        by_installable
            .entry(config.inputs[input].as_str())
            .or_default()
            .insert(input.clone());
    }
    by_installable
        .into_iter()
        .map(|(installable, inputs)| PrepareNode {
            installable: installable.to_string(),
            inputs: inputs.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
[inputs]
rust = ".#toolchain"
alias = ".#toolchain"
node = ".#node"
[jobs.build]
command = "make"
inputs = ["rust"]
[jobs.test]
command = "make test"
needs = ["build"]
inputs = ["alias"]
[jobs.docs]
command = "make docs"
inputs = ["node"]
[targets.ci]
jobs = ["test"]
[targets.site]
paths = ["docs/**"]
jobs = ["docs"]
"#;

    fn config() -> Config {
        crate::config::parse(Path::new("/r/pikaci.toml"), CONFIG).unwrap()
    }

    fn job_ids(plan: &Plan) -> Vec<&str> {
        plan.jobs.iter().map(|n| n.job.id.as_str()).collect()
    }

    #[test]
    fn target_pulls_in_needs_in_order_and_dedups_builds() {
        let plan = Plan::build(&config(), &["ci".into()], |_| None).unwrap();
        assert_eq!(job_ids(&plan), ["build", "test"]);
        assert_eq!(
            plan.prepare.len(),
            1,
            "rust and alias share one installable"
        );
        assert_eq!(plan.prepare[0].inputs.len(), 2);
    }

    #[test]
    fn filtered_target_is_recorded_as_skipped() {
        let plan = Plan::build(&config(), &[], |t| {
            (t.id.as_str() == "site").then(|| "no change".into())
        })
        .unwrap();
        assert_eq!(job_ids(&plan), ["build", "test"]);
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].job.as_str(), "docs");
        assert_eq!(plan.skipped[0].reason, "no change");
    }

    #[test]
    fn a_job_named_directly_is_never_filtered() {
        let plan = Plan::build(&config(), &["docs".into()], |_| Some("x".into())).unwrap();
        assert_eq!(job_ids(&plan), ["docs"]);
    }

    #[test]
    fn unknown_name_lists_what_exists() {
        let err = Plan::build(&config(), &["nope".into()], |_| None).unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"unknown target or job `nope`; targets: ci, site; jobs: build, docs, test");
    }

    #[test]
    fn subset_drops_needs_outside_it() {
        let plan = Plan::build(&config(), &["ci".into()], |_| None).unwrap();
        let keep = BTreeSet::from([Id::new("test").unwrap()]);
        let sub = plan.subset(&keep);
        assert_eq!(job_ids(&sub), ["test"]);
        assert!(sub.jobs[0].job.needs.is_empty());
        assert_eq!(sub.prepare.len(), 1);
    }
}
