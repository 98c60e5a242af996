//! What an unprivileged user lacks, read from a tool's error text: the Nix daemon's socket,
//! the Incus socket, `/dev/kvm`. Root never meets these, so they surface first for people
//! running pikaci as themselves; each hint names what is missing and how to grant it
//! (docs/privileges.md). `pikaci doctor` reports the same hints.

use std::path::Path;

/// A permission a tool's error says is missing, and how to grant it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hint {
    pub missing: &'static str,
    pub grant: &'static str,
}

pub const NIX_DAEMON_DENIED: Hint = Hint {
    missing: "this user may not use the nix-daemon's socket /nix/var/nix/daemon-socket/socket",
    grant: "add the user to the group that owns /nix/var/nix/daemon-socket (Debian's nix-bin: \
            `sudo usermod -aG nix-users $USER`; NixOS: `nix.settings.allowed-users`), then log in again",
};

pub const NIX_DAEMON_ABSENT: Hint = Hint {
    missing: "no nix-daemon answers on /nix/var/nix/daemon-socket/socket",
    grant: "start it as root (`sudo systemctl start nix-daemon`; without systemd, `sudo nix-daemon &`)",
};

pub const NIX_STORE_DENIED: Hint = Hint {
    missing: "this user cannot write the Nix store and database itself",
    grant: "reach Nix through the nix-daemon: start it as root and set NIX_REMOTE=daemon \
            (multi-user installs do both)",
};

pub const INCUS_DENIED: Hint = Hint {
    missing: "this user may not use the Incus socket (/var/lib/incus/unix.socket)",
    grant: "add the user to the incus-admin group (`sudo usermod -aG incus-admin $USER`, then \
            log in again), or set `sudo = true` under [backends.incus] to run incus through `sudo -n`",
};

pub const KVM_DENIED: Hint = Hint {
    missing: "this user may not open /dev/kvm",
    grant: "add the user to the group that owns /dev/kvm (usually kvm: `sudo usermod -aG kvm $USER`, \
            then log in again)",
};

/// A host's Nix refused store paths copied to it (docs/running.md, "Where things are
/// built"): Nix 2.8 says "lacks a valid signature", newer Nix "lacks a signature by a
/// trusted key".
pub const NIX_UNSIGNED_REFUSED: Hint = Hint {
    missing: "the host's Nix takes unsigned store paths only from root and its `trusted-users`",
    grant: "add the SSH user to `trusted-users` in the host's nix.conf and restart its nix-daemon, \
            or sign the paths where they are built (`secret-key-files`, here or on the build host) with a key the host's `trusted-public-keys` lists",
};

/// The nix-daemon took the connection and then dropped it: Nix 2.8 shows only "reading
/// from file: Connection reset by peer"; the daemon's log has its own reason, such as
/// "creating directory '/nix/store/.links': Read-only file system".
pub const NIX_DAEMON_DROPPED: Hint = Hint {
    missing: "the nix-daemon closed the connection without saying why (on the host that ran the command)",
    grant: "read the daemon's log there (`journalctl -u nix-daemon`); a read-only or full store, \
            or a broken nix.conf, fails every connection this way",
};

