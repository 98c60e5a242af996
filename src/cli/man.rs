//! `pikaci man`: a page per command (section 1) with its exit codes, and the
//! configuration reference as `pikaci.toml(5)`, generated from docs/configuration.md.

use std::path::Path;

use clap::CommandFactory;
use roff::{Roff, bold, roman};

use super::args::{Cli, ManArgs};
use crate::error::Error;

/// The configuration reference, one source for docs/ and the man page.
const CONFIGURATION_MD: &str = include_str!("../../docs/configuration.md");

/// One man page: its file name (`pikaci-run.1`) and its roff text.
pub struct Page {
    pub file: String,
    pub roff: Vec<u8>,
}

impl Page {
    /// `pikaci-run.1` → `pikaci-run`, what `pikaci man` accepts.
    fn stem(&self) -> &str {
        self.file
            .rsplit_once('.')
            .map_or(&self.file, |(stem, _)| stem)
    }

    fn section(&self) -> &str {
        self.file
            .rsplit_once('.')
            .map_or("1", |(_, section)| section)
    }
}

pub fn man(args: ManArgs) -> Result<u8, Error> {
    let pages = pages().map_err(|e| Error::infra("rendering the man pages", e))?;
    if let Some(dir) = &args.dir {
        for page in &pages {
            let path = dir.join(format!("man{}", page.section())).join(&page.file);
            write_page(&path, &page.roff)
                .map_err(|e| Error::infra(&format!("writing {}", path.display()), e))?;
        }
        crate::outln!(
            "wrote {} man pages under {}; read one with `man -M {} pikaci-run`",
            pages.len(),
            dir.display(),
            dir.display()
        );
        return Ok(0);
    }
    let wanted = match args.page.join(" ") {
        words if words.is_empty() => "pikaci".to_string(),
        words => words,
    };
    let wanted = wanted.as_str();
    let page = find(&pages, wanted).ok_or_else(|| {
        let names: Vec<&str> = pages.iter().map(Page::stem).collect();
        Error::Usage(format!(
            "no man page `{wanted}`; the pages: {}",
            names.join(", ")
        ))
    })?;
    crate::console::out(&page.roff);
    Ok(0)
}

/// `run`, `pikaci-run`, `image build`, `image-build`, `pikaci.toml` all name a page.
fn find<'a>(pages: &'a [Page], wanted: &str) -> Option<&'a Page> {
    let wanted = wanted.trim().replace(' ', "-");
    let stem = if wanted == "pikaci" || wanted.starts_with("pikaci-") || wanted == "pikaci.toml" {
        wanted
    } else {
        format!("pikaci-{wanted}")
    };
    pages.iter().find(|p| p.stem() == stem)
}

fn write_page(path: &Path, roff: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dir_all(dir)?;
    }
    std::fs::write(path, roff)
}

/// Every page: `pikaci(1)`, one per command and nested command, `pikaci.toml(5)`.
pub fn pages() -> std::io::Result<Vec<Page>> {
    let mut root = Cli::command();
    root.build();
    let mut pages = Vec::new();
    command_pages(&root, &mut pages)?;
    pages.push(config_page());
    Ok(pages)
}

fn command_pages(cmd: &clap::Command, pages: &mut Vec<Page>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    let subcommands: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if !subcommands.is_empty() {
        man.render_subcommands_section(&mut roff)?;
    }
    let path = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    extra_sections(&path, &subcommands).to_writer(&mut roff)?;
    // clap_mangen panics on a command without a version (subcommands have none).
    if cmd.get_version().is_some() {
        man.render_version_section(&mut roff)?;
    }
    pages.push(Page {
        file: man.get_filename(),
        roff,
    });
    for sub in subcommands {
        command_pages(sub, pages)?;
    }
    Ok(())
}

/// What a command's exit codes mean (`pikaci-run` → run's).
fn exit_codes(page: &str) -> &'static [(&'static str, &'static str)] {
    const RUN: &[(&str, &str)] = &[
        (
            "0",
            "every job passed (flaky ones too, unless --fail-on-flaky) or was skipped",
        ),
        (
            "1",
            "a job failed or timed out (or was flaky, with --fail-on-flaky)",
        ),
        (
            "2",
            "a usage or configuration error (a key, a missing secret, no guest flake); nothing ran",
        ),
        (
            "3",
            "an infrastructure error: an input did not build, a backend or host is unavailable, records could not be written",
        ),
        ("130", "cancelled by SIGINT or SIGTERM"),
    ];
    const DOCTOR: &[(&str, &str)] = &[
        ("0", "every check passed"),
        ("1", "a check failed (each failure is printed with its fix)"),
        ("2", "a usage or configuration error"),
    ];
    const HOSTS: &[(&str, &str)] = &[
        ("0", "every host answered its probe"),
        ("2", "a usage or configuration error"),
        (
            "3",
            "a host could not be reached or probed (it is listed with the reason)",
        ),
    ];
    const OTHER: &[(&str, &str)] = &[
        ("0", "success"),
        ("2", "a usage or configuration error"),
        (
            "3",
            "an infrastructure error (a tool or host failed, a file could not be written)",
        ),
    ];
    match page {
        "pikaci" | "pikaci-run" | "pikaci-rerun" => RUN,
        "pikaci-doctor" => DOCTOR,
        "pikaci-hosts" => HOSTS,
        _ => OTHER,
    }
}

