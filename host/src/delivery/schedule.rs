//! The handle that puts outbox keys on the dispatcher's clock: the
//! pipeline schedules accepted deliveries with it, and an attempt schedules
//! its retry. A separate room, so that the dispatcher and the attempt it
//! runs both use it without importing each other.

use tokio::sync::mpsc;

/// Schedules outbox keys on the running dispatcher.
#[derive(Clone)]
pub struct Schedule {
    tx: mpsc::UnboundedSender<(u64, u64)>,
}

impl Schedule {
    /// A schedule and the receiving end the dispatcher (or a test) reads.
    pub(crate) fn channel() -> (Schedule, mpsc::UnboundedReceiver<(u64, u64)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Schedule { tx }, rx)
    }

    /// Runs `key` at `due_ms` (unix milliseconds; the past means now).
    pub fn at(&self, due_ms: u64, key: u64) {
        // A closed channel means the dispatcher stopped for shutdown; the
        // record is in the outbox and the next start picks it up.
        let _ = self.tx.send((due_ms, key));
    }
}
