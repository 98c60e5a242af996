//! Property: whatever the workspace holds and however it changes from one snapshot to
//! the next, the host's tree after each sync is exactly the local snapshot (`nix hash
//! path` agrees), over SSH and to this machine's transport.
//!
//! Trees are drawn from small pools of names and contents so that what breaks syncs is
//! common: the same content executable and not, empty files, a name that is a file in
//! one snapshot and a directory in the next, symlinks, deep and unicode names. Some
//! steps lease the previous tree so the next sync is a cold one into a host that
//! already has objects. Non-UTF-8 names are left out (the NAR encoder of the snapshot
//! does not take them yet).
//!
//! `PIKACI_SYNC_CASES` sets the number of cases per transport (default 6: each is up to four
//! syncs and `nix hash path` runs, about a second apiece on a loaded machine).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pikaci::cancel::Cancel;
use pikaci::snapshot;
use pikaci::sync::{lease, sync};
use pikaci::transport::{Local, Transport};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::sync::{host_hash, soon, ssh};

#[derive(Clone, Debug)]
enum Node {
    File { content: String, executable: bool },
    Symlink(String),
    Dir(BTreeMap<String, Node>),
}

type Tree = BTreeMap<String, Node>;

/// One snapshot of the sequence, and whether the host's previous tree is leased while
/// it is synced (so it cannot be patched).
type Step = (Tree, bool);

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a".to_string(),
        "b".to_string(),
        "c d".to_string(),
        "ünï 'q'".to_string(),
        "日本語".to_string(),
        ".hidden".to_string(),
        "-x".to_string(),
        "é".repeat(120),
    ])
}

fn leaf() -> impl Strategy<Value = Node> {
    let content = prop::sample::select(vec!["", "same\n", "other\n"]);
    let target = prop::sample::select(vec!["a", "../b", "missing", "日本語/a", "/abs"]);
    prop_oneof![
        6 => (content, any::<bool>()).prop_map(|(content, executable)| Node::File {
            content: content.to_string(),
            executable,
        }),
        2 => target.prop_map(|t| Node::Symlink(t.to_string())),
        1 => (2usize..30).prop_map(deep),
    ]
}

/// A chain of `depth` directories `d/d/…` ending in an empty file.
fn deep(depth: usize) -> Node {
    let mut node = Node::File {
        content: String::new(),
        executable: false,
    };
    for _ in 0..depth {
        node = Node::Dir(BTreeMap::from([("d".to_string(), node)]));
    }
    node
}

fn tree() -> impl Strategy<Value = Tree> {
    let node = leaf().prop_recursive(4, 32, 4, |inner| {
        prop::collection::btree_map(name(), inner, 0..4).prop_map(Node::Dir)
    });
    prop::collection::btree_map(name(), node, 0..6)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((tree(), prop::bool::weighted(0.25)), 1..5)
}

fn write_tree(dir: &Path, tree: &Tree) {
    for (name, node) in tree {
        let path = dir.join(name);
        match node {
            Node::File {
                content,
                executable,
            } => {
                std::fs::write(&path, content).unwrap();
                let mode = if *executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            Node::Dir(children) => {
                std::fs::create_dir(&path).unwrap();
                write_tree(&path, children);
            }
        }
    }
}

/// Syncs each step's snapshot to a fresh host dir in turn and compares the trees.
fn check_steps(transport: &dyn Transport, steps: &[Step]) {
    let cache = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().join("work");
    let cancel = Cancel::new();
    let mut previous: Option<String> = None;
    for (i, (tree, lease_previous)) in steps.iter().enumerate() {
        // A fresh workspace each step: no stat index can stand in for a changed file.
        let ws = tempfile::tempdir().unwrap();
        write_tree(ws.path(), tree);
        let snap = snapshot::take(ws.path(), cache.path(), &[]).unwrap();
        let _lease = previous
            .as_ref()
            .filter(|_| *lease_previous)
            .map(|hex| lease(transport, &host_dir, hex, soon(), &cancel).unwrap());
        let stats = sync(
            transport,
            cache.path(),
            &snap.id,
            &host_dir,
            soon(),
            &cancel,
        )
        .unwrap_or_else(|e| panic!("step {i}: sync failed: {}", pikaci::error::chain(&e)));
        if let Some(hash) = host_hash(transport, &stats.dir) {
            assert_eq!(
                hash,
                snapshot::nar_hash(&snap.dir).unwrap(),
                "step {i} ({stats:?}): the host's tree differs from the snapshot"
            );
        }
        previous = Some(snap.id.clone());
    }
}

fn holds_for_all(property: impl Fn(Vec<Step>)) {
    let cases = std::env::var("PIKACI_SYNC_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Each case is a few syncs: shrinking stays short enough to wait for.
        max_shrink_iters: 64,
        ..Config::default()
    });
    runner
        .run(&steps(), |steps| {
            property(steps);
            Ok(())
        })
        .unwrap();
}

#[test]
fn synced_trees_match_their_snapshots_locally() {
    holds_for_all(|steps| check_steps(&Local, &steps));
}

#[test]
fn synced_trees_match_their_snapshots_over_ssh() {
    let Some(ssh) = ssh() else { return };
    holds_for_all(|steps| check_steps(&ssh, &steps));
}
