//! The per-job reaper of the host backend:
//! `pikaci __pikaci-reap [--mount ro|rw SOURCE TARGET [UID GID]] -- PROGRAM ARGS…`,
//! which starts the job in its workspace mount ([`crate::namespaces`]) when given one.
//!
//! A host job's processes can leave its process group (`setsid`), and a job outlives a
//! pikaci killed with SIGKILL. The reaper closes both holes without privileges: it makes
//! itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so every orphan of the job —
//! double-forked, `setsid` or not — is re-parented to it rather than to init, and it asks
//! the kernel for a signal when pikaci dies (`PR_SET_PDEATHSIG`). It ends every
//! descendant when the job's command exits, when pikaci says so, or when pikaci dies,
//! then exits the way the command did.
//!
//! Signals it understands (from pikaci's [`crate::exec::GroupChild`]):
//! SIGTERM / SIGINT / SIGHUP — pass SIGTERM to every descendant (the graceful stop);
//! SIGUSR1 — SIGKILL every descendant now (also the parent-death signal).

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};

use crate::namespaces::{MOUNT_ARG, WorkspaceMount};

/// The first argument that turns the `pikaci` binary into a reaper.
pub const REAP_ARG: &str = "__pikaci-reap";
/// Environment variable with the pid of the pikaci that started the reaper: if it is not
/// the reaper's parent by the time the death signal is armed, pikaci is already gone.
pub const PARENT_ENV: &str = "PIKACI_REAPER_PARENT";
/// Environment variable naming the job's directory under the temp dir, removed once
/// every process is gone (pikaci removes it too, unless it was killed).
pub const SCRATCH_ENV: &str = "PIKACI_REAPER_SCRATCH";
/// The signal that means "kill everything now".
pub const KILL_NOW: Signal = Signal::USR1;

/// Runs the reaper if the process was started as one; returns its exit code.
pub fn main_if_invoked() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != REAP_ARG {
        return None;
    }
    let mut args = args.peekable();
    let mount = match args.next_if(|a| a == MOUNT_ARG) {
        Some(_) => match WorkspaceMount::parse(&mut args) {
            Ok(mount) => Some(mount),
            Err(e) => {
                eprintln!("pikaci reaper: {e}");
                return Some(127);
            }
        },
        None => None,
    };
    let rest: Vec<OsString> = args.skip_while(|a| a == "--").collect();
    Some(reap(&rest, mount.as_ref()))
}

fn reap(argv: &[OsString], mount: Option<&WorkspaceMount>) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("pikaci reaper: no command to run");
        return 127;
    };
    // First: a user namespace can only be entered while this process has one thread.
    if let Some(mount) = mount
        && let Err(e) = mount.enter()
    {
        eprintln!(
            "pikaci reaper: cannot mount {} on {} in a namespace of the job's own: {e}",
            mount.source.display(),
            mount.target.display()
        );
        return 127;
    }
    if let Err(e) = arm() {
        eprintln!("pikaci reaper: cannot watch the job's processes: {e}");
        return 127;
    }
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
    ]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("pikaci reaper: cannot handle signals: {e}");
            return 127;
        }
    };
    if parent_is_gone() {
        return 127;
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove(PARENT_ENV)
        .env_remove(SCRATCH_ENV);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "pikaci reaper: cannot start {}: {e}",
                program.to_string_lossy()
            );
            return 127;
        }
    };
    let main = Pid::from_raw(child.id() as i32);
    forward_signals(signals);
    let status = wait_for(main);
    end_all_descendants();
    // The job's directory, not what is mounted on it: unmounted first, or left alone.
    let unmounted = mount.is_none_or(|m| m.leave().is_ok());
    if let Some(scratch) = std::env::var_os(SCRATCH_ENV)
        && unmounted
    {
        let _ = crate::state::remove_tree(std::path::Path::new(&scratch));
    }
    exit_like(status)
}

/// Subreaper first, so no orphan can slip past; then the death signal.
fn arm() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    rustix::process::set_parent_process_death_signal(Some(KILL_NOW))?;
    Ok(())
}

/// True when the pikaci that started us died before the death signal was armed.
fn parent_is_gone() -> bool {
    let expected = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    match expected {
        Some(expected) => parent != Some(expected),
        None => parent.is_none_or(|p| p == 1),
    }
}

fn forward_signals(mut signals: signal_hook::iterator::Signals) {
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let signal = if signal == signal_hook::consts::SIGUSR1 {
                Signal::KILL
            } else {
                Signal::TERM
            };
            signal_descendants(signal);
        }
    });
}

/// Reaps children (orphans included) until `main` has exited; returns its wait status.
fn wait_for(main: Option<Pid>) -> Option<rustix::process::WaitStatus> {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if Some(pid) == main => return Some(status),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// SIGKILL to every descendant and reap them, until none is left. A process that forks
/// while it is being killed leaves an orphan, which comes to us: so repeat until
/// `wait` says there are no children. With no child there is no descendant either
/// (each is a child's, or an orphan given to us), so a job that left nothing behind
/// costs no walk of `/proc`.
fn end_all_descendants() {
    loop {
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return, // ECHILD: nobody left
            }
        }
        signal_descendants(Signal::KILL);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal_descendants(signal: Signal) {
    for pid in descendants(rustix::process::getpid().as_raw_nonzero().get()) {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Every process whose chain of parents reaches `root`, read from `/proc`.
pub fn descendants(root: i32) -> Vec<i32> {
    let parents = crate::exec::process_parents();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Ends this process as the job's command ended: same exit code, or the same signal.
fn exit_like(status: Option<rustix::process::WaitStatus>) -> i32 {
    let Some(status) = status else {
        return 127;
    };
    if let Some(code) = status.exit_status() {
        return code;
    }
    if let Some(signal) = status.terminating_signal() {
        let _ = signal_hook::low_level::emulate_default_handler(signal);
        return 128 + signal;
    }
    127
}