/// The hint for the first permission failure `text` shows, if any.
pub fn for_text(text: &str) -> Option<Hint> {
    let denied = text.contains("Permission denied") || text.contains("permission denied");
    let nix_socket = text.contains("/nix/var/nix/daemon-socket/socket");
    if nix_socket && denied {
        return Some(NIX_DAEMON_DENIED);
    }
    if nix_socket && (text.contains("No such file") || text.contains("Connection refused")) {
        return Some(NIX_DAEMON_ABSENT);
    }
    // Nix run without the daemon by a user: it fails on the first of its state files.
    let not_permitted = denied || text.contains("Operation not permitted");
    if not_permitted && (text.contains("/nix/var/nix/") || text.contains("/nix/store/.links")) {
        return Some(NIX_STORE_DENIED);
    }
    let incus_socket = text.contains("permissions to talk to the incus daemon")
        || (denied && text.contains("/var/lib/incus/unix.socket"));
    if incus_socket {
        return Some(INCUS_DENIED);
    }
    if text.contains("lacks a valid signature")
        || text.contains("lacks a signature by a trusted key")
    {
        return Some(NIX_UNSIGNED_REFUSED);
    }
    if text.contains("cannot open connection to remote store 'daemon'")
        && text.contains("Connection reset by peer")
    {
        return Some(NIX_DAEMON_DROPPED);
    }
    if text.contains("Could not access KVM kernel module") || (denied && text.contains("/dev/kvm"))
    {
        return Some(KVM_DENIED);
    }
    None
}

/// The first directory of the state dir `root` that this user cannot create entries in
/// (`root`, `runs/`, `cache/`, `cache/snapshots/`, or the nearest existing parent of one
/// not made yet), with the hint: typically a run as root made them root's.
pub fn unwritable_state_dir(root: &Path) -> Option<String> {
    let dirs = [
        root.to_path_buf(),
        root.join("runs"),
        root.join("cache"),
        root.join("cache/snapshots"),
    ];
    let blocked = dirs.iter().find_map(|dir| {
        let existing = dir.ancestors().find(|d| d.exists())?;
        let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
        rustix::fs::access(existing, access)
            .is_err()
            .then(|| existing.to_path_buf())
    })?;
    Some(format!(
        "this user cannot write {blocked}\n\
         hint: make {root} the user's (`sudo chown -R $USER {root}`, when a run as root made it), \
         or choose another state dir with --state-dir or PIKACI_STATE_DIR",
        blocked = blocked.display(),
        root = root.display(),
    ))
}

impl Hint {
    /// The line pikaci adds under an error.
    pub fn line(&self) -> String {
        format!("hint: {}; {}", self.missing, self.grant)
    }
}

/// `message`, with the hint for the permission it shows missing on a line of its own.
pub fn with_hint(message: String) -> String {
    match for_text(&message) {
        Some(hint) if !message.contains("\nhint: ") => format!("{message}\n{}", hint.line()),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error texts of the real tools, as an unprivileged user meets them here (Nix
    /// 2.8, Incus 6.0, qemu 10).
    #[test]
    fn names_what_is_missing_in_real_error_texts() {
        let cases = [
            "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Permission denied",
            "error: getting status of /nix/var/nix/daemon-socket/socket: Permission denied",
            "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': No such file or directory",
            "error: opening lock file '/nix/var/nix/db/big-lock': Permission denied",
            "error: could not set permissions on '/nix/var/nix/profiles/per-user' to 755: Operation not permitted",
            "Error: You don't have the needed permissions to talk to the incus daemon (socket path: /var/lib/incus/unix.socket)",
            "qemu-system-x86_64: Could not access KVM kernel module: Permission denied",
            "error: builder for '/nix/store/x.drv' failed with exit code 1",
            "error: cannot add path '/nix/store/0c2kzyw3wjsxvzpahx6ix3xp4mg1hmjd-dep' because it lacks a valid signature",
            "error: cannot open connection to remote store 'daemon': error: reading from file: Connection reset by peer",
        ];
        let hints: Vec<String> = cases
            .iter()
            .map(|text| for_text(text).map_or("none".into(), |h| h.line()))
            .collect();
        insta::assert_snapshot!(hints.join("\n"));
    }

    #[test]
    fn adds_the_hint_once() {
        let text = "incus launch failed: Error: You don't have the needed permissions to talk to the incus daemon".to_string();
        let once = with_hint(text);
        assert_eq!(once.matches("\nhint: ").count(), 1);
        assert_eq!(with_hint(once.clone()), once);
        assert_eq!(with_hint("job failed".into()), "job failed");
    }
}