fn extra_sections(page: &str, subcommands: &[&clap::Command]) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_codes(page) {
        roff.control("TP", [] as [&str; 0])
            .text([bold(*code)])
            .text([roman(*meaning)]);
    }
    if page == "pikaci" {
        roff.control("SH", ["FILES"]);
        roff.control("TP", [] as [&str; 0])
            .text([bold("pikaci.toml")])
            .text([roman(
                "The configuration, found in the current directory or a parent \
                 (or --config FILE); its directory is the workspace. See pikaci.toml(5).",
            )]);
        roff.control("TP", [] as [&str; 0])
            .text([bold(".pikaci/")])
            .text([roman(
                "Beside pikaci.toml (or --state-dir): runs/ with each run's records and logs, \
                 cache/ with snapshots; ignored by git through its own .gitignore.",
            )]);
    }
    let mut see_also: Vec<String> = subcommands
        .iter()
        .map(|s| format!("{}(1)", s.get_display_name().unwrap_or(s.get_name())))
        .collect();
    if page != "pikaci" {
        see_also.insert(0, "pikaci(1)".into());
    }
    see_also.push("pikaci.toml(5)".into());
    roff.control("SH", ["SEE ALSO"])
        .text([roman(see_also.join(", "))]);
    roff
}

/// `pikaci.toml(5)` from the tables and paragraphs of docs/configuration.md.
fn config_page() -> Page {
    let mut roff = Roff::new();
    roff.control("TH", ["PIKACI.TOML", "5", "", "pikaci", ""]);
    roff.control("SH", ["NAME"])
        .text([roman("pikaci.toml - the configuration of pikaci")]);
    roff.control("SH", ["DESCRIPTION"]);
    let mut tables = 0;
    // Blocks are separated by blank lines (the file has no fenced block with one inside).
    for block in CONFIGURATION_MD.split("\n\n") {
        let block = block.trim();
        if block.starts_with("```") {
            let code: Vec<&str> = block.lines().filter(|l| !l.starts_with("```")).collect();
            roff.control("nf", [] as [&str; 0])
                .text([roman(code.join("\n"))])
                .control("fi", [] as [&str; 0]);
            continue;
        }
        if block.starts_with('#') {
            continue;
        }
        if block.starts_with('|') {
            tables += 1;
            let heading = match tables {
                1 => "KEYS",
                2 => "OVERRIDES",
                _ => "MORE",
            };
            roff.control("SH", [heading]);
            table(&mut roff, block, tables == 1);
            continue;
        }
        roff.control("PP", [] as [&str; 0]);
        roff.text(inline(&block.replace('\n', " ")));
    }
    roff.control("SH", ["SEE ALSO"])
        .text([roman("pikaci(1), pikaci-init(1), pikaci-doctor(1)")]);
    Page {
        file: "pikaci.toml.5".into(),
        roff: roff.render().into_bytes(),
    }
}

/// A Markdown table as a tagged list: the first cell is the tag, the rest its text; in
/// the key table the third cell is the default.
fn table(roff: &mut Roff, block: &str, keys: bool) {
    for row in block.lines().skip(2) {
        let cells: Vec<&str> = row
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        let Some((tag, rest)) = cells.split_first() else {
            continue;
        };
        let mut text = rest.first().copied().unwrap_or("").to_string();
        match rest.get(1) {
            Some(default) if keys && !default.is_empty() => {
                text.push_str(&format!(". Default: {default}."));
            }
            Some(other) if !keys && !other.is_empty() => {
                text = format!("{text}; overrides {other}.");
            }
            _ => {}
        }
        roff.control("TP", [] as [&str; 0]);
        roff.text(inline(tag));
        roff.text(inline(&text));
    }
}

/// `code` in bold, [text](link) as text, the rest roman.
fn inline(text: &str) -> Vec<roff::Inline> {
    let text = regex_free_links(text);
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// `[label](target)` → `label`.
fn regex_free_links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(close) = rest[mid..].find(')').map(|i| mid + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..mid]);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}
