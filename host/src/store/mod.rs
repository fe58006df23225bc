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
//! keeps them is the store's business: the embedded sled database
//! (`sled/`), for one process, or PostgreSQL (`postgres/`), which several
//! processes may share. A backend is a variant of `Backend`, so a call
//! costs one `match` and no allocation, and a new backend touches nothing
//! outside `store/`. Every method is `async`: PostgreSQL's wait on the
//! server, sled's answer at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use delivery::Routing;
pub use delivery::{Attempt, Delivery, Payload};
pub use error::StoreError;
pub use letter::{DeadLetter, Failure, Filter, Page, Summary};
pub use log::{rfc3339, Detail, Entry, Logged, Query, Retention, Status as DeliveryStatus};
pub use status::{MigrationInfo, Status};

use crate::tls::postgres::{shown, PgTarget};

mod delivery;
mod error;
mod letter;
mod log;
mod postgres;
mod record;
pub mod redact;
mod sled;
mod status;
#[cfg(test)]
mod tests;

/// Where the database lives and what it may take of the machine
/// (`[storage]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's own files: the sled database, the plugins' compile cache.
    pub path: PathBuf,
    /// Which database keeps the records.
    pub backend: BackendSettings,
    /// Whether finished deliveries are kept in the delivery log
    /// (`[delivery_log] enabled`).
    pub delivery_log: bool,
}

/// The backend `[storage] backend` chose, and its settings.
#[derive(Debug, Clone)]
pub enum BackendSettings {
    /// sled, in `path` (`backend = "sled"`, the default).
    Sled {
        /// sled's page cache; bounded so that a large backlog stays on disk.
        cache_capacity_bytes: u64,
        /// Free space kept on the filesystem; under it new events are
        /// refused (0: no reserve).
        min_free_bytes: u64,
    },
    /// PostgreSQL (`backend = "postgres"`), which several nodes may share.
    Postgres(Box<PostgresSettings>),
}

/// `[storage] backend = "postgres"`. `Debug` shows no password (that of
/// `tokio_postgres::Config` hides it).
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// The server, with its TLS (`[observers] tls` supplies the files the
    /// connection string names none of).
    pub target: PgTarget,
    /// The schema every table lives in.
    pub schema: String,
    /// How long an outbox row stays a node's without a renewal; a node
    /// that dies leaves its rows to the others after this long.
    pub lease: Duration,
    /// Connections in the pool at most.
    pub max_connections: usize,
}

/// True for a name `storage.schema` may have: a plain lower-case
/// identifier (letters, digits, `_`), not starting with a digit or `pg_`.
pub fn valid_schema(name: &str) -> bool {
    postgres::valid_schema(name)
}

impl Settings {
    /// Where the records are, for messages: the sled directory, or the
    /// server and schema (never the password).
    pub fn location(&self) -> String {
        match &self.backend {
            BackendSettings::Sled { .. } => format!("sled at {}", self.path.display()),
            BackendSettings::Postgres(pg) => format!(
                "PostgreSQL {}, schema {}",
                shown(&pg.target.config),
                pg.schema
            ),
        }
    }
}

/// Applies the migrations the PostgreSQL schema lacks (creating it if it is
/// missing) and returns those applied now; `None` for sled, which has none.
pub async fn migrate(settings: &Settings) -> Result<Option<Vec<MigrationInfo>>, StoreError> {
    match &settings.backend {
        BackendSettings::Sled { .. } => Ok(None),
        BackendSettings::Postgres(pg) => postgres::migrate_only(&pg.target, &pg.schema)
            .await
            .map(Some),
    }
}

/// The backend's state, read without changing it (no migration is applied).
/// A sled database held by a running wasmhook reports no sizes.
pub async fn status(settings: &Settings) -> Result<Status, StoreError> {
    match &settings.backend {
        BackendSettings::Sled {
            cache_capacity_bytes,
            ..
        } => sled::status(&settings.path, *cache_capacity_bytes),
        BackendSettings::Postgres(pg) => postgres::status(&pg.target, &pg.schema).await,
    }
}

