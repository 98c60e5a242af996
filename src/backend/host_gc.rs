//! `pikaci gc` on the guest host: what this state dir's runs that are over left in
//! pikaci's work dir there, and what no kept run needs.
//!
//! The work dir may be shared: by several users logging in as one account, or by
//! several machines. Each local state dir is an *owner* (a random id kept in its cache,
//! [`crate::sync::owner_id`]); a sync claims its snapshot as `owners/<owner>/<hex>`. gc
//! drops this owner's claims on snapshots none of its kept runs needs, and removes a
//! snapshot only when no owner claims it and no run holds its lease. Objects go when no
//! tree links them (one link left), temporary sync trees when no sync is in flight (the
//! `leases/syncs` lock, which every sync holds shared from its first change on).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use super::session::{HOST_STEP, connect};
use crate::cancel::Cancel;
use crate::config::Config;

/// Args: host dir, owner id. Stdin: the runs that are over, one a line, a line `--`,
/// then the hex hashes of the snapshots the kept runs need. Prints the counts of job
/// dirs, snapshots and objects removed, and 1 when syncs in flight kept it from
/// collecting objects and temporary trees.
pub(crate) const COLLECT: &str = r#"set -eu
cd "$1"
owner=$2
mkdir -p leases owners tmp
jobs=0
while IFS= read -r run && [ "$run" != -- ]; do
  if [ -z "$run" ]; then continue; fi
  # The run's input roots: the host's Nix may collect those paths now.
  if [ -d "gcroots/runs/$run" ]; then rm -rf -- "gcroots/runs/$run"; fi
  if [ ! -d "jobs/$run" ]; then continue; fi
  discard "jobs/$run"
  jobs=$((jobs + 1))
done
keep=$(cat)
kept() { printf '%s\n' "$keep" | grep -qxF -e "$1"; }
claimed() {
  for claim in owners/*/"$1"; do
    if [ -e "$claim" ]; then return 0; fi
  done
  return 1
}
if [ -d "owners/$owner" ]; then
  for claim in "owners/$owner"/*; do
    if [ -f "$claim" ] && ! kept "${claim##*/}"; then rm -f -- "$claim"; fi
  done
fi
# Claims nobody renewed for 30 days: their state dir is gone.
find owners -mindepth 2 -maxdepth 2 -type f -mtime +30 -exec rm -f -- {} +
snapshots=0
for dir in snapshots/*; do
  if [ ! -d "$dir" ]; then continue; fi
  hex=${dir##*/}
  if kept "$hex" || claimed "$hex"; then continue; fi
  exec 8>>"leases/$hex"
  if flock -xn 8; then
    # Out of snapshots/ first, in one rename: a gc killed while removing must never
    # leave a partial tree there, where a sync would take it as present.
    chmod u+w "$dir"
    mv -T "$dir" "tmp/gc-$hex.$$"
    discard "tmp/gc-$hex.$$"
    snapshots=$((snapshots + 1))
  fi
  exec 8>&-
done
objects=0 busy=1
exec 7>>leases/syncs
if flock -xn 7; then
  busy=0
  # Younger entries may belong to a sync between its query and its lease.
  find tmp -mindepth 1 -maxdepth 1 -mmin +10 | while IFS= read -r old; do discard "$old"; done
  if [ -d objects ]; then
    objects=$(find objects -type f -links 1 -print -exec rm -f -- {} + | wc -l)
    # The fan-out directories of older pikacis, once no snapshot links their objects.
    find objects -mindepth 1 -maxdepth 1 -type d -empty -exec rmdir -- {} + 2>/dev/null || true
  fi
fi
echo "$jobs $snapshots $objects $busy"
"#;

/// What `pikaci gc` keeps on the host.
pub struct HostGc<'a> {
    /// Runs of this state dir that are over: their job dirs go.
    pub finished_runs: &'a [String],
    /// The ids of the snapshots the kept runs need.
    pub keep_snapshots: &'a HashSet<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostGcStats {
    pub job_dirs: usize,
    pub snapshots: usize,
    pub objects: usize,
    /// Syncs were in flight: objects and temporary trees are left for the next gc.
    pub busy: bool,
}

impl fmt::Display for HostGcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removed {} job dir(s) of runs that are over, {} snapshot(s), {} unused object(s)",
            self.job_dirs, self.snapshots, self.objects
        )?;
        if self.busy {
            write!(f, " (syncs in flight: objects left for the next gc)")?;
        }
        Ok(())
    }
}

