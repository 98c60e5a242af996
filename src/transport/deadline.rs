//! How long one step on a host may take: the one policy every wrapper around
//! [`super::Transport::run`] draws its deadline from, by kind of step. A step that
//! overruns is killed with its process group and is the job's (or command's) error; the
//! job's own `timeout` bounds only its command, never these.

use std::time::{Duration, Instant};

/// The kinds of host step, each with its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A check of `pikaci doctor`: a healthy host answers in a moment, and doctor must
    /// report an unwell one without waiting as long as a run would.
    Probe,
    /// A small bookkeeping command: mkdir, a lease, reading facts, an Incus API call.
    Bookkeeping,
    /// Streaming a job's workspace into an Incus guest.
    Upload,
    /// Fetching a job's artifacts back from its guest.
    Collect,
    /// Syncing the snapshot to the host.
    Sync,
    /// Importing an image into Incus (hashing and unpacking a few GiB).
    Import,
    /// A Nix build: a runner, an input, an image.
    Build,
}

impl Step {
    pub const fn duration(self) -> Duration {
        let secs = match self {
            Step::Probe => 20,
            Step::Bookkeeping => 60,
            Step::Upload => 10 * 60,
            Step::Collect => 10 * 60,
            Step::Sync => 30 * 60,
            Step::Import => 30 * 60,
            Step::Build => 60 * 60,
        };
        Duration::from_secs(secs)
    }

    /// The deadline of a step of this kind that starts now.
    pub fn from_now(self) -> Instant {
        Instant::now() + self.duration()
    }
}

#[cfg(test)]
mod tests {
    use super::Step;

    /// The order a reader relies on: a probe is shorter than bookkeeping, which is shorter
    /// than any transfer, which is shorter than a build.
    #[test]
    fn deadlines_grow_with_the_kind_of_step() {
        let order = [
            Step::Probe,
            Step::Bookkeeping,
            Step::Upload,
            Step::Sync,
            Step::Build,
        ];
        for pair in order.windows(2) {
            assert!(pair[0].duration() < pair[1].duration(), "{pair:?}");
        }
        assert_eq!(Step::Collect.duration(), Step::Upload.duration());
        assert_eq!(Step::Import.duration(), Step::Sync.duration());
    }
}
