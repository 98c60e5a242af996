//! What pikaci reads on a pool host before it places jobs there: its system and KVM (the
//! detected labels), its size (the default slots), and for `pikaci hosts` its Nix and the
//! free space in pikaci's work dir.

use std::time::Instant;

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::config::{MicrovmSettings, PoolHost};
use crate::transport::{Step, Transport, TransportError};

/// Prints `key=value` lines; `$1` is pikaci's work dir there (made if missing).
pub const PROBE: &str = r#"mkdir -p -- "$1" 2>/dev/null
echo "machine=$(uname -m)"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvm=yes; else echo kvm=no; fi
echo "cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "memory-kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
echo "nix=$(nix --version 2>/dev/null | head -n 1)"
echo "free-kib=$(df -Pk -- "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')"
"#;

/// What the probe read on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProbe {
    /// `x86_64-linux`, `aarch64-linux`, …
    pub system: String,
    pub kvm: bool,
    pub cores: u32,
    pub memory_kib: u64,
    /// `nix --version`'s line, when Nix is on the host's PATH.
    pub nix: Option<String>,
    /// Free space in pikaci's work dir, when it could be read.
    pub free_kib: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read the host's facts")]
    Run(#[source] TransportError),
    #[error("the host's facts lack `{0}` (got: {1:?})")]
    Missing(&'static str, String),
}

impl HostProbe {
    pub fn parse(text: &str) -> Result<HostProbe, ProbeError> {
        let get = |key: &'static str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let need =
            |key: &'static str| get(key).ok_or_else(|| ProbeError::Missing(key, text.to_string()));
        let number = |key: &'static str| {
            need(key)?
                .parse::<u64>()
                .map_err(|_| ProbeError::Missing(key, text.to_string()))
        };
        Ok(HostProbe {
            system: format!("{}-linux", need("machine")?),
            kvm: need("kvm")? == "yes",
            cores: number("cores")?.clamp(1, u32::MAX.into()) as u32,
            memory_kib: number("memory-kib")?,
            nix: get("nix").map(str::to_string),
            free_kib: get("free-kib").and_then(|v| v.parse().ok()),
        })
    }

    /// The labels pikaci gives the host itself: its system, and `kvm` when usable.
    pub fn labels(&self) -> Vec<String> {
        let mut labels = vec![self.system.clone()];
        if self.kvm {
            labels.push("kvm".into());
        }
        labels
    }

    /// Guests at once when `slots` is not set: two guest vCPUs per core (guests of CI
    /// jobs wait on I/O much of the time), at most as many guests as fit in its memory,
    /// at least one.
    pub fn default_slots(&self, guest: &MicrovmSettings) -> u32 {
        let by_cores = (2 * self.cores) / guest.vcpu.max(1);
        let by_memory = (self.memory_kib * 1024 / guest.memory_bytes.max(1)).min(u32::MAX.into());
        by_cores.min(by_memory as u32).max(1)
    }
}

/// Runs the probe on `host` through `transport`; `work_dir` as configured (relative to
/// the SSH user's home).
pub fn probe(
    transport: &dyn Transport,
    work_dir: &str,
    cancel: &Cancel,
) -> Result<HostProbe, ProbeError> {
    let argv = Argv::new("sh")
        .args(["-c", PROBE, "pikaci-probe"])
        .arg(work_dir);
    let deadline = Instant::now() + Step::Bookkeeping.duration();
    let out = transport
        .run(&argv, b"", deadline, cancel)
        .map_err(ProbeError::Run)?;
    HostProbe::parse(&String::from_utf8_lossy(&out.stdout))
}

/// The slots of `host`: as configured, else from its probe.
pub fn slots(host: &PoolHost, probe: &HostProbe, guest: &MicrovmSettings) -> u32 {
    host.slots.unwrap_or_else(|| probe.default_slots(guest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "machine=x86_64\nkvm=no\ncores=8\nmemory-kib=16384000\nnix=nix (Nix) 2.8.0\nfree-kib=123\n";

    #[test]
    fn a_probe_reads_labels_and_sizes() {
        let probe = HostProbe::parse(TEXT).unwrap();
        assert_eq!(probe.labels(), vec!["x86_64-linux".to_string()]);
        assert_eq!(probe.nix.as_deref(), Some("nix (Nix) 2.8.0"));
        assert_eq!(probe.free_kib, Some(123));
        let guest = MicrovmSettings::default(); // 2 vCPU, 3 GiB
        // 16 guest vCPUs would fit 8 guests, but 15.6 GiB hold 5 of 3 GiB.
        assert_eq!(probe.default_slots(&guest), 5);
        let tiny = HostProbe {
            cores: 1,
            memory_kib: 1024,
            ..probe
        };
        assert_eq!(tiny.default_slots(&guest), 1);
    }

    #[test]
    fn a_probe_without_nix_or_kvm_says_so_and_a_broken_one_is_an_error() {
        let text = TEXT
            .replace("nix=nix (Nix) 2.8.0", "nix=")
            .replace("kvm=no", "kvm=yes");
        let probe = HostProbe::parse(&text).unwrap();
        assert_eq!(probe.nix, None);
        assert!(probe.labels().contains(&"kvm".to_string()));
        let broken = HostProbe::parse("machine=x86_64\n").unwrap_err();
        assert!(broken.to_string().contains("lack `kvm`"), "{broken}");
    }
}
