use super::*;
use crate::transport::TransportError;

const POOL: &str = r#"
[hosts.builder-a]
url = "ssh://ci@a:2222"
slots = 4
labels = ["gpu", "kvm"]

[hosts.builder-b]
url = "local"

[hosts.dead]
url = "ssh://ci@dead"
labels = ["kvm"]
"#;

fn config() -> Config {
    let text = format!("[jobs.t]\ncommand = \"true\"\n{POOL}");
    crate::config::parse(std::path::Path::new("pikaci.toml"), &text).unwrap()
}

fn probe(kvm: bool) -> HostProbe {
    HostProbe {
        system: "x86_64-linux".into(),
        kvm,
        cores: 8,
        memory_kib: 16 << 20,
        nix: Some("nix (Nix) 2.8.0".into()),
        free_kib: Some(12 << 20),
    }
}

fn reached(kvm: bool) -> Result<Reached, Unreachable> {
    Ok(Reached {
        probe: probe(kvm),
        transport: Box::new(crate::transport::Local),
    })
}

fn refused() -> Result<Reached, Unreachable> {
    Err(Unreachable::Connect(TransportError::Connect {
        host: "ssh://ci@dead".into(),
        status: "exit status: 255".into(),
        stderr_tail: "ssh: connect to host dead port 22: Connection refused\n".into(),
    }))
}

fn listings() -> Vec<HostListing> {
    let config = config();
    let host = |name: &str| {
        config
            .hosts
            .values()
            .find(|h| h.name.as_str() == name)
            .unwrap()
    };
    vec![
        // Declares `kvm`, which the probe does not find.
        listing(
            &config,
            host("builder-a"),
            ".cache/pikaci".into(),
            reached(false),
        ),
        listing(
            &config,
            host("builder-b"),
            "/repo/.pikaci/host".into(),
            reached(true),
        ),
        listing(&config, host("dead"), ".cache/pikaci".into(), refused()),
    ]
}

#[test]
fn the_listing_says_what_each_host_is_and_why_one_is_unreachable() {
    insta::assert_snapshot!(render(&listings()), @"
    builder-a (ssh://ci@a:2222): reachable
      slots   4 (configured)
      labels  gpu, kvm (declared); x86_64-linux (detected)
      kvm     no (no usable /dev/kvm)
      nix     nix (Nix) 2.8.0
      disk    12.0 GiB free in .cache/pikaci
      warning: declares `kvm`, but the probe finds no usable /dev/kvm (missing, or not readable and writable by this user)
    builder-b (local): reachable
      slots   5 (from 8 core(s) and 16.0 GiB of memory)
      labels  x86_64-linux, kvm (detected)
      kvm     yes
      nix     nix (Nix) 2.8.0
      disk    12.0 GiB free in /repo/.pikaci/host
    dead (ssh://ci@dead): UNREACHABLE: cannot connect to ssh://ci@dead (exit status: 255): ssh: connect to host dead port 22: Connection refused
      slots   unknown (not configured, and the host did not answer)
      labels  kvm (declared)
    2 of 3 host(s) reachable
    ");
}

#[test]
fn the_json_listing_has_the_same_facts() {
    let json = serde_json::to_value(listings()).unwrap();
    insta::assert_json_snapshot!(json, @r#"
    [
      {
        "cores": 8,
        "error": null,
        "free_kib": 12582912,
        "kvm": false,
        "labels_declared": [
          "gpu",
          "kvm"
        ],
        "labels_detected": [
          "x86_64-linux"
        ],
        "memory_kib": 16777216,
        "name": "builder-a",
        "nix": "nix (Nix) 2.8.0",
        "reachable": true,
        "slots": 4,
        "slots_configured": true,
        "system": "x86_64-linux",
        "url": "ssh://ci@a:2222",
        "warnings": [
          "declares `kvm`, but the probe finds no usable /dev/kvm (missing, or not readable and writable by this user)"
        ],
        "work_dir": ".cache/pikaci"
      },
      {
        "cores": 8,
        "error": null,
        "free_kib": 12582912,
        "kvm": true,
        "labels_declared": [],
        "labels_detected": [
          "x86_64-linux",
          "kvm"
        ],
        "memory_kib": 16777216,
        "name": "builder-b",
        "nix": "nix (Nix) 2.8.0",
        "reachable": true,
        "slots": 5,
        "slots_configured": false,
        "system": "x86_64-linux",
        "url": "local",
        "warnings": [],
        "work_dir": "/repo/.pikaci/host"
      },
      {
        "cores": null,
        "error": "cannot connect to ssh://ci@dead (exit status: 255): ssh: connect to host dead port 22: Connection refused",
        "free_kib": null,
        "kvm": null,
        "labels_declared": [
          "kvm"
        ],
        "labels_detected": [],
        "memory_kib": null,
        "name": "dead",
        "nix": null,
        "reachable": false,
        "slots": null,
        "slots_configured": false,
        "system": null,
        "url": "ssh://ci@dead",
        "warnings": [],
        "work_dir": ".cache/pikaci"
      }
    ]
    "#);
}

#[test]
fn a_declared_system_the_host_is_not_is_a_warning() {
    let config = crate::config::parse(
        std::path::Path::new("pikaci.toml"),
        "[jobs.t]\ncommand = \"true\"\n[hosts.arm]\nurl = \"local\"\nlabels = [\"aarch64-linux\", \"gpu\"]\n",
    )
    .unwrap();
    let host = config.hosts.values().next().unwrap();
    let warnings = contradicted_labels(host, &probe(true));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0] == "declares `aarch64-linux`, but the probe finds x86_64-linux",
        "{warnings:?}"
    );
}
