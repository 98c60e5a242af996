//! `pikaci man`: a page per command with its exit codes, and pikaci.toml(5) built from
//! docs/configuration.md.

use crate::harness::Repo;

/// The commands `pikaci --help` lists (without `help`).
fn commands(repo: &Repo, args: &[&str]) -> Vec<String> {
    let help = repo.pikaci(args);
    help.expect(0);
    let text = help.stdout();
    let listing = text
        .split("Commands:\n")
        .nth(1)
        .unwrap_or("")
        .split("\n\n")
        .next()
        .unwrap_or("");
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_has_a_page_with_its_exit_codes() {
    let repo = Repo::new("[jobs.x]\ncommand = \"true\"\n");
    let dir = tempfile::tempdir().unwrap();
    let out = repo.pikaci(&["man", "--dir", &dir.path().display().to_string()]);
    out.expect(0);
    let mut pages = vec!["pikaci".to_string()];
    for command in commands(&repo, &["--help"]) {
        pages.push(format!("pikaci-{command}"));
        for sub in commands(&repo, &[&command, "--help"]) {
            pages.push(format!("pikaci-{command}-{sub}"));
        }
    }
    assert!(pages.len() > 15, "{pages:?}");
    for page in &pages {
        let path = dir.path().join("man1").join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH \"EXIT STATUS\""), "{page}");
        assert!(
            text.contains("pikaci.toml(5)"),
            "{page}: refers to the reference"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("man1/pikaci-run.1")).unwrap();
    assert!(run.contains("130") && run.contains("\\-\\-junit"), "{run}");
    // One page at a time, by command name.
    let page = repo.pikaci(&["man", "image", "build"]);
    page.expect(0);
    assert!(
        page.stdout().contains("pikaci\\-image\\-build"),
        "{}",
        page.stdout()
    );
    let unknown = repo.pikaci(&["man", "nope"]);
    unknown.expect(2);
    assert!(
        unknown.stderr().contains("pikaci-run"),
        "{}",
        unknown.stderr()
    );
}

#[test]
fn the_configuration_page_has_every_key_of_the_docs() {
    let repo = Repo::new("[jobs.x]\ncommand = \"true\"\n");
    let out = repo.pikaci(&["man", "pikaci.toml"]);
    out.expect(0);
    let page = out.stdout();
    assert!(
        page.starts_with(".ie") || page.contains(".TH PIKACI.TOML 5"),
        "{page}"
    );
    let docs = include_str!("../docs/configuration.md");
    let keys: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert!(keys.len() > 25, "{keys:?}");
    for key in keys {
        // roff escapes `-` as `\-`.
        assert!(page.contains(&key.replace('-', "\\-")), "{key} missing");
    }
    // Rendered by a real formatter when this machine has one.
    if let Ok(out) = std::process::Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
    }
}
