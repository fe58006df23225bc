//! The sled backend: one embedded database holding the outbox, the DLQ,
//! the source cursors and the small state other stages keep, for a single
//! process.
//!
//! The outbox and the DLQ are trees of the same database, so moving a
//! delivery between the two is one sled transaction. Its methods are
//! synchronous: sled answers from its cache and writes to disk only in
//! [`Database::flush`] (and on its timer), which runs on a blocking thread.

use std::path::{Path, PathBuf};

use sled::transaction::TransactionError;

use crate::store::error::StoreError;
use crate::store::status::Status;
use counts::Counts;

mod counts;
mod cursors;
mod dlq;
mod graves;
mod journal;
mod log;
mod outbox;
mod state;

/// The sled database and its trees, opened once.
pub(crate) struct Database {
    db: sled::Db,
    outbox: sled::Tree,
    dlq: sled::Tree,
    /// Finished deliveries (see `log` and `journal`), written when
    /// `logging`: appended to files of their own, indexed in memory.
    log: journal::Journal,
    logging: bool,
    /// See `cursors`.
    cursors: sled::Tree,
    /// See `state`.
    switches: sled::Tree,
    seen: sled::Tree,
    marks: sled::Tree,
    health: sled::Tree,
    /// See [`Reserve`].
    reserve: Option<Reserve>,
    flusher: Flusher,
    counts: Counts,
}

/// Group commit: one flush at a time, and a caller whose writes an already
/// started flush covers does not flush again. sled's own `flush_async`
/// deadlocks when called concurrently (sled 0.34, spacejam/sled#1308, fixed
/// only on an unreleased branch): concurrent ingest requests hung the
/// process for good.
#[derive(Debug, Default)]
struct Flusher {
    /// Flush requests so far; a request is numbered after its writes.
    requested: std::sync::atomic::AtomicU64,
    /// The highest request number a completed flush covers.
    covered: tokio::sync::Mutex<u64>,
}

/// Free space kept on the database's filesystem: once less is left, new
/// events are refused ([`StoreError::Full`]) while deliveries go on. sled
/// cannot recover from a write that fails for want of space without a
/// restart, so it must never get that far.
#[derive(Clone, Debug)]
struct Reserve {
    path: PathBuf,
    bytes: u64,
}

pub(crate) fn tx_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// See [`Database::open`].
const FLUSH_EVERY_MS: u64 = 20;

/// The trees' names, as existing databases have them.
const OUTBOX: &str = "outbox";
const DLQ: &str = "dlq";
const CURSORS: &str = "source_cursors";
const SWITCHES: &str = "disabled_webhooks";
const SEEN: &str = "incoming_seen";
const MARKS: &str = "schedule_marks";
const HEALTH: &str = "health";
/// The delivery log's segment files, a folder inside the main one.
const LOG_DIR: &str = "delivery_log.journal";
/// Where an earlier version kept the log: a sled database of its own, with
/// a tree of the same name.
const OLD_LOG: &str = "delivery_log";

impl Database {
    /// Opens (or creates) the database at `path`, keeping `min_free_bytes`
    /// free on its filesystem (0: no reserve) and logging finished
    /// deliveries when `logging`; fails if another process has it open.
    pub(crate) fn open(
        path: &Path,
        cache_capacity_bytes: u64,
        min_free_bytes: u64,
        logging: bool,
    ) -> Result<Database, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            // sled writes its buffers out on this timer; a completion still
            // buffered when the process dies is sent again after restart. A
            // short period keeps such duplicates few for a small cost.
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()?;
        let outbox = db.open_tree(OUTBOX)?;
        let log = journal::Journal::open(&path.join(LOG_DIR))?;
        let adopted = log::adopt_old_log(&path.join(OLD_LOG), &log)?;
        if adopted > 0 {
            tracing::info!(
                deliveries = adopted,
                "moved the delivery log into its journal"
            );
        }
        let dlq = db.open_tree(DLQ)?;
        let counts = Counts::new(outbox.len() as u64, graves::count_all(&dlq)?);
        Ok(Database {
            outbox,
            dlq,
            log,
            logging,
            cursors: db.open_tree(CURSORS)?,
            switches: db.open_tree(SWITCHES)?,
            seen: db.open_tree(SEEN)?,
            marks: db.open_tree(MARKS)?,
            health: db.open_tree(HEALTH)?,
            db,
            reserve: (min_free_bytes > 0).then(|| Reserve {
                path: path.to_path_buf(),
                bytes: min_free_bytes,
            }),
            flusher: Flusher::default(),
            counts,
        })
    }

    /// Refuses new work when the filesystem is down to the reserve.
    pub(crate) fn check_space(&self) -> Result<(), StoreError> {
        let Some(reserve) = &self.reserve else {
            return Ok(());
        };
        // An unreadable figure is not a reason to refuse events.
        let Ok(available) = fs4::available_space(&reserve.path) else {
            return Ok(());
        };
        if available < reserve.bytes {
            return Err(StoreError::Full {
                available,
                reserve: reserve.bytes,
            });
        }
        Ok(())
    }

    /// Writes everything written so far to disk, and waits for it.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mine = self.flusher.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.flusher.covered.lock().await;
        if *covered >= mine {
            // A flush that began after our writes has finished.
            return Ok(());
        }
        let target = self.flusher.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string())))
            })??;
        *covered = target;
        Ok(())
    }
}

/// The database at `path`, read for `wasmhook storage status`; without
/// sizes when a running wasmhook holds it.
pub(crate) fn status(path: &Path, cache_capacity_bytes: u64) -> Result<Status, StoreError> {
    let mut status = Status {
        backend: "sled",
        location: path.display().to_string(),
        schema: None,
        applied: Vec::new(),
        pending: Vec::new(),
        outbox_len: None,
        dlq_len: None,
        size_on_disk: None,
    };
    if !path.exists() {
        // Opening would create it: there is nothing yet.
        status.outbox_len = Some(0);
        status.dlq_len = Some(0);
        return Ok(status);
    }
    match Database::open(path, cache_capacity_bytes, 0, false) {
        Ok(db) => {
            status.outbox_len = Some(db.counts.outbox_len() as u64);
            status.dlq_len = Some(db.counts.dlq_len() as u64);
            status.size_on_disk = Some(db.db.size_on_disk()? + db.log.size_on_disk()?);
        }
        Err(e) if e.is_locked() => {}
        Err(e) => return Err(e),
    }
    Ok(status)
}

pub(crate) fn u64_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

/// A database in `dir` with a 1 MiB cache and no reserve, for tests.
#[cfg(test)]
pub(crate) fn open_in(dir: &Path) -> Database {
    Database::open(dir, 1 << 20, 0, true).unwrap()
}
