//! The guest agent's request parser (`pikaci_fuzz::oracles::request`).
fn main() {
    afl::fuzz!(|data: &[u8]| pikaci_fuzz::oracles::request(data));
}
