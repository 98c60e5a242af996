//! Runs the plan's DAG: up to `parallel` nodes at once, each as soon as what it depends
//! on has passed. A node whose dependency did not pass is recorded without running; a
//! node whose thread panics or cannot start is an `error`, and the run goes on.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, mpsc};

use super::dag::Dag;
use super::job::{RunShared, record_not_run, run_job};
use super::prepare::build_input;
use super::recorder::Recorder;
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

enum Finished {
    Prepare(usize, Result<Vec<StorePath>, String>),
    Job(usize, std::io::Result<JobStatus>),
}

/// What became of a node.
#[derive(Debug, PartialEq)]
enum Settled<N, T> {
    /// It never ran: the run was cancelled, or something it waits for did not pass.
    NotRun {
        node: N,
        why: String,
        cancelled: bool,
    },
    /// It ran; `Err` holds why its thread ended without a value (a panic, or no thread).
    Ran { node: N, result: Result<T, String> },
}

const CANCELLED: &str = "cancelled before it started";

/// What the scheduler saw: per-job statuses and infrastructure failures.
#[derive(Debug, Default)]
pub struct Outcome {
    pub statuses: BTreeMap<Id, JobStatus>,
    pub infra_errors: Vec<String>,
    /// Jobs whose final record could not be written, with why (e.g. out of file
    /// descriptors); the run writes them again once its jobs are over.
    pub unrecorded: BTreeMap<Id, String>,
}

pub fn execute(plan: &Plan, run: &RunShared, parallel: usize) -> Outcome {
    let recorder = run.recorder;
    let inputs: Mutex<BTreeMap<Id, Vec<StorePath>>> = Mutex::new(BTreeMap::new());
    let mut outcome = Outcome::default();
    let work = |node: Node| match node {
        Node::Prepare(i) => Finished::Prepare(
            i,
            build_input(&plan.prepare[i], run.snapshot, recorder, run.cancel),
        ),
        Node::Job(i) => {
            let inputs = inputs.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Finished::Job(i, run_job(&plan.jobs[i], &inputs, run))
        }
    };
    let settle = |settled: Settled<Node, Finished>| -> Result<(), String> {
        match settled {
            Settled::Ran {
                result: Ok(Finished::Prepare(i, built)),
                ..
            } => {
                let built = built.inspect(|paths| {
                    let mut inputs = inputs.lock().unwrap_or_else(|p| p.into_inner());
                    for input in &plan.prepare[i].inputs {
                        inputs.insert(input.clone(), paths.clone());
                    }
                });
                prepare_over(plan, i, built.map(drop), &mut outcome)
            }
            Settled::Ran {
                node: Node::Prepare(i),
                result: Err(why),
            } => prepare_over(plan, i, Err(why), &mut outcome),
            Settled::Ran {
                result: Ok(Finished::Job(i, recorded)),
                ..
            } => {
                let id = &plan.jobs[i].job.id;
                let status = recorded.unwrap_or_else(|e| {
                    outcome
                        .infra_errors
                        .push(format!("cannot record job `{id}`: {e}"));
                    outcome.unrecorded.insert(id.clone(), e.to_string());
                    JobStatus::Error
                });
                job_over(plan, i, status, &mut outcome)
            }
            Settled::Ran {
                node: Node::Job(i),
                result: Err(why),
            } => {
                let message = format!("pikaci could not run it: {why}");
                record(plan, i, JobStatus::Error, message, recorder, &mut outcome);
                job_over(plan, i, JobStatus::Error, &mut outcome)
            }
            Settled::NotRun {
                node: Node::Job(i),
                why,
                cancelled,
            } => {
                let status = if cancelled {
                    JobStatus::Cancelled
                } else {
                    JobStatus::Skipped
                };
                let message = format!("not run: {why}");
                record(plan, i, status, message, recorder, &mut outcome);
                Err(why)
            }
            Settled::NotRun {
                node: Node::Prepare(_),
                why,
                ..
            } => Err(why),
        }
    };
    schedule(
        Dag::new(dependencies(plan)),
        parallel,
        run.cancel,
        &work,
        settle,
    );
    outcome
}

fn prepare_over(
    plan: &Plan,
    i: usize,
    built: Result<(), String>,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let input = &plan.prepare[i].inputs[0];
    built.map_err(|e| {
        outcome.infra_errors.push(crate::hint::with_hint(format!(
            "input `{input}` did not build: {e}"
        )));
        format!("input `{input}` did not build")
    })
}

fn job_over(plan: &Plan, i: usize, status: JobStatus, outcome: &mut Outcome) -> Result<(), String> {
    let id = &plan.jobs[i].job.id;
    outcome.statuses.insert(id.clone(), status);
    if status == JobStatus::Passed {
        Ok(())
    } else {
        Err(format!("needed job `{id}` {status}"))
    }
}

