//! The DAG's bookkeeping without threads or records: which nodes may start, which can
//! never run (and why), and when everything is over.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Passed,
    /// Why the nodes that depend on it cannot run.
    NotPassed(String),
}

#[derive(Debug)]
pub struct Dag<N> {
    deps: BTreeMap<N, Vec<N>>,
    states: BTreeMap<N, State>,
}

impl<N: Ord + Copy> Dag<N> {
    /// `deps`: every node, with the nodes it waits for (each of them also a key).
    pub fn new(deps: BTreeMap<N, Vec<N>>) -> Dag<N> {
        let states = deps.keys().map(|n| (*n, State::Waiting)).collect();
        Dag { deps, states }
    }

    /// Settles every waiting node that can never run because something it waits for did
    /// not pass, transitively; each comes with the first reason it inherits.
    pub fn block(&mut self) -> Vec<(N, String)> {
        let mut blocked = Vec::new();
        loop {
            let next: Vec<(N, String)> = self
                .waiting()
                .filter_map(|node| {
                    self.deps[&node].iter().find_map(|d| match &self.states[d] {
                        State::NotPassed(why) => Some((node, why.clone())),
                        _ => None,
                    })
                })
                .collect();
            if next.is_empty() {
                return blocked;
            }
            for (node, why) in next {
                self.states.insert(node, State::NotPassed(why.clone()));
                blocked.push((node, why));
            }
        }
    }

    /// Settles every waiting node with `why` (the run was cancelled).
    pub fn block_all(&mut self, why: &str) -> Vec<N> {
        let waiting: Vec<N> = self.waiting().collect();
        for node in &waiting {
            self.states.insert(*node, State::NotPassed(why.to_string()));
        }
        waiting
    }

    /// Waiting nodes whose dependencies have all passed, in node order.
    pub fn ready(&self) -> Vec<N> {
        self.waiting()
            .filter(|node| {
                self.deps[node]
                    .iter()
                    .all(|d| self.states[d] == State::Passed)
            })
            .collect()
    }

    pub fn start(&mut self, node: N) {
        self.states.insert(node, State::Running);
    }

    /// A started node is over: `Ok` passed, `Err` says why its dependents cannot run.
    pub fn complete(&mut self, node: N, result: Result<(), String>) {
        let state = match result {
            Ok(()) => State::Passed,
            Err(why) => State::NotPassed(why),
        };
        self.states.insert(node, state);
    }

    /// A started node waits again (its host failed under it): it is ready once more.
    pub fn again(&mut self, node: N) {
        self.states.insert(node, State::Waiting);
    }

    pub fn running(&self) -> usize {
        self.states
            .values()
            .filter(|s| **s == State::Running)
            .count()
    }

    /// Nothing waits and nothing runs.
    pub fn is_over(&self) -> bool {
        self.states
            .values()
            .all(|s| matches!(s, State::Passed | State::NotPassed(_)))
    }

    fn waiting(&self) -> impl Iterator<Item = N> + '_ {
        self.states
            .iter()
            .filter(|(_, s)| **s == State::Waiting)
            .map(|(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a ← b ← c, and d on its own.
    fn chain() -> Dag<char> {
        Dag::new(BTreeMap::from([
            ('a', vec![]),
            ('b', vec!['a']),
            ('c', vec!['b']),
            ('d', vec![]),
        ]))
    }

    #[test]
    fn ready_nodes_are_those_whose_dependencies_passed() {
        let mut dag = chain();
        assert_eq!(dag.ready(), vec!['a', 'd']);
        dag.start('a');
        assert_eq!(dag.ready(), vec!['d']);
        assert_eq!(dag.running(), 1);
        dag.complete('a', Ok(()));
        assert_eq!(dag.ready(), vec!['b', 'd']);
        assert!(!dag.is_over());
    }

    #[test]
    fn a_failure_blocks_its_dependents_transitively_with_its_reason() {
        let mut dag = chain();
        dag.start('a');
        dag.complete('a', Err("a failed".into()));
        assert_eq!(
            dag.block(),
            vec![('b', "a failed".to_string()), ('c', "a failed".to_string())]
        );
        assert_eq!(dag.block(), vec![], "blocked once");
        assert_eq!(dag.ready(), vec!['d']);
        dag.start('d');
        dag.complete('d', Ok(()));
        assert!(dag.is_over());
    }

    #[test]
    fn a_node_started_again_is_ready_again() {
        let mut dag = chain();
        dag.start('a');
        dag.again('a');
        assert_eq!(dag.running(), 0);
        assert_eq!(dag.ready(), vec!['a', 'd']);
    }

    #[test]
    fn block_all_settles_only_what_waits() {
        let mut dag = chain();
        dag.start('a');
        assert_eq!(dag.block_all("cancelled"), vec!['b', 'c', 'd']);
        assert_eq!(dag.running(), 1);
        assert!(!dag.is_over());
        dag.complete('a', Ok(()));
        assert!(dag.is_over());
        assert!(dag.ready().is_empty());
    }

    #[test]
    fn a_node_waits_for_every_dependency_and_completes_a_diamond() {
        // a ← b, a ← c, and d waits for both.
        let mut dag = Dag::new(BTreeMap::from([
            ('a', vec![]),
            ('b', vec!['a']),
            ('c', vec!['a']),
            ('d', vec!['b', 'c']),
        ]));
        dag.start('a');
        dag.complete('a', Ok(()));
        assert_eq!(dag.ready(), vec!['b', 'c']);
        dag.start('b');
        dag.start('c');
        dag.complete('b', Ok(()));
        assert!(dag.ready().is_empty(), "d still waits for c");
        dag.complete('c', Ok(()));
        assert_eq!(dag.ready(), vec!['d']);
        assert!(dag.block().is_empty());
        dag.start('d');
        dag.complete('d', Ok(()));
        assert!(dag.is_over());
    }
}
