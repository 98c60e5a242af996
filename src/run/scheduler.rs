//! Runs the plan's DAG: up to `parallel` nodes at once, each as soon as what it depends
//! on has passed. A node whose dependency did not pass is recorded without running; a
//! node whose thread panics or cannot start is an `error`, and the run goes on. A job
//! that ends unpassed with `retries` left waits to run again (see [`retry_reason`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, mpsc};

use super::dag::Dag;
use super::job::{JobEnd, JobRan, Placed, RunShared, keep_attempt, record_unrun, run_job};
use super::prepare::build_input;
use super::recorder::Recorder;
use crate::cancel::Cancel;
use crate::ids::Id;
use crate::nix::StorePath;
use crate::plan::Plan;
use crate::pool::{Placement, Pool, runs_on_pool};
use crate::state::{Attempt, EventKind, JobStatus, Retried};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Prepare(usize),
    Job(usize),
}

/// Where a node goes when it starts, as the pool said then.
enum Start {
    /// On this machine: input builds, `host` jobs.
    Here,
    /// On a pool host, holding one of its slots.
    On(Id),
    /// Nowhere: no host can run the job (each one, with why).
    Nowhere(crate::pool::NoHost),
}

enum Finished {
    Prepare(usize, Result<Vec<StorePath>, String>),
    Job(usize, JobRan),
    /// A job no host could run, recorded as such.
    Unplaced(usize, std::io::Result<()>),
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

/// What a settled node means for the rest of the DAG.
#[derive(Debug, PartialEq)]
enum Over {
    Passed,
    /// Its dependents cannot run, for this reason.
    NotPassed(String),
    /// It goes back to waiting: its host failed before (or, with retries, while) it ran.
    Again,
}

impl From<Result<(), String>> for Over {
    fn from(result: Result<(), String>) -> Over {
        match result {
            Ok(()) => Over::Passed,
            Err(why) => Over::NotPassed(why),
        }
    }
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

/// Runs the plan: input builds and `host` jobs here, every other job on a host of `pool`
/// with a free slot that has all of its labels.
pub fn execute(plan: &Plan, run: &RunShared, parallel: usize, pool: Pool) -> Outcome {
    let recorder = run.recorder;
    let inputs: Mutex<BTreeMap<Id, Vec<StorePath>>> = Mutex::new(BTreeMap::new());
    let pool = RefCell::new(pool);
    // Earlier attempts of jobs run again, by job.
    let attempts: RefCell<BTreeMap<usize, Vec<Attempt>>> = RefCell::default();
    // The host each running job holds a slot of.
    let placed: RefCell<BTreeMap<usize, Id>> = RefCell::default();
    let mut outcome = Outcome::default();
    let admit = |node: Node| match node {
        Node::Prepare(_) => Some(Start::Here),
        Node::Job(i) if !runs_on_pool(&plan.jobs[i].job) => Some(Start::Here),
        Node::Job(i) => match pool.borrow_mut().place(&plan.jobs[i].job) {
            Placement::On(host) => {
                placed.borrow_mut().insert(i, host.clone());
                Some(Start::On(host))
            }
            Placement::Wait => None,
            Placement::Never(why) => Some(Start::Nowhere(why)),
        },
    };
    let work = |node: Node, start: Start, earlier: Vec<Attempt>| match (node, start) {
        (Node::Prepare(i), _) => Finished::Prepare(i, build_input(&plan.prepare[i], run)),
        (Node::Job(i), Start::Nowhere(why)) => {
            let message = crate::hint::with_hint(why.to_string());
            let status = JobStatus::Error;
            Finished::Unplaced(
                i,
                record_unrun(recorder, &plan.jobs[i], status, message, earlier),
            )
        }
        (Node::Job(i), start) => {
            let inputs = inputs.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let on = match start {
                Start::On(host) => Some(host),
                _ => None,
            };
            let retries_left = earlier.len() < plan.jobs[i].job.retries as usize;
            let placed = Placed {
                on,
                earlier,
                retries_left,
            };
            Finished::Job(i, run_job(&plan.jobs[i], &inputs, run, placed))
        }
    };
    let settle = |settled: Settled<Node, Finished>| -> Over {
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
                prepare_over(plan, i, built.map(drop), &mut outcome).into()
            }
            Settled::Ran {
                node: Node::Prepare(i),
                result: Err(why),
            } => prepare_over(plan, i, Err(why), &mut outcome).into(),
            Settled::Ran {
                result: Ok(Finished::Unplaced(i, recorded)),
                ..
            } => {
                if let Err(e) = recorded {
                    unrecorded(plan, i, e, &mut outcome);
                }
                job_over(plan, i, JobStatus::Error, &mut outcome).into()
            }
            Settled::Ran {
                result: Ok(Finished::Job(i, JobRan { end, teardown })),
                ..
            } => {
                // The job's thread ended after its guest's teardown: its slot is free.
                let mut pool = pool.borrow_mut();
                if let Some(host) = placed.borrow_mut().remove(&i) {
                    pool.release(&host);
                }
                let end = match end {
                    Ok(end) => end,
                    Err(e) => {
                        unrecorded(plan, i, e, &mut outcome);
                        JobEnd::Recorded(JobStatus::Error)
                    }
                };
                teardown_over(&end, teardown, &mut outcome);
                match end {
                    JobEnd::Recorded(status) => job_over(plan, i, status, &mut outcome).into(),
                    JobEnd::HostDown { host, why } => {
                        host_down(&mut pool, recorder, &host, why);
                        Over::Again
                    }
                    JobEnd::Retry(attempt) => {
                        again(plan, i, attempt, recorder, &attempts, &mut outcome)
                    }
                    JobEnd::HostLost { host, attempt } => {
                        let why = attempt.message.clone().unwrap_or_default();
                        host_down(&mut pool, recorder, &host, why);
                        match attempt.retried {
                            Some(_) => again(plan, i, attempt, recorder, &attempts, &mut outcome),
                            None => job_over(plan, i, attempt.status, &mut outcome).into(),
                        }
                    }
                }
            }
            Settled::Ran {
                node: Node::Job(i),
                result: Err(why),
            } => {
                if let Some(host) = placed.borrow_mut().remove(&i) {
                    pool.borrow_mut().release(&host);
                }
                let message = format!("pikaci could not run it: {why}");
                let earlier = attempts.borrow_mut().remove(&i).unwrap_or_default();
                let status = JobStatus::Error;
                record(plan, i, status, message, earlier, recorder, &mut outcome);
                job_over(plan, i, JobStatus::Error, &mut outcome).into()
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
                // A job cancelled between its attempts keeps the earlier ones.
                let earlier = attempts.borrow_mut().remove(&i).unwrap_or_default();
                record(plan, i, status, message, earlier, recorder, &mut outcome);
                Over::NotPassed(why)
            }
            Settled::NotRun {
                node: Node::Prepare(_),
                why,
                ..
            } => Over::NotPassed(why),
        }
    };
    let earlier = |node: Node| match node {
        Node::Job(i) => attempts.borrow().get(&i).cloned().unwrap_or_default(),
        Node::Prepare(_) => Vec::new(),
    };
    schedule(
        Dag::new(dependencies(plan)),
        parallel,
        run.cancel,
        Hooks {
            admit: |node| admit(node).map(|start| (start, earlier(node))),
            work: &|node, (start, earlier)| work(node, start, earlier),
            settle,
        },
    );
    outcome
}

