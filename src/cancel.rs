//! Run-wide cancellation: SIGINT/SIGTERM set it, waiting jobs wake at once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

type Waker = Box<dyn Fn() + Send>;

/// Cloneable handle; all clones see the same state.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// 0 = running, 1 = cancelled (graceful), 2 = cancelled again (kill at once).
    level: AtomicU8,
    installed: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks everything to stop. A second call means "now": grace periods are skipped.
    pub fn cancel(&self) {
        let level = self.0.level.load(Ordering::SeqCst);
        self.0.level.store((level + 1).min(2), Ordering::SeqCst);
        let wakers = self.0.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for wake in wakers.iter() {
            wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.level.load(Ordering::SeqCst) > 0
    }

    /// True after a second signal: stop without waiting for graceful exits.
    pub fn is_urgent(&self) -> bool {
        self.0.level.load(Ordering::SeqCst) > 1
    }

    /// Calls `wake` on every later `cancel`. Wakers live as long as the token; they must
    /// tolerate being called after the thing they wake has finished.
    pub fn on_cancel(&self, wake: impl Fn() + Send + 'static) {
        let mut wakers = self.0.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.push(Box::new(wake));
    }

    /// Routes SIGINT and SIGTERM to this token (once per process).
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        if self.0.installed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        let cancel = self.clone();
        std::thread::Builder::new()
            .name("pikaci-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    cancel.cancel();
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn cancel_wakes_subscribers_and_escalates() {
        let cancel = Cancel::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        cancel.on_cancel(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!cancel.is_cancelled());
        cancel.cancel();
        assert!(cancel.is_cancelled() && !cancel.is_urgent());
        cancel.clone().cancel();
        assert!(cancel.is_urgent());
        assert_eq!(woken.load(Ordering::SeqCst), 2);
    }
}
