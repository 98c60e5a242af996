//! A host job's workspace mount, made by its reaper ([`crate::reaper`]) before it starts
//! the job: a mount namespace of the job's own in which the snapshot (or a writable job's
//! private copy) is bind-mounted onto an empty directory outside the worktree, read-only
//! unless the job is writable. The job inherits it.
//!
//! Root gets the mount namespace directly. Another user gets it inside a user namespace
//! that maps it to root (so it may mount); the job itself then runs under
//! `unshare --user --map-user --map-group`, a nested user namespace mapping it back to its
//! own uid and gid, so it runs as the user it is. That is what `unshare --mount` and
//! `mount --bind -o ro` in a shell did, without starting them for every job. The reaper
//! stays in the first namespace, where it may unmount the workspace again before it
//! removes the job's directory.
//!
//! Entering a user namespace needs a process of one thread: the reaper, before it starts
//! anything.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

/// The reaper's argument that starts a workspace mount's (see [`WorkspaceMount::args`]).
pub const MOUNT_ARG: &str = "--mount";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    /// The uid and gid to map back to, for a user other than root.
    pub user: Option<(u32, u32)>,
}

impl WorkspaceMount {
    /// As the reaper's arguments: `--mount ro|rw SOURCE TARGET [UID GID]` (no uid and gid
    /// for root), ended by `--`.
    pub fn args(&self) -> Vec<OsString> {
        let mode = if self.read_only { "ro" } else { "rw" };
        let mut args: Vec<OsString> = vec![MOUNT_ARG.into(), mode.into()];
        args.extend([self.source.clone().into(), self.target.clone().into()]);
        if let Some((uid, gid)) = self.user {
            args.extend([uid.to_string().into(), gid.to_string().into()]);
        }
        args.push("--".into());
        args
    }

    /// Reads what [`WorkspaceMount::args`] wrote, after `--mount`, up to and with `--`.
    pub fn parse(args: &mut impl Iterator<Item = OsString>) -> Result<WorkspaceMount, String> {
        let mut words = Vec::new();
        for arg in args.by_ref() {
            if arg == "--" {
                break;
            }
            words.push(arg);
        }
        let number = |word: &OsString| {
            word.to_str()
                .and_then(|w| w.parse::<u32>().ok())
                .ok_or_else(|| format!("not a uid or gid: {}", word.to_string_lossy()))
        };
        let (mode, source, target, user) = match words.as_slice() {
            [mode, source, target] => (mode, source, target, None),
            [mode, source, target, uid, gid] => {
                (mode, source, target, Some((number(uid)?, number(gid)?)))
            }
            _ => {
                return Err(format!(
                    "{MOUNT_ARG}: expected ro|rw SOURCE TARGET [UID GID]"
                ));
            }
        };
        let read_only = match mode.to_str() {
            Some("ro") => true,
            Some("rw") => false,
            _ => return Err(format!("{MOUNT_ARG}: the mode is ro or rw")),
        };
        Ok(WorkspaceMount {
            source: source.into(),
            target: target.into(),
            read_only,
            user,
        })
    }

    /// Enters the namespaces, mounts the workspace and changes into it. Only in a process
    /// of one thread (the reaper, before it starts the job).
    pub fn enter(&self) -> io::Result<()> {
        if let Some((uid, gid)) = self.user {
            unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?;
            map_ids(&format!("0 {uid} 1"), &format!("0 {gid} 1"))?;
        } else {
            unshare(UnshareFlags::NEWNS)?;
        }
        // Nothing mounted here reaches the machine's namespace, nor the other way.
        let private = MountPropagationFlags::PRIVATE | MountPropagationFlags::REC;
        rustix::mount::mount_change("/", private)?;
        rustix::mount::mount_bind(&self.source, &self.target)?;
        if self.read_only {
            self.remount_read_only()?;
        }
        // The directory itself was the cwd; the mount is on it.
        rustix::process::chdir(&self.target)?;
        Ok(())
    }

    /// Unmounts the workspace (so the job's directory can be removed, not what was on it).
    pub fn leave(&self) -> io::Result<()> {
        rustix::process::chdir("/")?;
        rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH)?;
        Ok(())
    }

    /// What runs the job as the user again, for a user other than root ([`as_user_argv`]).
    pub fn as_user_argv(&self) -> Vec<OsString> {
        self.user
            .map_or_else(Vec::new, |(uid, gid)| as_user_argv(uid, gid))
    }

    /// A bind mount takes its flags from the mount it came from, and within a user
    /// namespace those (nosuid, nodev, noexec, atime) are locked: the remount must keep
    /// them.
    fn remount_read_only(&self) -> io::Result<()> {
        let kept = rustix::fs::statvfs(&self.target)?.f_flag;
        let mut flags = MountFlags::BIND | MountFlags::RDONLY;
        for (has, keep) in [
            (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
            (StatVfsMountFlags::NODEV, MountFlags::NODEV),
            (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
            (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
            (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
            (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
        ] {
            if kept.contains(has) {
                flags |= keep;
            }
        }
        rustix::mount::mount_remount(&self.target, flags, "")?;
        Ok(())
    }
}

/// `unshare --user --map-user=UID --map-group=GID --`: inside the namespace that maps
/// this user to root, a nested one mapping it back.
pub fn as_user_argv(uid: u32, gid: u32) -> Vec<OsString> {
    ["unshare".into(), "--user".into()]
        .into_iter()
        .chain([
            format!("--map-user={uid}").into(),
            format!("--map-group={gid}").into(),
            "--".into(),
        ])
        .collect()
}

fn unshare(flags: UnshareFlags) -> io::Result<()> {
    // Deprecated for `unshare_unsafe` because of the FILES flag (a thread left with a
    // file table it cannot see); without it, and in a process of one thread, it is safe.
    #[allow(deprecated)]
    rustix::thread::unshare(flags)?;
    Ok(())
}

/// Maps this process's ids in the user namespace it just entered (`setgroups` denied
/// first, which an unprivileged gid map needs).
fn map_ids(uid_map: &str, gid_map: &str) -> io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", uid_map)?;
    std::fs::write("/proc/self/gid_map", gid_map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_bad_ones_are_refused() {
        for user in [None, Some((1500, 100))] {
            let mount = WorkspaceMount {
                source: "/repo/.pikaci/cache/snapshots/ab".into(),
                target: "/tmp/pikaci-job-x/workspace".into(),
                read_only: user.is_some(),
                user,
            };
            let mut args = mount.args().into_iter().chain(["bash".into()]);
            assert_eq!(args.next().unwrap(), MOUNT_ARG);
            assert_eq!(WorkspaceMount::parse(&mut args), Ok(mount));
            assert_eq!(args.next().unwrap(), "bash", "what follows `--` is left");
        }
        for bad in [
            &["ro", "/a"][..],
            &["rx", "/a", "/b"],
            &["ro", "/a", "/b", "x", "1"],
        ] {
            let mut args = bad.iter().map(OsString::from);
            assert!(WorkspaceMount::parse(&mut args).is_err(), "{bad:?}");
        }
    }
}
