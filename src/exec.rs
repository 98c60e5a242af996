//! Running a command in its own process group with a deadline.
//!
//! The whole group is the unit of cleanup: at the deadline or on cancellation it gets
//! SIGTERM, a grace period, then SIGKILL; and whatever is left of it when the leader
//! exits (background children) is killed too, so no job process outlives its job.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::cancel::Cancel;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

enum Wake {
    Exited(io::Result<ExitStatus>),
    Cancelled,
}

/// A spawned process group leader. Dropping it kills the group.
pub struct GroupChild {
    pgid: Pid,
    wakes: Receiver<Wake>,
    status: Option<ExitStatus>,
    /// The write end of a piped stdin, held until [`GroupChild::close_stdin`] or drop.
    stdin: Option<ChildStdin>,
    /// A second cancellation cuts a grace period short.
    cancel: Cancel,
    /// The leader is a [`crate::reaper`]: it is asked to end its descendants (which may
    /// have left the group) instead of being killed with them.
    reaper: bool,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group, watched by a thread so that
    /// waiting needs no polling.
    pub fn spawn(command: &mut Command, cancel: &Cancel) -> io::Result<GroupChild> {
        let mut child: Child = command.process_group(0).spawn()?;
        let stdin = child.stdin.take();
        let pgid = Pid::from_raw(child.id() as i32)
            .ok_or_else(|| io::Error::other("spawned process has pid 0"))?;
        let (tx, wakes) = mpsc::channel();
        let exit_tx = tx.clone();
        std::thread::Builder::new()
            .name("pikaci-wait".into())
            .spawn(move || {
                let _ = exit_tx.send(Wake::Exited(child.wait()));
            })?;
        cancel.on_cancel(move || {
            let _ = tx.send(Wake::Cancelled);
        });
        Ok(GroupChild {
            pgid,
            wakes,
            status: None,
            stdin,
            cancel: cancel.clone(),
            reaper: false,
        })
    }

    /// Marks the leader as a [`crate::reaper`] (spawned as `pikaci __pikaci-reap …`).
    pub fn with_reaper(mut self) -> GroupChild {
        self.reaper = true;
        self
    }

    /// Closes a piped stdin: the child reads EOF.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw_nonzero().get()
    }

    /// Waits until the leader exits, `deadline` passes, or the run is cancelled.
    pub fn wait(&mut self, deadline: Instant, cancel: &Cancel) -> io::Result<Ended> {
        if let Some(status) = self.status {
            return Ok(Ended::Exited(status));
        }
        loop {
            if cancel.is_cancelled() {
                return Ok(Ended::Cancelled);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wakes.recv_timeout(left) {
                Ok(Wake::Exited(status)) => {
                    let status = status?;
                    self.status = Some(status);
                    self.kill_group(Signal::KILL);
                    return Ok(Ended::Exited(status));
                }
                Ok(Wake::Cancelled) => continue,
                Err(RecvTimeoutError::Timeout) => return Ok(Ended::TimedOut),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(
                        "lost the thread waiting for the job process",
                    ));
                }
            }
        }
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL.
    /// A second cancellation (Ctrl-C again) during the grace period ends it at once.
    /// Returns the leader's exit status once it has been reaped.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.kill_group(Signal::TERM);
            let deadline = Instant::now() + grace;
            self.await_exit(deadline, true);
        }
        if self.reaper && self.status.is_none() {
            // The reaper kills its descendants and exits; killing it instead would
            // orphan those that left the group.
            self.signal_leader(crate::reaper::KILL_NOW);
            self.await_exit(Instant::now() + Duration::from_secs(10), false);
        }
        self.kill_group(Signal::KILL);
        if self.status.is_none() {
            // SIGKILL cannot be ignored; the leader is gone within moments.
            self.await_exit(Instant::now() + Duration::from_secs(10), false);
        }
        self.status
    }

    /// Until the leader exits or `deadline`; with `urgent_ends`, also until the run is
    /// cancelled urgently.
    fn await_exit(&mut self, deadline: Instant, urgent_ends: bool) {
        while self.status.is_none() {
            if urgent_ends && self.cancel.is_urgent() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wakes.recv_timeout(left) {
                Ok(Wake::Exited(status)) => self.status = status.ok(),
                Ok(Wake::Cancelled) => continue,
                Err(_) => return,
            }
        }
    }

    fn signal_leader(&self, signal: Signal) {
        let _ = rustix::process::kill_process(self.pgid, signal);
    }

    fn kill_group(&self, signal: Signal) {
        // ESRCH means the group is already empty, which is what we want.
        let _ = kill_process_group(self.pgid, signal);
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.reaper && self.status.is_none() {
            // It ends the job's processes and exits; the waiting thread reaps it.
            self.signal_leader(crate::reaper::KILL_NOW);
        } else {
            self.kill_group(Signal::KILL);
        }
    }
}