/// The storage, shared by every stage; clones share one database.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

/// The implementations of the storage.
enum Backend {
    /// One process, one embedded database (boxed: it holds the log's
    /// index inline).
    Sled(Box<sled::Database>),
    /// One schema of a PostgreSQL database, shared by every node.
    Postgres(postgres::Database),
}

impl Store {
    /// Opens (or creates) the database; fails if another process has sled's
    /// open ([`StoreError::is_locked`]). PostgreSQL's schema is created
    /// and migrated if it needs to be, once however many nodes start
    /// together.
    pub async fn open(settings: &Settings) -> Result<Store, StoreError> {
        let backend = match &settings.backend {
            BackendSettings::Sled {
                cache_capacity_bytes,
                min_free_bytes,
            } => Backend::Sled(Box::new(sled::Database::open(
                &settings.path,
                *cache_capacity_bytes,
                *min_free_bytes,
                settings.delivery_log,
            )?)),
            BackendSettings::Postgres(pg) => {
                Backend::Postgres(postgres::Database::open(pg, settings.delivery_log).await?)
            }
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// How long this node's outbox rows stay its own without
    /// [`Store::renew_leases`]; `None` when nothing is shared (sled), and
    /// there are no leases to renew or rows to adopt.
    pub fn lease(&self) -> Option<Duration> {
        match &*self.backend {
            Backend::Sled(_) => None,
            Backend::Postgres(db) => Some(db.lease()),
        }
    }

    /// Renews the lease of every outbox row this node owns (one statement);
    /// returns how many. The host runs it well within the lease.
    pub async fn renew_leases(&self) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Sled(_) => Ok(0),
            Backend::Postgres(db) => db.renew_leases().await,
        }
    }

