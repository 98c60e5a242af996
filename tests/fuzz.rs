//! Property-based fuzzing of what pikaci parses or prints: the config parser, the guest
//! request parser, the Incus image JSON reader and the Nix printer. Random and
//! structure-aware inputs; none may panic, and printed Nix must always parse.
//!
//! The suite runs `PIKACI_FUZZ_CASES` cases per target (default 500); a long run:
//! `PIKACI_FUZZ_CASES=100000 cargo test --release --test integration fuzz::`.
//! The same four targets run coverage-guided under AFL++ in `fuzz/` (`scripts/fuzz.sh`).

use pikaci::nix::Expr;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::fuzz_oracles as oracles;

fn runner() -> TestRunner {
    let cases = std::env::var("PIKACI_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `property` (which panics when it does not hold) on the runner's cases.
fn holds_for_all<S: Strategy>(strategy: &S, property: impl Fn(S::Value)) {
    runner()
        .run(strategy, |value| {
            property(value);
            Ok(())
        })
        .unwrap();
}

/// Text made of the pieces a config is made of, in any order.
fn config_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "[defaults]\n",
        "[jobs.a]\n",
        "[jobs.b]\n",
        "[targets.t]\n",
        "[backends.incus]\n",
        "[backends.microvm]\n",
        "[inputs]\n",
        "[ssh]\n",
        "command = \"true\"\n",
        "backend = \"incus\"\n",
        "backend = \"nope\"\n",
        "needs = [\"a\"]\n",
        "needs = [\"b\"]\n",
        "jobs = [\"a\", \"b\"]\n",
        "timeout = \"5s\"\n",
        "timeout = \"-1s\"\n",
        "memory = \"4GiB\"\n",
        "memory = \"99999999999TiB\"\n",
        "vcpu = 0\n",
        "limits = { cpu = 2 }\n",
        "secrets = [\"T\"]\n",
        "env = { T = \"x\" }\n",
        "host = \"ssh://u@h:99999\"\n",
        "host = \"local\"\n",
        "paths = [\"src/**\"]\n",
        "inputs = [\"x\"]\n",
        "x = \".#x\"\n",
        "x = \"../x\"\n",
        "\"\u{0}\" = 1\n",
        "=\n",
        "[[jobs]]\n",
        "a.b.c = 1\n",
        "'''\n",
        "\"\n",
    ]);
    prop_oneof![
        proptest::collection::vec(piece, 0..20).prop_map(|p| p.concat()),
        "\\PC{0,200}",
    ]
}

#[test]
fn config_parser_never_panics() {
    holds_for_all(&config_text(), |text| oracles::config(&text));
}

/// A valid request with one field replaced by an arbitrary JSON value, or random bytes.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let good = serde_json::json!({
        "schema_version": 1, "job_id": "j", "command": "true", "timeout_secs": 5,
        "run_as_root": false, "workdir": "/workspace", "env": {}, "path": [],
        "writable_workspace": false, "secrets": []
    });
    let field = prop::sample::select(vec![
        "schema_version",
        "job_id",
        "command",
        "timeout_secs",
        "run_as_root",
        "workdir",
        "env",
        "path",
        "writable_workspace",
        "secrets",
        "extra",
    ]);
    prop_oneof![
        (field, json_value(), any::<bool>()).prop_map(move |(field, value, remove)| {
            let mut request = good.clone();
            if remove {
                request.as_object_mut().unwrap().remove(field);
            } else {
                request[field] = value;
            }
            serde_json::to_vec(&request).unwrap()
        }),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_.]{0,12}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn request_parser_never_panics() {
    holds_for_all(&request_bytes(), |bytes| oracles::request(&bytes));
}

/// `incus image list --format json`-shaped values, with missing and mistyped fields.
fn image_list_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alias = prop::sample::select(vec!["pikaci/dev", "pikaci/dev-old", "pikaci", ""]);
    let record = (
        prop::option::of("[0-9a-f./]{0,64}"),
        proptest::collection::vec(alias, 0..3),
        json_value(),
    )
        .prop_map(|(fingerprint, aliases, noise)| {
            let mut record = serde_json::json!({
                "aliases": aliases.iter().map(|a| serde_json::json!({"name": a})).collect::<Vec<_>>(),
                "extra": noise,
            });
            if let Some(f) = fingerprint {
                record["fingerprint"] = f.into();
            }
            record
        });
    prop_oneof![
        proptest::collection::vec(record, 0..5).prop_map(|r| serde_json::to_vec(&r).unwrap()),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..100),
    ]
}

#[test]
fn incus_image_json_never_panics() {
    holds_for_all(&image_list_bytes(), |bytes| {
        oracles::incus_image_list(&bytes)
    });
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(Expr::Null),
        any::<bool>().prop_map(Expr::Bool),
        any::<i64>().prop_map(Expr::Int),
        "[^\u{0}]{0,12}".prop_map(Expr::Str),
        prop::sample::select(vec!["builtins", "x", "pkgs"]).prop_map(Expr::Ident),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        let name = prop_oneof![
            "[^\u{0}]{0,8}",
            Just("if".to_string()),
            Just("a-b".to_string())
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Expr::List),
            // Names are unique, as in every set pikaci builds (Nix rejects duplicates).
            proptest::collection::btree_map(name.clone(), inner.clone(), 0..5)
                .prop_map(|m| Expr::Attrs(m.into_iter().collect())),
            (inner.clone(), proptest::collection::vec(name, 1..3))
                .prop_map(|(base, path)| Expr::Select(Box::new(base), path)),
            (inner.clone(), inner.clone()).prop_map(|(f, x)| f.apply(x)),
            (inner, any::<bool>()).prop_map(|(body, ellipsis)| Expr::Lambda {
                args: vec!["self", "pikaci"],
                ellipsis,
                body: Box::new(body),
            }),
        ]
    })
}

#[test]
fn printed_nix_always_parses() {
    holds_for_all(&expr(), |expr| oracles::printed_nix(&expr));
}

/// The real parser agrees: a batch of random expressions, printed as one list, parses
/// with `nix-instantiate --parse`.
#[test]
fn printed_nix_parses_with_nix() {
    let mut runner = runner();
    let batch = proptest::collection::vec(expr(), 100);
    let tree = batch.new_tree(&mut runner).unwrap();
    // Nix checks free variables at parse time: bind the identifiers the generator uses.
    let text = format!("x: pkgs: {}", Expr::List(tree.current()).to_nix());
    crate::harness::assert_nix_parses(&text);
}
