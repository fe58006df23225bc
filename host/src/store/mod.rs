//! Storage: everything that must survive a restart, behind one interface.
//!
//! In: the deliveries of accepted events (the pipeline), attempts and their
//! outcomes (the dispatcher), dead letters, source cursors. Out: the same
//! records read back, and the durability the rest of the host relies on:
//! a source is answered only after [`Store::write`] has been followed by
//! [`Store::flush`].
//!
//! Callers see [`Store`], a cheap handle to clone, and the record types it
//! speaks ([`Delivery`], [`DeadLetter`], [`Filter`], ...). Which backend
//! keeps them is the store's business: today the embedded sled database
//! (`sled/`), for one process. A backend is a variant of `Backend`, so a
//! call costs one `match` and no allocation, and a new backend touches
//! nothing outside `store/`. Methods that a networked backend would wait on
//! are `async`; sled's answer at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use delivery::Routing;
pub use delivery::{Attempt, Delivery, Payload};
pub use error::StoreError;
pub use letter::{DeadLetter, Failure, Filter, Summary};

mod delivery;
mod error;
mod letter;
mod record;
pub mod redact;
mod sled;

/// Where the database lives and what it may take of the machine
/// (`[storage]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// sled's page cache; bounded so that a large backlog stays on disk.
    pub cache_capacity_bytes: u64,
    /// Free space kept on the filesystem; under it new events are refused
    /// (0: no reserve).
    pub min_free_bytes: u64,
}

/// The storage, shared by every stage; clones share one database.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

/// The implementations of the storage.
enum Backend {
    /// One process, one embedded database.
    Sled(sled::Database),
}

impl Store {
    /// Opens (or creates) the database; fails if another process has it
    /// open ([`StoreError::is_locked`]).
    pub async fn open(settings: &Settings) -> Result<Store, StoreError> {
        let database = sled::Database::open(
            &settings.path,
            settings.cache_capacity_bytes,
            settings.min_free_bytes,
        )?;
        Ok(Store {
            backend: Arc::new(Backend::Sled(database)),
        })
    }

