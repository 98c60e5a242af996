//! Workspace sync: a local snapshot reaches the guest host's work dir, content-addressed
//! and incremental, through any transport.
//!
//! On the host, `<dir>/objects/` holds file contents by hash and `<dir>/snapshots/<hex>/`
//! the published trees (hard links to objects), as in the local cache. A sync is one
//! round trip that answers one of:
//! - `present`: done; an unchanged snapshot costs exactly this;
//! - `patch P`: the host took an older tree `P` that no run holds a lease on (one of the
//!   recent snapshots this machine still knows), and it is turned into the new tree in
//!   place: only changed entries travel and only they are touched, so one changed file
//!   costs one small stream, not a tree of hard links per file;
//! - `absent`: a second round trip lists the objects the host lacks, and one tar stream
//!   brings the tree, unpacked straight into place: the contents the host lacks at
//!   their paths (and linked into `objects/` from there), hard links to `objects/` for
//!   the rest;
//! - `cold`: as `absent` for a host with no objects at all, without the second round
//!   trip: everything travels.
//!
//! New trees are built under `tmp/` and published with a rename, so no half-synced tree
//! is ever used and two runs syncing the same snapshot both succeed. A run holds a shared
//! lease on its snapshot ([`lease`]) for as long as it uses it; only unleased trees are
//! ever taken for patching, and only unleased, unclaimed ones collected
//! ([`crate::backend::collect_host`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::argv::Argv;
use crate::cancel::Cancel;
use crate::exec::GroupChild;
use crate::snapshot::{self, TreeEntry, TreeKind};
use crate::transport::{Transport, TransportError, host_sh};

mod pack;
mod parts;

use pack::{PackCancelled, pack_patch, pack_tree, unique_objects};

/// How many recent local snapshots a sync offers the host as patch bases.
const PATCH_CANDIDATES: usize = 8;
/// Above this many changed entries a patch is no cheaper than a fresh tree.
const PATCH_LIMIT: usize = 5_000;

