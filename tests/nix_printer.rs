//! The Nix printer against the real evaluator: any string and any attribute name printed
//! by pikaci evaluates back to itself.

use std::path::Path;

use pikaci::nix::Expr;
use proptest::prelude::*;

/// Evaluates `expr` to JSON with nix-instantiate, or None (a skip) without Nix outside CI.
fn eval_json(expr: &Expr) -> Option<serde_json::Value> {
    crate::harness::nix_eval_json(&expr.to_nix(), Path::new("."))
}

fn nix_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Nix strings cannot hold NUL; everything else can.
        "[^\u{0}]{0,24}",
        // Dense in what needs escaping.
        proptest::collection::vec(
            prop::sample::select(vec![
                "$", "{", "}", "\\", "\"", "\n", "\r", "\t", "'", "''", "${", "$${", "a"
            ]),
            0..12
        )
        .prop_map(|parts| parts.concat()),
    ]
}

#[test]
fn strings_round_trip_through_nix() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(8));
    runner
        .run(&proptest::collection::vec(nix_text(), 1..60), |texts| {
            let expr = Expr::List(texts.iter().cloned().map(Expr::Str).collect());
            let Some(json) = eval_json(&expr) else {
                return Ok(());
            };
            let back: Vec<String> = serde_json::from_value(json).unwrap();
            prop_assert_eq!(back, texts);
            Ok(())
        })
        .unwrap();
}

#[test]
fn attribute_names_round_trip_through_nix() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(8));
    let names = proptest::collection::btree_set(
        prop_oneof![
            nix_text(),
            prop::sample::select(vec!["if", "with", "rec", "a-b", "_x", "x'", "1a", ""])
                .prop_map(String::from)
        ],
        1..30,
    );
    runner
        .run(&names, |names| {
            let attrs = Expr::attrs(names.iter().map(|n| (n.clone(), Expr::str(n.clone()))));
            let expr = Expr::Ident("builtins").select(&["attrNames"]).apply(attrs);
            let Some(json) = eval_json(&expr) else {
                return Ok(());
            };
            let back: Vec<String> = serde_json::from_value(json).unwrap();
            let mut expected: Vec<String> = names.into_iter().collect();
            expected.sort();
            let mut back_sorted = back;
            back_sorted.sort();
            prop_assert_eq!(back_sorted, expected);
            Ok(())
        })
        .unwrap();
}

#[test]
fn generated_guest_flake_parses() {
    let settings = pikaci::config::MicrovmSettings::default();
    let profile = pikaci::nix::GuestProfile::from_settings(
        &settings,
        "github:example/pikaci".into(),
        &pikaci::nix::HostFacts {
            uid: 1000,
            gid: 100,
            system: "x86_64-linux".into(),
        },
    );
    crate::harness::assert_nix_parses(&profile.flake_nix());
}
