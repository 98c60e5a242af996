//! Runs the plan's DAG: up to `parallel` nodes at once, each as soon as what it depends
//! on has passed. A node whose dependency did not pass is recorded without running.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;

use super::job::{record_not_run, run_job};
use super::prepare::build_input;
use super::recorder::Recorder;
use crate::backend::RunBackends;
use crate::cancel::Cancel;
use crate::ids::Id;
use crate::nix::StorePath;
use crate::plan::Plan;
use crate::state::JobStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Prepare(usize),
    Job(usize),
}

#[derive(Clone, Debug)]
enum State {
    Waiting,
    Running,
    /// `Ok` = passed; `Err` = why dependents cannot run.
    Done(Result<(), String>),
}

enum Finished {
    Prepare(usize, Result<Vec<StorePath>, String>),
    Job(usize, std::io::Result<JobStatus>),
}

/// What the scheduler saw: per-job statuses and infrastructure failures.
#[derive(Debug, Default)]
pub struct Outcome {
    pub statuses: BTreeMap<Id, JobStatus>,
    pub infra_errors: Vec<String>,
}

pub fn execute(
    plan: &Plan,
    snapshot: &Path,
    backends: &RunBackends,
    parallel: usize,
    recorder: &Recorder,
    cancel: &Cancel,
) -> Outcome {
    let mut nodes: BTreeMap<Node, State> = (0..plan.prepare.len())
        .map(|i| (Node::Prepare(i), State::Waiting))
        .chain((0..plan.jobs.len()).map(|i| (Node::Job(i), State::Waiting)))
        .collect();
    let deps = dependencies(plan);
    let mut inputs: BTreeMap<Id, Vec<StorePath>> = BTreeMap::new();
    let mut outcome = Outcome::default();
    let (tx, rx) = mpsc::channel::<Finished>();
    let mut running = 0usize;

    std::thread::scope(|scope| {
        loop {
            // Settle nodes that cannot run, then start what is ready.
            let waiting: Vec<Node> = nodes
                .iter()
                .filter(|(_, s)| matches!(s, State::Waiting))
                .map(|(n, _)| *n)
                .collect();
            for node in waiting {
                let blocked = if cancel.is_cancelled() {
                    Some("cancelled before it started".to_string())
                } else {
                    deps[&node].iter().find_map(|d| match &nodes[d] {
                        State::Done(Err(why)) => Some(why.clone()),
                        _ => None,
                    })
                };
                if let Some(why) = blocked {
                    let status = if cancel.is_cancelled() {
                        JobStatus::Cancelled
                    } else {
                        JobStatus::Skipped
                    };
                    nodes.insert(node, State::Done(Err(why.clone())));
                    if let Node::Job(i) = node {
                        let job = &plan.jobs[i];
                        let reason = format!("not run: {why}");
                        if let Err(e) = record_not_run(recorder, job, status, reason) {
                            outcome
                                .infra_errors
                                .push(format!("cannot record job `{}`: {e}", job.job.id));
                        }
                        outcome.statuses.insert(job.job.id.clone(), status);
                    }
                    continue;
                }
                let ready = deps[&node]
                    .iter()
                    .all(|d| matches!(nodes[d], State::Done(Ok(()))));
                if !ready || running >= parallel {
                    continue;
                }
                nodes.insert(node, State::Running);
                running += 1;
                let tx = tx.clone();
                let inputs = inputs.clone();
                scope.spawn(move || {
                    let finished = match node {
                        Node::Prepare(i) => Finished::Prepare(
                            i,
                            build_input(&plan.prepare[i], snapshot, recorder, cancel),
                        ),
                        Node::Job(i) => Finished::Job(
                            i,
                            run_job(&plan.jobs[i], snapshot, &inputs, backends, recorder, cancel),
                        ),
                    };
                    let _ = tx.send(finished);
                });
            }
            if running == 0 {
                break;
            }
            let Ok(finished) = rx.recv() else { break };
            running -= 1;
            match finished {
                Finished::Prepare(i, result) => {
                    let node = &plan.prepare[i];
                    let state = match result {
                        Ok(paths) => {
                            for input in &node.inputs {
                                inputs.insert(input.clone(), paths.clone());
                            }
                            Ok(())
                        }
                        Err(e) => {
                            outcome.infra_errors.push(crate::hint::with_hint(format!(
                                "input `{}` did not build: {e}",
                                node.inputs[0]
                            )));
                            Err(format!("input `{}` did not build", node.inputs[0]))
                        }
                    };
                    nodes.insert(Node::Prepare(i), State::Done(state));
                }
                Finished::Job(i, result) => {
                    let id = &plan.jobs[i].job.id;
                    let status = result.unwrap_or_else(|e| {
                        outcome
                            .infra_errors
                            .push(format!("cannot record job `{id}`: {e}"));
                        JobStatus::Error
                    });
                    outcome.statuses.insert(id.clone(), status);
                    let state = if status == JobStatus::Passed {
                        Ok(())
                    } else {
                        Err(format!("needed job `{id}` {status}"))
                    };
                    nodes.insert(Node::Job(i), State::Done(state));
                }
            }
        }
    });
    outcome
}

/// Node → the nodes it waits for: its input builds and the jobs it needs.
fn dependencies(plan: &Plan) -> BTreeMap<Node, Vec<Node>> {
    let job_index: BTreeMap<&Id, usize> = plan
        .jobs
        .iter()
        .enumerate()
        .map(|(i, n)| (&n.job.id, i))
        .collect();
    let mut deps: BTreeMap<Node, Vec<Node>> = (0..plan.prepare.len())
        .map(|i| (Node::Prepare(i), Vec::new()))
        .collect();
    for (i, node) in plan.jobs.iter().enumerate() {
        let mut list: Vec<Node> = node
            .job
            .needs
            .iter()
            .filter_map(|need| job_index.get(need).map(|j| Node::Job(*j)))
            .collect();
        for (p, prepare) in plan.prepare.iter().enumerate() {
            if node
                .job
                .inputs
                .iter()
                .any(|input| prepare.inputs.contains(input))
            {
                list.push(Node::Prepare(p));
            }
        }
        deps.insert(Node::Job(i), list);
    }
    deps
}