/// Why an attempt that ended with `status` (with its host lost under it, or not) is
/// run again when the job has `retries` left: every end but passing, being cancelled
/// and not running at all.
pub(super) fn retry_reason(status: JobStatus, host_lost: bool) -> Option<Retried> {
    match status {
        JobStatus::Error if host_lost => Some(Retried::HostLost),
        JobStatus::Failed => Some(Retried::Failed),
        JobStatus::TimedOut => Some(Retried::TimedOut),
        JobStatus::Error => Some(Retried::Error),
        JobStatus::Passed
        | JobStatus::Flaky
        | JobStatus::Cached
        | JobStatus::Cancelled
        | JobStatus::Skipped
        | JobStatus::Pending
        | JobStatus::Running => None,
    }
}

/// Keeps the files of job `i`'s attempt that just ended and sends the job back to wait
/// for a slot; a job whose files cannot be moved aside ends as that attempt did.
fn again(
    plan: &Plan,
    i: usize,
    attempt: Attempt,
    recorder: &Recorder,
    attempts: &RefCell<BTreeMap<usize, Vec<Attempt>>>,
    outcome: &mut Outcome,
) -> Over {
    let dir = recorder.run.job(&plan.jobs[i].job.id);
    match keep_attempt(&dir, attempt.attempt) {
        Ok(()) => {
            attempts.borrow_mut().entry(i).or_default().push(attempt);
            // run.json mirrored the attempt's end; the job is waiting again. Best effort:
            // the job's next record says so too.
            let id = plan.jobs[i].job.id.to_string();
            let _ = recorder.update(|run| {
                run.jobs.insert(id, JobStatus::Pending);
            });
            Over::Again
        }
        Err(e) => {
            outcome.infra_errors.push(format!(
                "cannot keep attempt {} of job `{}` in {}: {e}",
                attempt.attempt,
                plan.jobs[i].job.id,
                dir.join("attempts").display()
            ));
            // Its end was announced as retried: the reports still need the job's end.
            recorder.emit(EventKind::JobFinished {
                job: plan.jobs[i].job.id.to_string(),
                status: attempt.status,
                exit_code: attempt.exit_code,
                duration_ms: attempt.duration_ms,
                message: attempt.message.clone(),
                host: attempt.host.clone(),
            });
            job_over(plan, i, attempt.status, outcome).into()
        }
    }
}