    /// Takes over up to `limit` outbox rows whose lease has run out (their
    /// node died or gave them up) and returns those that may run, as
    /// `(due_ms, key)`, for the dispatcher. Empty for sled.
    pub async fn adopt(&self, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        match &*self.backend {
            Backend::Sled(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.adopt(limit).await,
        }
    }

    /// Gives up this node's outbox rows, so that another node (or the next
    /// start) takes them at once rather than after the lease; called when
    /// nothing here will attempt them any more. Nothing to do for sled.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Postgres(db) => db.close().await.map(|_| ()),
        }
    }

    /// Ok when new work would be taken: there is room above the reserve
    /// and a write goes through (the readiness probe).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.check_writable(),
            Backend::Postgres(db) => db.check_writable().await,
        }
    }

    /// Waits until everything written so far is durable. Concurrent callers
    /// share one flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.flush().await,
            Backend::Postgres(db) => db.flush().await,
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
            Backend::Postgres(db) => db.write(deliveries, dead).await,
        }
    }

    /// Reads one pending delivery; `None` if it was completed or moved.
    pub async fn get(&self, key: u64) -> Result<Option<Delivery>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.get(key),
            Backend::Postgres(db) => db.get(key).await,
        }
    }

    /// What the dispatcher routes a pending delivery by; `None` if it was
    /// completed or moved. Cheaper than [`Store::get`]: it builds neither
    /// the event nor the request.
    pub(crate) async fn routing(&self, key: u64) -> Result<Option<Routing>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.routing(key),
            Backend::Postgres(db) => db.routing(key).await,
        }
    }

    /// Every pending delivery that may run, with its due time, for the
    /// dispatcher at start-up; releases held deliveries whose predecessor
    /// is done (a crash between the two writes must not leave a chain stuck).
    /// PostgreSQL: the rows this node owns and every row whose lease has run
    /// out, which become this node's.
    pub async fn pending(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.pending(),
            Backend::Postgres(db) => db.pending().await,
        }
    }

    /// Lets a held delivery run; returns its due time if it exists.
    pub async fn release(&self, key: u64) -> Result<Option<u64>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.release(key),
            Backend::Postgres(db) => db.release(key).await,
        }
    }

    /// Records a failed attempt and the next due time.
    pub async fn reschedule(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.reschedule(key, delivery),
            Backend::Postgres(db) => db.reschedule(key, delivery).await,
        }
    }

    /// Removes a delivered delivery (`delivery`, with its last attempt),
    /// into the delivery log when it is kept.
    pub async fn complete(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.complete(key, delivery),
            Backend::Postgres(db) => db.complete(key, delivery).await,
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
            Backend::Postgres(db) => db.bury(key, delivery, reason).await,
        }
    }

    /// Number of pending deliveries (of every node sharing the database).
    pub async fn outbox_len(&self) -> usize {
        match &*self.backend {
            Backend::Sled(db) => db.outbox_len(),
            Backend::Postgres(db) => db.outbox_len().await,
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
            Backend::Postgres(db) => db.reject_input(source, raw, reason).await,
        }
    }

    /// Entries matching the filter, oldest first.
    pub async fn dlq_list(&self, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
        self.dlq_page(filter, &Page::default()).await
    }

    /// A page of the entries matching the filter, oldest first.
    pub async fn dlq_page(
        &self,
        filter: &Filter,
        page: &Page,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_list(filter, page),
            Backend::Postgres(db) => db.dlq_list(filter, page).await,
        }
    }

    /// One entry.
    pub async fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_get(id),
            Backend::Postgres(db) => db.dlq_get(id).await,
        }
    }

    /// Removes matching entries, durably; returns how many.
    pub async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_purge(filter).await,
            Backend::Postgres(db) => db.dlq_purge(filter).await,
        }
    }

    /// Puts a DLQ entry back into the outbox, due now, with a fresh attempt
    /// budget (its earlier attempts move to `earlier_attempts`), in one
    /// atomic step. Returns its key.
    pub async fn requeue(&self, id: &str) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.requeue(id),
            Backend::Postgres(db) => db.requeue(id).await,
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
            Backend::Postgres(db) => db.requeue_all(filter, spacing).await,
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
            Backend::Postgres(db) => db.dlq_enforce(retention, max_bytes).await,
        }
    }

    /// Number of entries in the DLQ (shared by every node).
    pub async fn dlq_len(&self) -> usize {
        match &*self.backend {
            Backend::Sled(db) => db.dlq_len(),
            Backend::Postgres(db) => db.dlq_len().await,
        }
    }

    // The delivery log.

    /// Deliveries the query picks, newest first: finished ones from the
    /// delivery log, pending ones from the outbox.
    pub async fn deliveries(&self, query: &Query) -> Result<Vec<Logged>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.deliveries(query),
            Backend::Postgres(db) => db.deliveries(query).await,
        }
    }

    /// One delivery, finished or pending.
    pub async fn delivery(&self, id: &str) -> Result<Logged, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.delivery(id),
            Backend::Postgres(db) => db.delivery(id).await,
        }
    }

    /// Sends a finished delivery (delivered or dead) again: back into the
    /// outbox due at `due_ms` with a fresh attempt budget and the same id,
    /// out of the log and the DLQ, in one atomic step. Returns its key.
    pub async fn resend(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.resend(id, due_ms),
            Backend::Postgres(db) => db.resend(id, due_ms).await,
        }
    }

    /// Resends every finished delivery the query picks (its limit
    /// ignored), the n-th due `n * spacing` from now; returns the outbox
    /// keys with their due times.
    pub async fn resend_all(
        &self,
        query: &Query,
        spacing: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let picked = Query {
            limit: usize::MAX,
            ..query.clone()
        };
        let mut finished: Vec<Logged> = self
            .deliveries(&picked)
            .await?
            .into_iter()
            .filter(|l| l.status != log::Status::Pending)
            .collect();
        // Oldest first, as they were first sent.
        finished.sort_unstable_by(|a, b| a.delivery.id.cmp(&b.delivery.id));
        let (now, step) = (crate::clock::now_ms(), spacing.as_millis() as u64);
        let mut out = Vec::with_capacity(finished.len());
        for (n, logged) in finished.iter().enumerate() {
            let due = now + step * n as u64;
            out.push((self.resend(&logged.delivery.id, due).await?, due));
        }
        Ok(out)
    }

    /// Moves the pending delivery `id` into the DLQ with `reason` (an
    /// operator cancelled it); the dispatcher finds it gone.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let found = match &*self.backend {
            Backend::Sled(db) => db.pending_delivery(id)?,
            Backend::Postgres(db) => db.pending_delivery(id).await?,
        };
        let Some((key, delivery)) = found else {
            return Err(match self.delivery(id).await {
                Ok(_) => StoreError::Finished(id.to_string()),
                Err(e) => e,
            });
        };
        self.bury(key, delivery, reason.to_string()).await.map(drop)
    }

    /// Applies the delivery log's retention; returns how many went.
    pub async fn log_enforce(&self, retention: Retention) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.log_enforce(retention),
            Backend::Postgres(db) => db.log_enforce(retention).await,
        }
    }

    // Source cursors.

    /// The position `source` saved last, as it wrote it.
    pub async fn source_cursor(&self, source: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.source_cursor(source),
            Backend::Postgres(db) => db.source_cursor(source).await,
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
            Backend::Postgres(db) => db.save_source_cursor(source, position).await,
        }
    }

    // What other stages keep between runs.

    /// The switched-off webhooks: (observer, position).
    pub async fn disabled_webhooks(&self) -> Result<Vec<(String, usize)>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.disabled_webhooks(),
            Backend::Postgres(db) => db.disabled_webhooks().await,
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
            Backend::Postgres(db) => db.switch_webhook(observer, webhook, disabled).await,
        }
    }

    /// Records an incoming delivery id for `window`; false if it was
    /// already recorded and has not expired (a replay). Atomic, so two
    /// concurrent copies cannot both pass.
    pub async fn replay_first_time(&self, key: &str, window: Duration) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_first_time(key, window),
            Backend::Postgres(db) => db.replay_first_time(key, window).await,
        }
    }

    /// Forgets an incoming delivery id.
    pub async fn replay_forget(&self, key: &str) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_forget(key),
            Backend::Postgres(db) => db.replay_forget(key).await,
        }
    }

    /// Drops expired incoming delivery ids; returns how many.
    pub async fn replay_purge(&self) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.replay_purge(),
            Backend::Postgres(db) => db.replay_purge().await,
        }
    }

    /// The last run the schedule `name` handled, unix milliseconds.
    pub async fn schedule_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.schedule_mark(name),
            Backend::Postgres(db) => db.schedule_mark(name).await,
        }
    }

    /// Records the last run the schedule `name` handled, durably.
    pub async fn save_schedule_mark(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.save_schedule_mark(name, at_ms).await,
            Backend::Postgres(db) => db.save_schedule_mark(name, at_ms).await,
        }
    }
}

impl Store {
    /// Stores a dead letter as it is (of any age), for tests.
    #[cfg(test)]
    pub(crate) async fn insert_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sled(db) => db.insert_letter(letter),
            Backend::Postgres(db) => db.insert_letter(letter).await,
        }
    }
}

/// A store in `dir` with a 1 MiB cache and no reserve, for tests.
#[cfg(test)]
pub(crate) async fn open_in(dir: &std::path::Path) -> Store {
    Store::open(&Settings {
        path: dir.to_path_buf(),
        backend: BackendSettings::Sled {
            cache_capacity_bytes: 1 << 20,
            min_free_bytes: 0,
        },
        delivery_log: true,
    })
    .await
    .unwrap()
}
