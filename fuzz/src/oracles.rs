//! What must hold for any input, one function per fuzz target; each panics when it does
//! not. Shared by the AFL targets (`fuzz/src/bin/`) and the proptest suite
//! (`tests/fuzz.rs`, which includes this file), so both check the same properties.

use pikaci::nix::Expr;

/// Any text gives a config or an error that names the file.
pub fn config(text: &str) {
    let path = std::path::Path::new("/repo/pikaci.toml");
    if let Err(e) = pikaci::config::parse(path, text) {
        assert!(e.to_string().starts_with("/repo/pikaci.toml"), "{e}");
    }
}

/// Any bytes give a request of version 1 or an error that says why.
pub fn request(data: &[u8]) {
    match pikaci::guest::parse_request(data) {
        Ok(request) => assert_eq!(request.schema_version, 1),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Only a list with exactly one record carrying the exact alias selects an image, and
/// what is selected is a fingerprint.
pub fn incus_image_list(data: &[u8]) {
    let Ok(fingerprint) = pikaci::incus::select_image(data, "pikaci/dev", "p") else {
        return;
    };
    assert!(!fingerprint.is_empty());
    assert!(
        fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fingerprint}"
    );
    // The reader skips the fields it does not use unchecked (bad UTF-8, numbers out of
    // range), and serde also reads a record written as the array of its fields: the
    // alias count can only be judged where strict JSON objects are read too.
    let text = String::from_utf8_lossy(data);
    let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else {
        return;
    };
    if list.iter().any(|r| !r.is_object()) {
        return;
    }
    let exact = list
        .iter()
        .filter(|r| {
            r["aliases"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["name"] == "pikaci/dev"))
        })
        .count();
    assert_eq!(exact, 1);
}

/// Every expression prints as Nix that parses (rnix; `nix-instantiate` in batches).
pub fn printed_nix(expr: &Expr) {
    let text = expr.to_nix();
    let errors = rnix::Root::parse(&text).errors().to_vec();
    assert!(errors.is_empty(), "{errors:?} in\n{text}");
}