/// A teardown that failed (its warning is printed already) is an infrastructure error
/// of the run, for what it may leave on the host; after its host failed, the host's
/// failure is what the run reports.
fn teardown_over(
    end: &JobEnd,
    teardown: Result<(), Box<super::job::TeardownFailed>>,
    outcome: &mut Outcome,
) {
    let host_failed = matches!(end, JobEnd::HostDown { .. } | JobEnd::HostLost { .. });
    if let Err(failed) = teardown
        && !host_failed
    {
        outcome.infra_errors.push(crate::error::chain(&failed));
    }
}

fn host_down(pool: &mut Pool, recorder: &Recorder, host: &Id, why: String) {
    if pool.is_up(host) {
        pool.mark_down(host, why.clone());
        recorder.emit(EventKind::HostDown {
            host: host.to_string(),
            message: why,
        });
    }
}

fn unrecorded(plan: &Plan, i: usize, e: std::io::Error, outcome: &mut Outcome) {
    let id = &plan.jobs[i].job.id;
    outcome
        .infra_errors
        .push(format!("cannot record job `{id}`: {e}"));
    outcome.unrecorded.insert(id.clone(), e.to_string());
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
    if status.passed() {
        Ok(())
    } else {
        Err(format!("needed job `{id}` {status}"))
    }
}

/// Writes the final record of a job that did not run to its end: its status, why, and
/// its earlier attempts.
fn record(
    plan: &Plan,
    i: usize,
    status: JobStatus,
    message: String,
    earlier: Vec<Attempt>,
    recorder: &Recorder,
    outcome: &mut Outcome,
) {
    let job = &plan.jobs[i];
    if let Err(e) = record_unrun(recorder, job, status, message, earlier) {
        outcome
            .infra_errors
            .push(format!("cannot record job `{}`: {e}", job.job.id));
        outcome.unrecorded.insert(job.job.id.clone(), e.to_string());
    }
    outcome.statuses.insert(job.job.id.clone(), status);
}

