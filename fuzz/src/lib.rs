//! What the fuzz targets share: the properties they check, and a Nix expression
//! decoded from AFL's bytes.

pub mod oracles;

use arbitrary::{Result, Unstructured};
use pikaci::nix::Expr;

/// Names that exercise the printer's quoting: keywords, dashes, digits, `${`, quotes.
const NAMES: &[&str] = &[
    "a", "if", "or", "a-b", "7", "7a", "_x'", "${x}", "\"", "", " ", "é", "a.b",
];
const IDENTS: &[&str] = &["builtins", "x", "pkgs"];

/// Any expression the printer can be handed, at most `depth` levels deep. Attribute
/// names are unique per set, as in every set pikaci builds (Nix rejects duplicates).
pub fn expr(u: &mut Unstructured, depth: u32) -> Result<Expr> {
    let leaf = depth == 0 || u.is_empty();
    Ok(match u.int_in_range(0..=if leaf { 4 } else { 9 })? {
        0 => Expr::Null,
        1 => Expr::Bool(u.arbitrary()?),
        2 => Expr::Int(u.arbitrary()?),
        3 => Expr::Str(text(u)?),
        4 => Expr::Ident(u.choose(IDENTS)?),
        5 => Expr::List(items(u, depth)?),
        6 => {
            let mut entries: Vec<(String, Expr)> = Vec::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let name = name(u)?;
                if !entries.iter().any(|(n, _)| *n == name) {
                    entries.push((name, expr(u, depth - 1)?));
                }
            }
            Expr::Attrs(entries)
        }
        7 => {
            let path = (0..u.int_in_range(1..=3)?)
                .map(|_| name(u))
                .collect::<Result<_>>()?;
            Expr::Select(Box::new(expr(u, depth - 1)?), path)
        }
        8 => expr(u, depth - 1)?.apply(expr(u, depth - 1)?),
        _ => Expr::Lambda {
            args: vec!["self", "pikaci"],
            ellipsis: u.arbitrary()?,
            body: Box::new(expr(u, depth - 1)?),
        },
    })
}

fn items(u: &mut Unstructured, depth: u32) -> Result<Vec<Expr>> {
    (0..u.int_in_range(0..=4)?)
        .map(|_| expr(u, depth - 1))
        .collect()
}

fn name(u: &mut Unstructured) -> Result<String> {
    if u.arbitrary()? {
        Ok(u.choose(NAMES)?.to_string())
    } else {
        text(u)
    }
}

/// Any text without NUL (Nix strings cannot hold it; pikaci rejects it earlier).
fn text(u: &mut Unstructured) -> Result<String> {
    let s: String = u.arbitrary()?;
    Ok(s.replace('\0', ""))
}

/// The expression for one fuzz input, as the targets and the corpus replay decode it.
pub fn decode(data: &[u8]) -> Option<Expr> {
    expr(&mut Unstructured::new(data), 5).ok()
}