/// Every process's (pid, parent pid), read from `/proc`.
pub fn process_parents() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command name: state ppid ...
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Pids of the processes of group `pgid` that are still running. Zombies do not count:
/// they are dead and only wait for their parent (often init) to reap them.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the parenthesised command name: state ppid pgrp ...
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
            group == Some(pgid) && state != Some("Z") && state != Some("X")
        })
        .collect()
}

/// Waits up to `within` for group `pgid` to have no live member, and returns the pids
/// still live then. A kill is delivered asynchronously: a killed process runs on until
/// the kernel schedules its exit, which on a loaded machine can be well after `kill`
/// returned, so whoever judges a killed group gives it that moment.
pub fn live_group_members_after(pgid: i32, within: Duration) -> Vec<i32> {
    let deadline = Instant::now() + within;
    loop {
        let live = live_group_members(pgid);
        if live.is_empty() || Instant::now() >= deadline {
            return live;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(script: &str) -> Command {
        let mut c = Command::new("bash");
        c.args(["--noprofile", "--norc", "-c", script]);
        c
    }

    fn assert_group_gone(pgid: i32) {
        assert_eq!(
            live_group_members_after(pgid, Duration::from_secs(5)),
            Vec::<i32>::new(),
            "group {pgid} still runs"
        );
    }

    #[test]
    fn exit_status_is_reported() {
        let cancel = Cancel::new();
        let mut child = GroupChild::spawn(&mut bash("exit 3"), &cancel).unwrap();
        let ended = child
            .wait(Instant::now() + Duration::from_secs(10), &cancel)
            .unwrap();
        let Ended::Exited(status) = ended else {
            panic!("{ended:?}")
        };
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn deadline_then_terminate_kills_whole_group() {
        let cancel = Cancel::new();
        let mut child = GroupChild::spawn(&mut bash("sleep 100 & sleep 100"), &cancel).unwrap();
        let pgid = child.pgid();
        let ended = child
            .wait(Instant::now() + Duration::from_millis(200), &cancel)
            .unwrap();
        assert_eq!(ended, Ended::TimedOut);
        let status = child
            .terminate(Duration::from_secs(2))
            .expect("leader reaped");
        assert!(status.code().is_none(), "killed by a signal");
        assert_group_gone(pgid);
    }

    #[test]
    fn background_children_die_when_leader_exits() {
        let cancel = Cancel::new();
        let mut child = GroupChild::spawn(&mut bash("sleep 100 & exit 0"), &cancel).unwrap();
        let pgid = child.pgid();
        child
            .wait(Instant::now() + Duration::from_secs(10), &cancel)
            .unwrap();
        assert_group_gone(pgid);
    }

    #[test]
    fn cancel_wakes_a_waiting_job() {
        let cancel = Cancel::new();
        let mut child = GroupChild::spawn(&mut bash("sleep 100"), &cancel).unwrap();
        let trigger = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            trigger.cancel();
        });
        let started = Instant::now();
        let ended = child
            .wait(Instant::now() + Duration::from_secs(60), &cancel)
            .unwrap();
        assert_eq!(ended, Ended::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(30));
        child.terminate(Duration::from_secs(1));
    }

    #[test]
    fn second_cancel_cuts_the_grace_period_short() {
        let cancel = Cancel::new();
        let script = "trap '' TERM; sleep 100 & wait";
        let mut child = GroupChild::spawn(&mut bash(script), &cancel).unwrap();
        let pgid = child.pgid();
        std::thread::sleep(Duration::from_millis(200)); // the trap is set
        cancel.cancel();
        let again = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            again.cancel();
        });
        let started = Instant::now();
        child.terminate(Duration::from_secs(30));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the second cancellation did not end the grace period: {:?}",
            started.elapsed()
        );
        assert_group_gone(pgid);
    }
}