/// What [`schedule`] asks of its caller: whether a ready node may start now, and with
/// what (`None`: not yet); the work of a node; and what a settled node means.
struct Hooks<A, W, S> {
    admit: A,
    work: W,
    settle: S,
}

/// Runs `work` for each node of `dag` in a thread of its own, at most `parallel` at once
/// and each once `admit` lets it, and hands every node to `settle` exactly once per run
/// of it; `settle`'s answer for a node that ran decides whether its dependents may run,
/// or whether it waits to run again. Returns when every node is settled: a panicking
/// `work` is that node's `Err`, so no node is waited for in vain.
fn schedule<N, P, T, A, S>(
    mut dag: Dag<N>,
    parallel: usize,
    cancel: &Cancel,
    hooks: Hooks<A, &(dyn Fn(N, P) -> T + Sync), S>,
) where
    N: Ord + Copy + Send,
    P: Send,
    T: Send,
    A: FnMut(N) -> Option<P>,
    S: FnMut(Settled<N, T>) -> Over,
{
    let Hooks {
        mut admit,
        work,
        mut settle,
    } = hooks;
    let (tx, rx) = mpsc::channel::<(N, Result<T, String>)>();
    let over = |dag: &mut Dag<N>, node: N, settled: Over| match settled {
        Over::Passed => dag.complete(node, Ok(())),
        Over::NotPassed(why) => dag.complete(node, Err(why)),
        Over::Again => dag.again(node),
    };
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
            for node in dag.ready() {
                if dag.running() >= parallel.max(1) {
                    break;
                }
                // A node whose hosts are all busy waits; the next may go elsewhere.
                let Some(start) = admit(node) else {
                    continue;
                };
                dag.start(node);
                let tx = tx.clone();
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| work(node, start)))
                        .map_err(|panic| format!("it panicked: {}", panic_message(&*panic)));
                    let _ = tx.send((node, result));
                });
                if let Err(e) = spawned {
                    let result = Err(format!("cannot start a thread for it: {e}"));
                    let settled = settle(Settled::Ran { node, result });
                    over(&mut dag, node, settled);
                }
            }
            if dag.running() == 0 {
                // No slot is held when nothing runs, so nothing ready was left waiting.
                debug_assert!(dag.is_over());
                break;
            }
            // Each started thread sends once, whether `work` returned or panicked.
            let Ok((node, result)) = rx.recv() else {
                break;
            };
            let settled = settle(Settled::Ran { node, result });
            over(&mut dag, node, settled);
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
        let hooks = Hooks {
            admit: |_| Some(()),
            work: &(|node, ()| work(node)) as &(dyn Fn(char, ()) -> bool + Sync),
            settle: |settled: Settled<char, bool>| {
                let over = match &settled {
                    Settled::Ran {
                        result: Ok(true), ..
                    } => Over::Passed,
                    _ => Over::NotPassed("not passed".to_string()),
                };
                seen.push(settled);
                over
            },
        };
        schedule(Dag::new(deps), 2, cancel, hooks);
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

    /// A node settled as `Again` (its host failed before it ran) runs once more, and its
    /// dependents wait for that run; a node not admitted waits while others start.
    #[test]
    fn a_node_sent_again_runs_again_and_a_node_not_admitted_waits_its_turn() {
        let deps: BTreeMap<char, Vec<char>> =
            BTreeMap::from([('a', vec![]), ('b', vec!['a']), ('c', vec![])]);
        let runs = Mutex::new(Vec::new());
        let mut settled = Vec::new();
        let mut held_back = 0;
        let a_settled = std::cell::Cell::new(false);
        let hooks = Hooks {
            // `c` is not admitted until `a` has been settled once.
            admit: |node| {
                if node == 'c' && !a_settled.get() {
                    held_back += 1;
                    return None;
                }
                Some(())
            },
            work: &(|node, ()| {
                let mut runs = runs.lock().unwrap();
                runs.push(node);
                runs.iter().filter(|n| **n == node).count()
            }) as &(dyn Fn(char, ()) -> usize + Sync),
            settle: |s: Settled<char, usize>| match s {
                Settled::Ran {
                    node: 'a',
                    result: Ok(1),
                } => {
                    a_settled.set(true);
                    Over::Again
                }
                Settled::Ran { node, .. } => {
                    settled.push(node);
                    Over::Passed
                }
                Settled::NotRun { node, .. } => panic!("{node} not run"),
            },
        };
        schedule(Dag::new(deps), 2, &Cancel::new(), hooks);
        let runs = runs.into_inner().unwrap();
        assert_eq!(runs.iter().filter(|n| **n == 'a').count(), 2, "{runs:?}");
        assert!(held_back > 0);
        let a_again = runs.iter().rposition(|n| *n == 'a').unwrap();
        let b = runs.iter().position(|n| *n == 'b').unwrap();
        assert!(b > a_again, "b waits for a's second run: {runs:?}");
        settled.sort();
        assert_eq!(settled, ['a', 'b', 'c']);
    }

    /// Every end but passing, being cancelled and not running is retried, each named
    /// for why; an error with the host lost under it is the host's.
    #[test]
    fn which_ends_are_retried() {
        let all = [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Passed,
            JobStatus::Flaky,
            JobStatus::Failed,
            JobStatus::TimedOut,
            JobStatus::Skipped,
            JobStatus::Cancelled,
            JobStatus::Error,
        ];
        let table: Vec<String> = all
            .iter()
            .flat_map(|status| [false, true].map(|lost| (*status, lost)))
            .map(|(status, lost)| {
                let why = retry_reason(status, lost).map_or("-".into(), |r| r.to_string());
                format!("{:<9} host lost: {lost:<5} -> {why}", status.to_string())
            })
            .collect();
        insta::assert_snapshot!(table.join("\n"), @"
        pending   host lost: false -> -
        pending   host lost: true  -> -
        running   host lost: false -> -
        running   host lost: true  -> -
        passed    host lost: false -> -
        passed    host lost: true  -> -
        flaky     host lost: false -> -
        flaky     host lost: true  -> -
        failed    host lost: false -> failed
        failed    host lost: true  -> failed
        timed_out host lost: false -> timed_out
        timed_out host lost: true  -> timed_out
        skipped   host lost: false -> -
        skipped   host lost: true  -> -
        cancelled host lost: false -> -
        cancelled host lost: true  -> -
        error     host lost: false -> error
        error     host lost: true  -> host_lost
        ");
    }

    /// A failed teardown fails the run (what it left is a leak), unless the job's host
    /// had failed already: that failure is what the run reports.
    #[test]
    fn a_failed_teardown_is_an_infrastructure_error_unless_its_host_failed() {
        let failed = || {
            Err(Box::new(super::super::job::TeardownFailed {
                job: "quick".into(),
                host: Some("b".into()),
                source: crate::backend::BackendError::NoHost("b".into()),
            }))
        };
        let mut outcome = Outcome::default();
        teardown_over(&JobEnd::Recorded(JobStatus::Passed), Ok(()), &mut outcome);
        assert!(outcome.infra_errors.is_empty());
        teardown_over(&JobEnd::Recorded(JobStatus::Passed), failed(), &mut outcome);
        assert_eq!(
            outcome.infra_errors,
            [
                "the guest of job `quick` was not torn down on host `b`: it may be left there \
              (`pikaci gc` removes what runs that are over left): no host `b` in this run"
            ]
        );
        let down = JobEnd::HostDown {
            host: Id::new("b").unwrap(),
            why: "gone".into(),
        };
        teardown_over(&down, failed(), &mut outcome);
        assert_eq!(outcome.infra_errors.len(), 1);
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