/// Step 1 on the host. Args: host dir, snapshot hex, temp id, owner id, candidate
/// hexes. Claims the snapshot for this owner (gc on the host keeps claimed snapshots),
/// then takes the first candidate tree whose lease it can lock exclusively (nobody uses
/// it) by renaming it to `tmp/ID.tree`, with a fresh mtime, and holds [`SYNCS_LEASE`]
/// for the patch until that tree is gone from there. Otherwise `cold` when the host has
/// no objects (nothing to ask MISSING about), else `absent`.
pub(crate) const QUERY: &str = r#"set -eu
mkdir -p "$1/objects" "$1/tmp" "$1/leases" "$1/owners/$4" && cd "$1"
hex=$2 id=$3 owner=$4
shift 4
touch "owners/$owner/$hex"
if [ -d "snapshots/$hex" ]; then echo present; exit 0; fi
for base in "$@"; do
  [ -d "snapshots/$base" ] || continue
  exec 8>>"leases/$base"
  # Moving a directory changes its `..`: it needs write permission on it (root skips
  # that check, nobody else does).
  if flock -xn 8 && chmod u+w "snapshots/$base" && mv -T "snapshots/$base" "tmp/$id.tree"; then
    touch "tmp/$id.tree"
    rm -f owners/*/"$base"
    # The sync's shared lease from here until its patch has published or discarded
    # this tree, held by a process of its own (the patch comes in another step): gc
    # leaves the tree alone meanwhile. Capped at the sync's deadline, for a pikaci
    # that dies before its patch.
    exec 9>>leases/syncs
    flock -s 9
    exec 8>&-
    # shellcheck disable=SC2016
    detached 'while [ -d "$1" ] && [ "$2" -gt 0 ]; do sleep 1; set -- "$1" $(($2 - 1)); done' \
      pikaci-sync-hold "tmp/$id.tree" 1800
    echo "patch $base"
    exit 0
  fi
  exec 8>&-
done
# No objects at all (a new host dir): everything travels, no MISSING step. (The first
# name find prints, not a glob: that would sort every object's name.)
if [ -z "$(find objects -mindepth 1 -maxdepth 1 | head -n 1)" ]; then echo cold; exit 0; fi
echo absent
"#;

/// The lease every sync holds (shared) from its first change on the host to its end;
/// gc on the host takes it exclusively before it removes objects or temporary trees.
pub(crate) const SYNCS_LEASE: &str = "syncs";

/// Full sync, step 2. Args: host dir. Stdin: object names, one a line, sorted bytewise;
/// prints those the host lacks. One `find` and `comm` instead of a test per object:
/// 20,000 shell tests take about 0.7 s, this about 0.05 s.
pub(crate) const MISSING: &str = r#"set -eu
cd "$1"
export LC_ALL=C
have=$(mktemp tmp/have.XXXXXX)
trap 'rm -f "$have"' EXIT
(cd objects && find . -type f) | cut -c3- | sort > "$have"
comm -23 - "$have"
"#;

/// Full sync, step 3. Args: host dir, snapshot hex, temp id. Stdin: the tree stream
/// ([`pack`]) under `tmp/ID/tree/` in framed parts ([`parts`]), unpacked straight into
/// place: contents at their paths, each new object linked into `objects/` from there,
/// the rest linked from `objects/`. Each part is stored under `tmp/ID/` as it arrives
/// and unpacked, alone or alongside the parallel parts next to it, while the next
/// arrives. A tree taken for a patch that turned out too large (`tmp/ID.tree`) goes.
pub(crate) const RECEIVE: &str = r#"set -eu
cd "$1"
exec 9>>leases/syncs
flock -s 9
t="tmp/$3"
# The parts' tars still unpacking: none outlives this script. KILL, as a TERM that
# comes before the forked shell has become tar is caught by this script's trap and lost.
parts=
trap 'for p in $parts; do kill -KILL "$p" 2>/dev/null || :; done; wait; discard "$t"; discard "$t.tree"' EXIT
trap 'exit 1' HUP INT TERM
# The parts are read from stdin one after another, so nothing may read ahead of its
# count. GNU head does not; busybox's does, and there dd reads whole 512-byte blocks (a
# tar's length is a multiple of 512).
if [ "$(printf ab | { head -c 1 >/dev/null; cat; })" = b ]; then
  take() { head -c "$1"; }
else
  take() { dd bs=512 count=$(($1 / 512)) iflag=fullblock 2>/dev/null; }
fi
# objects/ is there before tar links into it: a tar that must make a missing parent
# itself is not safe against another adding the same name there at once (GNU tar gives
# up on the link it retries after making the directory); with the parent there, a link
# another sync made first is skipped.
mkdir -p snapshots objects "$t/tree"
n=0 how=
while read -r how len; do
  [ "$how" != end ] || break
  n=$((n + 1))
  take "$len" > "$t/$n.tar"
  [ "$(wc -c < "$t/$n.tar")" -eq "$len" ]
  case $how in
    serial)
      for p in $parts; do wait "$p"; done
      parts=
      tar -x -f "$t/$n.tar" --no-same-owner --skip-old-files
      ;;
    parallel)
      tar -x -f "$t/$n.tar" --no-same-owner --skip-old-files &
      parts="$parts $!"
      ;;
    *) exit 1 ;;
  esac
done
[ "$how" = end ]
for p in $parts; do wait "$p"; done
parts=
# Read-only below the top before it is published; the top after its move (see QUERY).
find "$t/tree" -mindepth 1 -type d -exec chmod 0555 {} +
publish "$t/tree" "$2"
trap - EXIT
if [ ! -e "$t/tree" ] && [ ! -e "$t.tree" ]; then rm -rf -- "$t"; exit 0; fi
# Another sync published the same tree first, or a taken tree is left: 20,000 unlinks
# for a 20,000-file tree, removed after the answer by a process of their own (gc
# removes what a killed one leaves).
# shellcheck disable=SC2016
detached 'for t; do find "$t" -type d -exec chmod u+w {} + 2>/dev/null; rm -rf -- "$t"; done' \
  pikaci-sync-discard "$t" "$t.tree"
"#;

/// Patch, under the shared [`SYNCS_LEASE`]. Args: host dir, snapshot hex, temp id.
/// Stdin: a tar of NUL-separated lists of the paths to remove (every changed path the
/// old tree has: the tree stream skips existing files) and of the directories to open
/// for writing and close again, and `tree.tar`, the tree stream ([`pack`]) of the
/// changed entries of `tmp/ID.tree/`.
pub(crate) const PATCH: &str = r#"set -eu
cd "$1"
exec 9>>leases/syncs
flock -s 9
t="tmp/$3"
trap 'discard "$t"; discard "$t.tree"' EXIT
mkdir -p "$t"
tar -x -f - --no-same-owner
(cd "$t.tree" && xargs -0 -r chmod u+w -- < "../$3/open")
(cd "$t.tree" && xargs -0 -r rm -rf -- < "../$3/remove")
mkdir -p objects
tar -x -f "$t/tree.tar" --no-same-owner --skip-old-files
(cd "$t.tree" && xargs -0 -r chmod 0555 -- < "../$3/close")
chmod u+w "$t.tree"
publish "$t.tree" "$2"
"#;

/// A shared lease, held while stdin stays open. Args: host dir, lease name.
pub(crate) const LEASE: &str = r#"set -eu
mkdir -p "$1/leases"
exec 9>>"$1/leases/$2"
flock -s 9
echo held
exec cat >/dev/null
"#;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The snapshot's directory on the host.
    pub dir: PathBuf,
    pub round_trips: u32,
    pub objects_sent: u64,
    pub bytes_sent: u64,
    /// The older snapshot the host's tree was patched from, if any.
    pub patched_from: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the snapshot to send")]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("cannot build the stream to send")]
    Pack(#[source] std::io::Error),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the host answered `{0}` where pikaci expected `present`, `patch` or `absent`")]
    Protocol(String),
    #[error("cannot take the lease `{name}` on {host}: {why}")]
    Lease {
        host: String,
        name: String,
        why: String,
    },
    #[error("cannot read or create this state dir's owner id in {path}")]
    Owner {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sync to {host} was cancelled")]
    Cancelled { host: String },
}

impl SyncError {
    fn packing(transport: &dyn Transport, error: std::io::Error) -> SyncError {
        if error.get_ref().is_some_and(|e| e.is::<PackCancelled>()) {
            return SyncError::Cancelled {
                host: transport.host(),
            };
        }
        SyncError::Pack(error)
    }
}

/// This state dir's id on hosts, as the owner of what it syncs there (so several state
/// dirs can share one host dir, see [`crate::backend::collect_host`]): made once from
/// the time, the process and the cache path, kept in the cache as `host-owner`.
pub fn owner_id(cache: &Path) -> Result<String, SyncError> {
    use sha2::Digest;
    let path = cache.join("host-owner");
    let io = |source| SyncError::Owner {
        path: path.clone(),
        source,
    };
    let valid = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(text) = std::fs::read_to_string(&path)
        && valid(text.trim())
    {
        return Ok(text.trim().to_string());
    }
    std::fs::create_dir_all(cache).map_err(io)?;
    let seed = format!(
        "{:?} {} {}",
        std::time::SystemTime::now(),
        std::process::id(),
        cache.display()
    );
    let id = snapshot::hex(&sha2::Sha256::digest(seed.as_bytes())[..16]);
    let mut file = tempfile::NamedTempFile::new_in(cache).map_err(io)?;
    file.write_all(format!("{id}\n").as_bytes()).map_err(io)?;
    // Two first syncs at once: the first id written wins, both use it.
    match file.persist_noclobber(&path) {
        Ok(_) => Ok(id),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            Ok(text.trim().to_string())
        }
        Err(e) => Err(io(e.error)),
    }
}

/// Makes the snapshot `snapshot_id` from the local `cache` present under `host_dir`.
pub fn sync(
    transport: &dyn Transport,
    cache: &Path,
    snapshot_id: &str,
    host_dir: &Path,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<SyncStats, SyncError> {
    let hex = snapshot_id.to_string();
    let tree = snapshot::tree(cache, &hex)?;
    let mut stats = SyncStats {
        dir: host_dir.join("snapshots").join(&hex),
        ..SyncStats::default()
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "sync-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        &hex[..16]
    );
    // Streams a packed tar into the host-side `body` (args: host dir, hex, temp id).
    let send = |body: &str, stream: std::fs::File| -> Result<(), SyncError> {
        let argv = host_sh(body, "pikaci-sync")
            .arg(host_dir)
            .arg(&hex)
            .arg(&id);
        transport.run_file(&argv, stream, deadline, cancel)?;
        Ok(())
    };
    let owner = owner_id(cache)?;
    let query = host_sh(QUERY, "pikaci-sync")
        .arg(host_dir)
        .arg(&hex)
        .arg(&id)
        .arg(&owner)
        .args(
            snapshot::recent_trees(cache, PATCH_CANDIDATES + 1)
                .into_iter()
                .filter(|c| *c != hex)
                .take(PATCH_CANDIDATES),
        );
    let answer = transport.run(&query, b"", deadline, cancel)?;
    stats.round_trips += 1;
    let answer = String::from_utf8_lossy(&answer.stdout).trim().to_string();
    let (base, host_has_objects) = match answer.as_str() {
        "present" => return Ok(stats),
        "cold" => (None, false),
        "absent" => (None, true),
        other => match other.strip_prefix("patch ") {
            Some(base) => (Some(base.to_string()), true),
            None => return Err(SyncError::Protocol(other.to_string())),
        },
    };
    // A base whose file list is gone here (a take patched it into a later snapshot
    // since the query) is none: a fresh tree.
    if let Some(base) = base
        && let Ok(old) = snapshot::tree(cache, &base)
    {
        let diff = Diff::between(&old, &tree);
        if diff.changed.len() + diff.removed.len() <= PATCH_LIMIT {
            let packed = pack_patch(cache, &diff, &id, cancel)
                .map_err(|e| SyncError::packing(transport, e))?;
            send(PATCH, packed.stream)?;
            stats.round_trips += 1;
            (stats.objects_sent, stats.bytes_sent) = (packed.objects, packed.bytes);
            stats.patched_from = Some(base);
            return Ok(stats);
        }
        // Too different: a fresh tree (RECEIVE discards the taken one).
    }
    // MISSING's answer must hold until the tree is published: gc on the host collects
    // no object while this lease is held (until the sync returns). A taken tree has a
    // holder on the host already (QUERY), RECEIVE takes the lease itself, and a host
    // with no objects has nothing to lose before it.
    let _syncing = if answer == "absent" {
        Some(lease(transport, host_dir, SYNCS_LEASE, deadline, cancel)?)
    } else {
        None
    };
    let missing = if host_has_objects {
        Some(missing_objects(
            transport, host_dir, &tree, deadline, cancel,
        )?)
    } else {
        None
    };
    stats.round_trips += u32::from(host_has_objects);
    let (stream, len, producer) =
        pack_tree(cache, tree, missing, &id, cancel).map_err(SyncError::Pack)?;
    let receive = host_sh(RECEIVE, "pikaci-sync")
        .arg(host_dir)
        .arg(&hex)
        .arg(&id);
    let sent = transport
        .run_stream(&receive, stream, len, deadline, cancel)
        .map(drop)
        .map_err(SyncError::from);
    // A stream its producer cut short fails on the host too: the producer's error says
    // why, unless it is only the broken pipe of a host that failed first. (After a
    // transport error a producer still under way ends as its pipe closes.)
    if sent.is_err() && !producer.is_finished() {
        return sent.map(|()| stats);
    }
    let packed = match producer.join() {
        Err(_) => Err(SyncError::Pack(std::io::Error::other(
            "the packing thread panicked",
        ))),
        Ok(Err(e)) if sent.is_ok() || e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(SyncError::packing(transport, e))
        }
        Ok(packed) => {
            sent?;
            packed.map_err(SyncError::Pack)
        }
    }?;
    stats.round_trips += 1;
    (stats.objects_sent, stats.bytes_sent) = (packed.objects, packed.bytes);
    Ok(stats)
}

/// The objects of `tree` the host lacks (MISSING).
fn missing_objects(
    transport: &dyn Transport,
    host_dir: &Path,
    tree: &[TreeEntry],
    deadline: Instant,
    cancel: &Cancel,
) -> Result<HashSet<String>, SyncError> {
    let names: Vec<String> = unique_objects(tree).into_iter().collect();
    let missing = host_sh(MISSING, "pikaci-sync").arg(host_dir);
    let answer = transport.run(
        &missing,
        (names.join("\n") + "\n").as_bytes(),
        deadline,
        cancel,
    )?;
    Ok(answer.stdout.lines().map_while(Result::ok).collect())
}

/// Takes a shared lease `leases/<name>` under `host_dir`: on a snapshot's hex, so no
/// other sync patches that tree and no gc removes it while this run uses it; on
/// [`SYNCS_LEASE`], so gc leaves a sync's objects and temporary trees alone. Held until
/// the returned process is dropped (its stdin closes); also released if pikaci dies.
pub fn lease(
    transport: &dyn Transport,
    host_dir: &Path,
    name: &str,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<GroupChild, SyncError> {
    let fail = |why: String| SyncError::Lease {
        host: transport.host(),
        name: name.to_string(),
        why,
    };
    let argv = Argv::new("sh")
        .args(["-c", LEASE, "pikaci-lease"])
        .arg(host_dir)
        .arg(name);
    let mut out = tempfile::tempfile().map_err(|e| fail(e.to_string()))?;
    let mut command = transport.command(&argv);
    command
        .stdin(Stdio::piped())
        .stdout(out.try_clone().map_err(|e| fail(e.to_string()))?)
        .stderr(Stdio::null());
    let mut child = GroupChild::spawn(&mut command, cancel).map_err(|e| fail(e.to_string()))?;
    loop {
        let mut text = String::new();
        out.rewind().map_err(|e| fail(e.to_string()))?;
        std::io::Read::read_to_string(&mut out, &mut text).map_err(|e| fail(e.to_string()))?;
        if text.starts_with("held") {
            return Ok(child);
        }
        let ended = child
            .wait(Instant::now() + Duration::from_millis(10), cancel)
            .map_err(|e| fail(e.to_string()))?;
        match ended {
            crate::exec::Ended::TimedOut if Instant::now() < deadline => {}
            crate::exec::Ended::TimedOut => {
                return Err(fail("no lease within the deadline".into()));
            }
            crate::exec::Ended::Cancelled => return Err(fail("cancelled".into())),
            crate::exec::Ended::Exited(status) => {
                return Err(fail(format!("the lease holder exited ({status})")));
            }
        }
    }
}

/// What turns an older tree into a newer one.
struct Diff<'a> {
    /// Entries that are new or differ, in the new tree's order.
    changed: Vec<&'a TreeEntry>,
    /// Paths of the old tree that must go first: entries and directories the new tree
    /// does not have or has changed (also where a file becomes a directory or back).
    removed: Vec<PathBuf>,
    /// Directories of the old tree to open for writing: the ancestors of changed and
    /// removed paths, the root as `.`.
    open: BTreeSet<PathBuf>,
    /// The same for the new tree, to close again afterwards.
    close: BTreeSet<PathBuf>,
}

impl<'a> Diff<'a> {
    fn between(old: &[TreeEntry], new: &'a [TreeEntry]) -> Diff<'a> {
        let old_kinds: HashMap<&Path, &TreeKind> =
            old.iter().map(|e| (e.path.as_path(), &e.kind)).collect();
        let new_paths: HashSet<&Path> = new.iter().map(|e| e.path.as_path()).collect();
        let changed: Vec<&TreeEntry> = new
            .iter()
            .filter(|e| old_kinds.get(e.path.as_path()) != Some(&&e.kind))
            .collect();
        let dirs_of = |entries: &mut dyn Iterator<Item = &Path>| -> HashSet<PathBuf> {
            entries
                .flat_map(|p| p.ancestors().skip(1))
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect()
        };
        let old_dirs = dirs_of(&mut old.iter().map(|e| e.path.as_path()));
        let new_dirs = dirs_of(&mut new.iter().map(|e| e.path.as_path()));
        // Changed entries the old tree has go too: the tree stream skips existing files
        // (it must not replace an object another sync just added).
        let mut removed: Vec<PathBuf> = old
            .iter()
            .map(|e| e.path.clone())
            .filter(|p| !new_paths.contains(p.as_path()))
            .chain(old_dirs.difference(&new_dirs).cloned())
            .chain(
                changed
                    .iter()
                    .filter(|e| old_kinds.contains_key(e.path.as_path()))
                    .map(|e| e.path.clone()),
            )
            .collect();
        removed.sort();
        removed.dedup();
        // Only paths that are directories: a chmod on a file would change the shared
        // object behind its hard link.
        let root = PathBuf::from(".");
        let mut open = BTreeSet::from([root.clone()]);
        let mut close = BTreeSet::from([root]);
        let touched = changed
            .iter()
            .map(|e| e.path.as_path())
            .chain(removed.iter().map(PathBuf::as_path));
        for ancestor in touched.flat_map(|p| p.ancestors().skip(1)) {
            if old_dirs.contains(ancestor) {
                open.insert(ancestor.to_path_buf());
            }
            if new_dirs.contains(ancestor) {
                close.insert(ancestor.to_path_buf());
            }
        }
        Diff {
            changed,
            removed,
            open,
            close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pack::object_name;
    use super::*;

    #[test]
    fn object_names_match_the_local_store_layout() {
        let hash = "ab".to_string() + &"c".repeat(62);
        assert_eq!(object_name(&hash, true), format!("{hash}-x"));
        let cache = Path::new("/c");
        let local = snapshot::object_path(cache, &hash, true);
        assert_eq!(local, cache.join("objects").join(object_name(&hash, true)));
    }

    #[test]
    fn a_state_dir_keeps_its_owner_id() {
        let cache = tempfile::tempdir().unwrap();
        let id = owner_id(&cache.path().join("cache")).unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(owner_id(&cache.path().join("cache")).unwrap(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(owner_id(other.path()).unwrap(), id);
    }
}
