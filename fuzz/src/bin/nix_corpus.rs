//! Prints the expressions of the given fuzz inputs as one Nix list, for
//! `nix-instantiate --parse` (the real parser is too slow to call per execution).
use pikaci::nix::Expr;

fn main() {
    let exprs = std::env::args_os()
        .skip(1)
        .filter_map(|path| pikaci_fuzz::decode(&std::fs::read(path).ok()?))
        .collect();
    // Nix checks free variables at parse time: bind the identifiers the decoder uses.
    println!("x: pkgs: {}", Expr::List(exprs).to_nix());
}
