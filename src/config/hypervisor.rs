//! Which microvm.nix hypervisors a pikaci guest profile can use, checked when the
//! configuration is read rather than when Nix evaluates the guest on the host. What each
//! hypervisor can do was read in microvm.nix (the revision is in docs/nix.md).

/// microvm.nix's `lib.hypervisors`, the values its `microvm.hypervisor` option admits.
pub const HYPERVISORS: &[&str] = &[
    "qemu",
    "cloud-hypervisor",
    "firecracker",
    "crosvm",
    "kvmtool",
    "stratovirt",
    "alioth",
    "vfkit",
];

/// The ones a pikaci guest can use (virtiofs shares, a Linux host that runs virtiofsd).
pub const USABLE: &[&str] = &["qemu", "cloud-hypervisor", "crosvm", "stratovirt", "alioth"];

/// microvm.nix's QEMU runner warns at exactly this much memory: QEMU hangs (its issue 171).
pub const QEMU_HANG_MIB: u64 = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HypervisorError {
    #[error("`{name}` is not a microvm.nix hypervisor; pikaci guests can use {}", USABLE.join(", "))]
    Unknown { name: String },
    #[error(
        "`{name}` cannot serve virtiofs shares (microvm.nix's runner throws \"{thrown}\"), and a pikaci guest gets its workspace, request and artifacts over virtiofs; use one of {}",
        USABLE.join(", ")
    )]
    NoVirtiofs { name: String, thrown: &'static str },
    #[error(
        "`vfkit` runs only on macOS hosts (microvm.nix: \"vfkit only works on macOS\"), and pikaci's microVM hosts are Linux, where it starts a virtiofsd for each share; use one of {}",
        USABLE.join(", ")
    )]
    DarwinOnly,
    #[error(
        "QEMU hangs with exactly 2GiB of memory (microvm.nix warns about it, its issue 171); use, e.g., 2047MiB or 3GiB"
    )]
    QemuHang,
}

/// Whether a guest profile can use `name`.
pub fn check_hypervisor(name: &str) -> Result<(), HypervisorError> {
    match name {
        "firecracker" => Err(HypervisorError::NoVirtiofs {
            name: name.into(),
            thrown: "9p/virtiofs shares not implemented for Firecracker",
        }),
        "kvmtool" => Err(HypervisorError::NoVirtiofs {
            name: name.into(),
            thrown: "virtiofs shares not implemented for kvmtool",
        }),
        "vfkit" => Err(HypervisorError::DarwinOnly),
        _ if USABLE.contains(&name) => Ok(()),
        _ => Err(HypervisorError::Unknown { name: name.into() }),
    }
}

/// What microvm.nix's runner for `name` would warn about with this much memory.
pub fn check_memory(name: &str, memory_bytes: u64) -> Result<(), HypervisorError> {
    if name == "qemu" && memory_bytes == QEMU_HANG_MIB << 20 {
        return Err(HypervisorError::QemuHang);
    }
    Ok(())
}

/// crosvm learns a share's tag from virtiofsd (`--tag`), as microvm.nix's own virtiofsd
/// launcher passes it for crosvm only (QEMU 7.1 to 8.0 crash on it, says virtiofsd).
pub fn virtiofsd_announces_tag(name: &str) -> bool {
    name == "crosvm"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ones_are_microvm_nix_hypervisors() {
        for name in USABLE {
            assert!(HYPERVISORS.contains(name), "{name}");
            assert_eq!(check_hypervisor(name), Ok(()));
        }
        let rejected: Vec<&str> = HYPERVISORS
            .iter()
            .copied()
            .filter(|h| check_hypervisor(h).is_err())
            .collect();
        assert_eq!(rejected, ["firecracker", "kvmtool", "vfkit"]);
    }

    #[test]
    fn errors_say_why() {
        let shown: Vec<String> = ["firecracker", "vfkit", "qemu-kvm"]
            .iter()
            .map(|h| check_hypervisor(h).unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!(shown.join("\n"), @r#"
        `firecracker` cannot serve virtiofs shares (microvm.nix's runner throws "9p/virtiofs shares not implemented for Firecracker"), and a pikaci guest gets its workspace, request and artifacts over virtiofs; use one of qemu, cloud-hypervisor, crosvm, stratovirt, alioth
        `vfkit` runs only on macOS hosts (microvm.nix: "vfkit only works on macOS"), and pikaci's microVM hosts are Linux, where it starts a virtiofsd for each share; use one of qemu, cloud-hypervisor, crosvm, stratovirt, alioth
        `qemu-kvm` is not a microvm.nix hypervisor; pikaci guests can use qemu, cloud-hypervisor, crosvm, stratovirt, alioth
        "#);
    }

    #[test]
    fn qemu_memory_avoids_the_hang() {
        assert_eq!(
            check_memory("qemu", 2 << 30),
            Err(HypervisorError::QemuHang)
        );
        assert_eq!(check_memory("qemu", 2047 << 20), Ok(()));
        assert_eq!(check_memory("cloud-hypervisor", 2 << 30), Ok(()));
        assert!(virtiofsd_announces_tag("crosvm") && !virtiofsd_announces_tag("qemu"));
    }
}