impl HostGcStats {
    fn parse(text: &str) -> Option<HostGcStats> {
        let numbers: Vec<usize> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [job_dirs, snapshots, objects, busy] = numbers[..] else {
            return None;
        };
        Some(HostGcStats {
            job_dirs,
            snapshots,
            objects,
            busy: busy != 0,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostGcError {
    #[error(transparent)]
    Connect(#[from] super::error::ConnectError),
    #[error(transparent)]
    Owner(#[from] crate::sync::SyncError),
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error("the host's gc printed `{0}` where pikaci expected four counts")]
    Output(String),
    #[error(transparent)]
    Incus(#[from] crate::incus::IncusError),
}

/// `pikaci gc` on `host`.
pub fn collect_host(
    config: &Config,
    host: &crate::config::PoolHost,
    state_root: &Path,
    keep: &HostGc,
    cancel: &Cancel,
) -> Result<HostGcStats, HostGcError> {
    let (transport, work_dir, _) = connect(config, host, state_root, cancel)?;
    let cache = crate::state::StateDir::new(state_root).cache();
    let owner = crate::sync::owner_id(&cache)?;
    let argv = crate::transport::host_sh(COLLECT, "pikaci-gc")
        .arg(&work_dir)
        .arg(&owner);
    let mut stdin = String::new();
    for run in keep.finished_runs {
        stdin.push_str(run);
        stdin.push('\n');
    }
    stdin.push_str("--\n");
    for id in keep.keep_snapshots {
        stdin.push_str(id);
        stdin.push('\n');
    }
    let out = transport.run(&argv, stdin.as_bytes(), Instant::now() + HOST_STEP, cancel)?;
    let text = String::from_utf8_lossy(&out.stdout);
    HostGcStats::parse(&text).ok_or_else(|| HostGcError::Output(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_counts_are_read_and_shown() {
        let stats = HostGcStats::parse("2 3 40 1\n").unwrap();
        assert_eq!(
            stats,
            HostGcStats {
                job_dirs: 2,
                snapshots: 3,
                objects: 40,
                busy: true
            }
        );
        assert_eq!(
            stats.to_string(),
            "removed 2 job dir(s) of runs that are over, 3 snapshot(s), 40 unused object(s) \
             (syncs in flight: objects left for the next gc)"
        );
        for bad in ["", "2 3 40", "2 3 x 0", "1 2 3 4 5"] {
            assert_eq!(HostGcStats::parse(bad), None, "{bad:?}");
        }
    }

    /// A gc killed while it removes a snapshot (SIGKILL, a dropped connection) leaves no
    /// partial tree under `snapshots/`, where the next sync would answer `present`.
    #[test]
    fn a_gc_killed_while_removing_leaves_no_partial_snapshot() {
        use std::os::unix::fs::PermissionsExt;
        let host = tempfile::tempdir().unwrap();
        let tree = host.path().join("snapshots").join("ab".repeat(32));
        std::fs::create_dir_all(tree.join("src")).unwrap();
        for name in ["a", "b", "src/c"] {
            std::fs::write(tree.join(name), name).unwrap();
        }
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o555)).unwrap();
        // `rm` that removes one file of what it is given, then kills the gc (with the
        // gc left alive, the tree it was given stays partial all the same).
        let stubs = tempfile::tempdir().unwrap();
        let rm = stubs.path().join("rm");
        let ran = stubs.path().join("ran");
        std::fs::write(
            &rm,
            format!(
                "#!/bin/sh\nfor a; do last=$a; done\n\
                 f=$(find \"$last\" -type f | head -n 1)\n\
                 [ -n \"$f\" ] && /bin/rm -f -- \"$f\"\ntouch {}\nkill -KILL $PPID\n",
                ran.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rm, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = crate::transport::host_sh(COLLECT, "pikaci-gc")
            .arg(host.path())
            .arg("owner");
        let path = format!(
            "{}:{}",
            stubs.path().display(),
            std::env::var("PATH").unwrap()
        );
        let mut child = argv
            .command()
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"--\n").unwrap();
        child.wait().unwrap();
        assert!(ran.exists(), "the gc never removed the snapshot");
        let left: Vec<_> = walkdir::WalkDir::new(host.path().join("snapshots"))
            .min_depth(1)
            .into_iter()
            .flatten()
            .map(|e| e.into_path())
            .collect();
        assert!(left.is_empty(), "left under snapshots/: {left:?}");
    }
}
