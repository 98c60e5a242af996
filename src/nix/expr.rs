//! A small typed Nix expression model and its one printer. Everything pikaci generates in
//! Nix is built from these values, so escaping happens in exactly one place.

use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    /// Any text; printed as a double-quoted string with `\`, `"`, `${` and control
    /// characters escaped.
    Str(String),
    /// A variable or builtin name, from pikaci's own code (never from users).
    Ident(&'static str),
    List(Vec<Expr>),
    Attrs(Vec<(String, Expr)>),
    /// `expr.a.b`
    Select(Box<Expr>, Vec<String>),
    /// `f x`
    Apply(Box<Expr>, Box<Expr>),
    /// `{ a, b, ... }: body`
    Lambda {
        args: Vec<&'static str>,
        ellipsis: bool,
        body: Box<Expr>,
    },
}

impl Expr {
    pub fn str(text: impl Into<String>) -> Expr {
        Expr::Str(text.into())
    }

    pub fn attrs<K: Into<String>>(entries: impl IntoIterator<Item = (K, Expr)>) -> Expr {
        Expr::Attrs(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn select(self, path: &[&str]) -> Expr {
        Expr::Select(Box::new(self), path.iter().map(|p| p.to_string()).collect())
    }

    pub fn apply(self, argument: Expr) -> Expr {
        Expr::Apply(Box::new(self), Box::new(argument))
    }

    /// The expression as Nix source, two-space indented, ending in a newline.
    pub fn to_nix(&self) -> String {
        let mut out = String::new();
        print(self, 0, &mut out);
        out.push('\n');
        out
    }
}

const KEYWORDS: &[&str] = &[
    "assert", "else", "if", "in", "inherit", "let", "or", "rec", "then", "with",
];

/// An attribute name as written: bare when it is a plain identifier, quoted otherwise.
fn attr_name(name: &str, out: &mut String) {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
        && !KEYWORDS.contains(&name);
    if plain {
        out.push_str(name);
    } else {
        string(name, out);
    }
}

fn string(text: &str, out: &mut String) {
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `${` would start an interpolation; a lone `$` is literal.
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn indent(level: usize, out: &mut String) {
    out.extend(std::iter::repeat_n("  ", level));
}

/// True for expressions that need parentheses as a function argument or select base.
fn compound(expr: &Expr) -> bool {
    matches!(expr, Expr::Apply(..) | Expr::Lambda { .. }) || matches!(expr, Expr::Int(i) if *i < 0)
}

fn print(expr: &Expr, level: usize, out: &mut String) {
    match expr {
        Expr::Null => out.push_str("null"),
        Expr::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Expr::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Expr::Str(text) => string(text, out),
        Expr::Ident(name) => out.push_str(name),
        Expr::List(items) if items.is_empty() => out.push_str("[ ]"),
        Expr::List(items) => {
            out.push_str("[\n");
            for item in items {
                indent(level + 1, out);
                print_operand(item, level + 1, out);
                out.push('\n');
            }
            indent(level, out);
            out.push(']');
        }
        Expr::Attrs(entries) if entries.is_empty() => out.push_str("{ }"),
        Expr::Attrs(entries) => {
            out.push_str("{\n");
            for (name, value) in entries {
                indent(level + 1, out);
                attr_name(name, out);
                out.push_str(" = ");
                print(value, level + 1, out);
                out.push_str(";\n");
            }
            indent(level, out);
            out.push('}');
        }
        Expr::Select(base, path) => {
            // `1.a` would lex as the float `1.` followed by `a`.
            if matches!(**base, Expr::Int(_)) {
                out.push('(');
                print(base, level, out);
                out.push(')');
            } else {
                print_operand(base, level, out);
            }
            for name in path {
                out.push('.');
                attr_name(name, out);
            }
        }
        Expr::Apply(function, argument) => {
            print(function, level, out);
            out.push(' ');
            print_operand(argument, level, out);
        }
        Expr::Lambda {
            args,
            ellipsis,
            body,
        } => {
            out.push_str("{ ");
            let mut names: Vec<&str> = args.to_vec();
            if *ellipsis {
                names.push("...");
            }
            out.push_str(&names.join(", "));
            out.push_str(" }: ");
            print(body, level, out);
        }
    }
}

fn print_operand(expr: &Expr, level: usize, out: &mut String) {
    if compound(expr) {
        out.push('(');
        print(expr, level, out);
        out.push(')');
    } else {
        print(expr, level, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by tests/fuzz.rs: an integer base must be parenthesized before `.`.
    #[test]
    fn selecting_from_an_integer_keeps_it_an_integer() {
        let expr = Expr::Int(7).select(&["a-b"]);
        assert_eq!(expr.to_nix(), "(7).a-b\n");
    }

    #[test]
    fn prints_a_nested_expression() {
        let expr = Expr::attrs([
            (
                "description",
                Expr::str("a \"quoted\" ${thing} \\ with\nnewline"),
            ),
            (
                "outputs",
                Expr::Lambda {
                    args: vec!["self", "pikaci"],
                    ellipsis: true,
                    body: Box::new(Expr::attrs([(
                        "x86_64-linux",
                        Expr::Ident("pikaci")
                            .select(&["lib", "mkGuest"])
                            .apply(Expr::attrs([
                                ("vcpu", Expr::Int(2)),
                                (
                                    "shares",
                                    Expr::List(vec![Expr::str("a"), Expr::Null, Expr::Bool(true)]),
                                ),
                                ("with", Expr::List(vec![])),
                                ("neg", Expr::List(vec![Expr::Int(-1)])),
                            ])),
                    )])),
                },
            ),
        ]);
        insta::assert_snapshot!(expr.to_nix(), @r#"
        {
          description = "a \"quoted\" \${thing} \\ with\nnewline";
          outputs = { self, pikaci, ... }: {
            x86_64-linux = pikaci.lib.mkGuest {
              vcpu = 2;
              shares = [
                "a"
                null
                true
              ];
              "with" = [ ];
              neg = [
                (-1)
              ];
            };
          };
        }
        "#);
    }
}
