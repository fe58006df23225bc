//! How many records the outbox and DLQ trees hold, kept beside them for
//! `/metrics`. sled 0.34's `Tree::len` reads every record: a /metrics
//! scrape behind a backlog of 100k deliveries walked them all, paged them
//! into memory (RSS 210 -> 360 MB) and took CPU from the deliveries.
//! Counted once at open, then moved by each write from what the write
//! replaced or removed.

use std::sync::atomic::{AtomicU64, Ordering};

/// The two counts.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    outbox: AtomicU64,
    dlq: AtomicU64,
}

impl Counts {
    /// Counts as found at open.
    pub(crate) fn new(outbox: u64, dlq: u64) -> Counts {
        Counts {
            outbox: AtomicU64::new(outbox),
            dlq: AtomicU64::new(dlq),
        }
    }

    /// Books one write to a tree: `added` records that did not exist before,
    /// `removed` that did.
    pub(crate) fn outbox(&self, added: u64, removed: u64) {
        Self::shift(&self.outbox, added, removed);
    }

    /// See [`Counts::outbox`].
    pub(crate) fn dlq(&self, added: u64, removed: u64) {
        Self::shift(&self.dlq, added, removed);
    }

    /// Pending deliveries.
    pub(crate) fn outbox_len(&self) -> usize {
        self.outbox.load(Ordering::Relaxed) as usize
    }

    /// Entries in the DLQ.
    pub(crate) fn dlq_len(&self) -> usize {
        self.dlq.load(Ordering::Relaxed) as usize
    }

    fn shift(count: &AtomicU64, added: u64, removed: u64) {
        if added > 0 {
            count.fetch_add(added, Ordering::Relaxed);
        }
        if removed > 0 {
            // Never below zero, whatever the order of concurrent writes.
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(removed))
            });
        }
    }
}

/// 1 when an insert created a record (it replaced nothing), else 0.
pub(crate) fn created<T>(previous: &Option<T>) -> u64 {
    u64::from(previous.is_none())
}

/// 1 when a removal removed a record, else 0.
pub(crate) fn existed<T>(previous: &Option<T>) -> u64 {
    u64::from(previous.is_some())
}
