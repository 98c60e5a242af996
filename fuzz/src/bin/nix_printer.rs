//! The Nix printer (`pikaci_fuzz::oracles::printed_nix`) on expressions decoded from
//! AFL's bytes; `scripts/fuzz.sh` replays the corpus through `nix-instantiate --parse`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Some(expr) = pikaci_fuzz::decode(data) {
            pikaci_fuzz::oracles::printed_nix(&expr);
        }
    });
}