    /// Ok when new work would be taken: there is room above the reserve
    /// and a write goes through (the readiness probe).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.check_writable(),
        }
    }

    /// Waits until everything written so far is durable. Concurrent callers
    /// share one flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.flush().await,
        }
    }

    // The outbox.

    /// Stores the deliveries of one accepted batch, and those that died
    /// before their first attempt (straight into the DLQ); durable after
    /// the next [`Store::flush`]. Deliveries of one observer and event,
    /// given consecutively, are chained so that they run in order. Returns
    /// the keys of the live ones, which may be attempted before the flush.
    pub async fn write(
        &self,
        deliveries: Vec<Delivery>,
        dead: Vec<(Delivery, String)>,
    ) -> Result<Vec<u64>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.write(deliveries, dead),
        }
    }

    /// Reads one pending delivery; `None` if it was completed or moved.
    pub async fn get(&self, key: u64) -> Result<Option<Delivery>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.get(key),
        }
    }

    /// What the dispatcher routes a pending delivery by; `None` if it was
    /// completed or moved. Cheaper than [`Store::get`]: it builds neither
    /// the event nor the request.
    pub(crate) async fn routing(&self, key: u64) -> Result<Option<Routing>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.routing(key),
        }
    }

    /// Every pending delivery that may run, with its due time, for the
    /// dispatcher at start-up; releases held deliveries whose predecessor
    /// is done (a crash between the two writes must not leave a chain stuck).
    pub async fn pending(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.pending(),
        }
    }

    /// Lets a held delivery run; returns its due time if it exists.
    pub async fn release(&self, key: u64) -> Result<Option<u64>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.release(key),
        }
    }

    /// Records a failed attempt and the next due time.
    pub async fn reschedule(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.reschedule(key, delivery),
        }
    }

    /// Removes a delivered delivery.
    pub async fn complete(&self, key: u64) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.complete(key),
        }
    }

    /// Moves a dead delivery into the DLQ, in one atomic step.
    pub async fn bury(
        &self,
        key: u64,
        delivery: Delivery,
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.bury(key, delivery, reason),
        }
    }

    /// Number of pending deliveries.
    pub async fn outbox_len(&self) -> usize {
        match &*self.backend {
            Backend::Sled(db) => db.outbox_len(),
        }
    }

    // The DLQ.

    /// Records input that never became an event (unknown envelope) in the
    /// DLQ, durably.
    pub async fn reject_input(
        &self,
        source: &str,
        raw: &[u8],
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.reject_input(source, raw, reason).await,
        }
    }

    /// Entries matching the filter, oldest first.
    pub async fn dlq_list(&self, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_list(filter),
        }
    }

    /// One entry.
    pub async fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_get(id),
        }
    }

    /// Removes matching entries, durably; returns how many.
    pub async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_purge(filter).await,
        }
    }

    /// Puts a DLQ entry back into the outbox, due now, with a fresh attempt
    /// budget (its earlier attempts move to `earlier_attempts`), in one
    /// atomic step. Returns its key.
    pub async fn requeue(&self, id: &str) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.requeue(id),
        }
    }

    /// Puts every matching delivery back into the outbox (rejected input
    /// cannot be retried and is skipped), the n-th due `n * spacing` from
    /// now; returns the new outbox keys with their due times.
    pub async fn requeue_all(
        &self,
        filter: &Filter,
        spacing: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.requeue_all(filter, spacing),
        }
    }

    /// Enforces `retention` (entries older are deleted) and `max_bytes`
    /// (the oldest entries go first until the DLQ fits); returns how many
    /// were deleted.
    pub async fn dlq_enforce(
        &self,
        retention: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_enforce(retention, max_bytes),
        }
    }

    /// Number of entries in the DLQ.
    pub async fn dlq_len(&self) -> usize {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_len(),
        }
    }

    // Source cursors.

    /// The position `source` saved last, as it wrote it.
    pub async fn source_cursor(&self, source: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.source_cursor(source),
        }
    }

    /// Saves `source`'s position, durably. Called only after the deliveries
    /// of what it read are durable.
    pub async fn save_source_cursor(
        &self,
        source: &str,
        position: &[u8],
    ) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.save_source_cursor(source, position).await,
        }
    }

    // What other stages keep between runs.

    /// The switched-off webhooks: (observer, position).
    pub async fn disabled_webhooks(&self) -> Result<Vec<(String, usize)>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.disabled_webhooks(),
        }
    }

    /// Switches a webhook off (`disabled`) or on, durably.
    pub async fn switch_webhook(
        &self,
        observer: &str,
        webhook: usize,
        disabled: bool,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.switch_webhook(observer, webhook, disabled),
        }
    }

    /// Records an incoming delivery id for `window`; false if it was
    /// already recorded and has not expired (a replay). Atomic, so two
    /// concurrent copies cannot both pass.
    pub async fn replay_first_time(&self, key: &str, window: Duration) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_first_time(key, window),
        }
    }

    /// Forgets an incoming delivery id.
    pub async fn replay_forget(&self, key: &str) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_forget(key),
        }
    }

    /// Drops expired incoming delivery ids; returns how many.
    pub async fn replay_purge(&self) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_purge(),
        }
    }

    /// The last run the schedule `name` handled, unix milliseconds.
    pub async fn schedule_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.schedule_mark(name),
        }
    }

    /// Records the last run the schedule `name` handled, durably.
    pub async fn save_schedule_mark(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.save_schedule_mark(name, at_ms).await,
        }
    }
}

/// A store in `dir` with a 1 MiB cache and no reserve, for tests.
#[cfg(test)]
pub(crate) async fn open_in(dir: &std::path::Path) -> Store {
    Store::open(&Settings {
        path: dir.to_path_buf(),
        cache_capacity_bytes: 1 << 20,
        min_free_bytes: 0,
    })
    .await
    .unwrap()
}