/// Writes the final record of a job that did not run to its end.
fn record(
    plan: &Plan,
    i: usize,
    status: JobStatus,
    message: String,
    recorder: &Recorder,
    outcome: &mut Outcome,
) {
    let job = &plan.jobs[i];
    if let Err(e) = record_not_run(recorder, job, status, message) {
        outcome
            .infra_errors
            .push(format!("cannot record job `{}`: {e}", job.job.id));
        outcome.unrecorded.insert(job.job.id.clone(), e.to_string());
    }
    outcome.statuses.insert(job.job.id.clone(), status);
}

/// Runs `work` for each node of `dag` in a thread of its own, at most `parallel` at once,
/// and hands every node to `settle` exactly once; `settle`'s answer for a node that ran
/// decides whether its dependents may run. Returns when every node is settled: a
/// panicking `work` is that node's `Err`, so no node is waited for in vain.
fn schedule<N, T>(
    mut dag: Dag<N>,
    parallel: usize,
    cancel: &Cancel,
    work: &(dyn Fn(N) -> T + Sync),
    mut settle: impl FnMut(Settled<N, T>) -> Result<(), String>,
) where
    N: Ord + Copy + Send,
    T: Send,
{
    let (tx, rx) = mpsc::channel::<(N, Result<T, String>)>();
    std::thread::scope(|scope| {
        loop {
            if cancel.is_cancelled() {
                for node in dag.block_all(CANCELLED) {
                    let _ = settle(Settled::NotRun {
                        node,
                        why: CANCELLED.into(),
                        cancelled: true,
                    });
                }
            }
            for (node, why) in dag.block() {
                let _ = settle(Settled::NotRun {
                    node,
                    why,
                    cancelled: false,
                });
            }
            let free = parallel.max(1).saturating_sub(dag.running());
            for node in dag.ready().into_iter().take(free) {
                dag.start(node);
                let tx = tx.clone();
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(node)))
                        .map_err(|panic| format!("it panicked: {}", panic_message(&*panic)));
                    let _ = tx.send((node, result));
                });
                if let Err(e) = spawned {
                    let result = Err(format!("cannot start a thread for it: {e}"));
                    let over = settle(Settled::Ran { node, result });
                    dag.complete(node, over);
                }
            }
            if dag.running() == 0 {
                debug_assert!(dag.is_over());
                break;
            }
            // Each started thread sends once, whether `work` returned or panicked.
            let Ok((node, result)) = rx.recv() else {
                break;
            };
            let over = settle(Settled::Ran { node, result });
            dag.complete(node, over);
        }
    });
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `dag` with `work`, returning everything `settle` was handed, in order.
    fn settle_all(
        deps: &[(char, &[char])],
        cancel: &Cancel,
        work: &(dyn Fn(char) -> bool + Sync),
    ) -> Vec<Settled<char, bool>> {
        let deps = deps.iter().map(|(n, d)| (*n, d.to_vec())).collect();
        let mut seen = Vec::new();
        schedule(Dag::new(deps), 2, cancel, work, |settled| {
            let over = match &settled {
                Settled::Ran {
                    result: Ok(true), ..
                } => Ok(()),
                _ => Err("not passed".to_string()),
            };
            seen.push(settled);
            over
        });
        seen
    }

    #[test]
    fn a_panicking_node_is_settled_with_its_message_and_the_run_ends() {
        let seen = settle_all(
            &[('a', &[]), ('b', &['a']), ('c', &[])],
            &Cancel::new(),
            &|node| {
                if node == 'a' {
                    panic!("overflow when adding duration to instant");
                }
                true
            },
        );
        assert!(seen.contains(&Settled::Ran {
            node: 'a',
            result: Err("it panicked: overflow when adding duration to instant".into()),
        }));
        assert!(seen.contains(&Settled::NotRun {
            node: 'b',
            why: "not passed".into(),
            cancelled: false,
        }));
        assert!(seen.contains(&Settled::Ran {
            node: 'c',
            result: Ok(true),
        }));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_panic_with_a_formatted_message_keeps_it() {
        let seen = settle_all(&[('a', &[])], &Cancel::new(), &|_| {
            panic!("job {} broke", 7);
        });
        assert_eq!(
            seen,
            vec![Settled::Ran {
                node: 'a',
                result: Err("it panicked: job 7 broke".into()),
            }]
        );
    }

    #[test]
    fn cancelling_settles_what_waits_as_cancelled() {
        let cancel = Cancel::new();
        let seen = settle_all(&[('a', &[]), ('b', &['a'])], &cancel, &|_| {
            cancel.cancel();
            true
        });
        assert_eq!(
            seen,
            vec![
                Settled::Ran {
                    node: 'a',
                    result: Ok(true),
                },
                Settled::NotRun {
                    node: 'b',
                    why: CANCELLED.into(),
                    cancelled: true,
                },
            ]
        );
    }
}
