//! The config parser (`pikaci_fuzz::oracles::config`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            pikaci_fuzz::oracles::config(text);
        }
    });
}
