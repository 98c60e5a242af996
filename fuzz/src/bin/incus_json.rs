//! The Incus image list reader (`pikaci_fuzz::oracles::incus_image_list`).
fn main() {
    afl::fuzz!(|data: &[u8]| pikaci_fuzz::oracles::incus_image_list(data));
}
