//! `pikaci render …`: the Nix pikaci generates, for image maintainers.

use super::args::{Global, GuestFlakeArgs};
use super::context::load_config;
use crate::error::Error;
use crate::nix::GuestProfile;

pub fn guest_flake(global: &Global, args: GuestFlakeArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let mut settings = config.backends.microvm.clone();
    if let Some(hypervisor) = args.hypervisor {
        settings.hypervisor = hypervisor;
    }
    if let Some(vcpu) = args.vcpu.filter(|n| *n > 0) {
        settings.vcpu = vcpu;
    }
    if let Some(memory) = &args.memory {
        settings.memory_bytes = crate::config::parse_size(memory).map_err(Error::Usage)?;
    }
    let flake = args
        .pikaci_flake
        .or(settings.pikaci_flake.clone())
        .or(crate::nix::BUILT_FROM.map(str::to_string))
        .ok_or_else(|| {
            Error::Usage("set backends.microvm.pikaci-flake (the flake that provides lib.mkGuest) or pass --pikaci-flake".into())
        })?;
    let profile = GuestProfile::from_settings(
        &settings,
        flake,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    if args.hash {
        crate::outln!("{}", profile.hash());
    } else {
        crate::console::out(profile.flake_nix().as_bytes());
    }
    Ok(0)
}
