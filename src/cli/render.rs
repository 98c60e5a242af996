//! `pikaci render …`: the Nix pikaci generates, for image maintainers.

use super::args::{Global, GuestFlakeArgs};
use super::context::{cancel_on_signals, load_config, state_dir};
use crate::config::hypervisor::{check_hypervisor, check_memory};
use crate::error::Error;
use crate::nix::{GuestProfile, PikaciOnHost};

/// The flake `pikaci run` would build for the configured host: its uid, gid and system
/// are read on that host, and pikaci's flake named as there, as the run does.
pub fn guest_flake(global: &Global, args: GuestFlakeArgs) -> Result<u8, Error> {
    let config = load_config(global)?;
    let mut settings = config.backends.microvm.clone();
    if let Some(hypervisor) = args.hypervisor {
        check_hypervisor(&hypervisor).map_err(|e| Error::Usage(format!("--hypervisor: {e}")))?;
        settings.hypervisor = hypervisor;
    }
    if let Some(vcpu) = args.vcpu.filter(|n| *n > 0) {
        settings.vcpu = vcpu;
    }
    if let Some(memory) = &args.memory {
        settings.memory_bytes = crate::config::parse_size(memory).map_err(Error::Usage)?;
    }
    check_memory(&settings.hypervisor, settings.memory_bytes)
        .map_err(|e| Error::Usage(format!("--memory: {e}")))?;
    let flake = crate::nix::pikaci_flake(&settings, args.pikaci_flake)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let cancel = cancel_on_signals()?;
    let state = state_dir(global, &config);
    let (transport, work_dir, local) =
        crate::backend::connect(&config, config.main_host(), state.root(), &cancel)
            .map_err(|e| Error::infra("connecting to the host", e))?;
    let host = crate::backend::read_host_facts(transport.as_ref(), &cancel)
        .map_err(|e| Error::infra("reading the guest profile's facts on the host", e))?;
    let flake = PikaciOnHost::resolve(&flake, &work_dir, local).flake;
    let profile = GuestProfile::from_settings(&settings, flake, &host);
    if args.hash {
        crate::outln!("{}", profile.hash());
    } else {
        crate::console::out(profile.flake_nix().as_bytes());
    }
    Ok(0)
}
