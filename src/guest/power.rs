//! Ending a microVM: the agent is the guest's last process, and a powered-off guest makes
//! the hypervisor exit, which is how the host learns the job is over.

/// Flushes file systems (the shares hold the result) and powers off. Returns only if the
/// kernel refused, e.g. when not running as root or not as a guest's init.
/// Guests are Linux; elsewhere (the CLI built for darwin) this only says so.
pub fn power_off() {
    rustix::fs::sync();
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        eprintln!("pikaci-guest: cannot power off: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("pikaci-guest: cannot power off: guests run Linux");
}
