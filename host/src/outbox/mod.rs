//! The outbox: every accepted event's pending deliveries, in sled, until each
//! is delivered or dead. Ingest answers only after [`Store::write`] has been
//! followed by [`Store::flush`], which is what makes "accepted" mean "will
//! not be lost".
//!
//! The DLQ lives in the same database (see `crate::dlq`), so moving a
//! delivery between the two is one transaction.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::clock::{self, now_ms};
use crate::dlq::{grave, DeadLetter, Failure};
use crate::event::SharedEvent;
use crate::payload::Payload;
pub(crate) use record::{decode, encode};

mod cursors;
pub(crate) mod record;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, a second process holding the lock).
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be read back.
    #[error("storage: record {key} is unreadable: {source}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A packed record could not be unpacked.
    #[error("storage: record {key} is unreadable: {reason}")]
    Unpacked {
        /// The record's key.
        key: String,
        /// What is wrong with its bytes.
        reason: String,
    },
    /// The filesystem is down to its reserve; new work is refused so that
    /// what is stored can still be delivered and recorded.
    #[error("storage: only {available} bytes free on the database's filesystem, under the {reserve}-byte reserve (storage.min_free_mb); new events are refused until space returns")]
    Full {
        /// Free bytes now.
        available: u64,
        /// The reserve.
        reserve: u64,
    },
    /// No record with this id.
    #[error("no DLQ entry with id {0}")]
    NotFound(String),
    /// The entry cannot be retried (it is input that never became an event).
    #[error("DLQ entry {0} is undeliverable input, not a delivery; it cannot be retried")]
    NotRetryable(String),
}

impl StoreError {
    /// True when sled refused to open because another process holds it.
    pub fn is_locked(&self) -> bool {
        match self {
            StoreError::Sled(sled::Error::Io(e)) => {
                e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock")
            }
            _ => false,
        }
    }
}

/// One HTTP attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, unix milliseconds.
    pub at_ms: u64,
    /// The response status, if there was a response.
    pub status: Option<u16>,
    /// The transport error, or the start of an error response's body.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A pending delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Sent as `X-Wasmhook-Delivery`; stays the same across retries so
    /// receivers can deduplicate.
    pub id: String,
    /// Observer name.
    pub observer: String,
    /// Index of the webhook in the observer.
    pub webhook: usize,
    /// The event, kept for the DLQ and for plugins.
    pub event: SharedEvent,
    /// The rendered request. `None` until the first attempt builds it when
    /// a plugin builds it (see `Pipeline::accept`), and when the delivery
    /// died before it could be built (a plugin failed), in which case a DLQ
    /// retry builds it again.
    pub payload: Option<Payload>,
    /// Every attempt of the current round (the retry budget counts these).
    pub attempts: Vec<Attempt>,
    /// Attempts of earlier rounds, before a DLQ retry put it back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_attempts: Vec<Attempt>,
    /// When the next attempt is due, unix milliseconds.
    pub due_ms: u64,
    /// When the event was accepted, unix milliseconds.
    pub accepted_ms: u64,
    /// The previous webhook of the same observer and event: this delivery
    /// waits until that one's first attempt is over, so webhooks run in order.
    pub after: Option<u64>,
    /// The next webhook of the chain, released when this one's first attempt ends.
    pub next: Option<u64>,
    /// True while waiting for `after`.
    pub held: bool,
}

impl Delivery {
    /// This delivery put back from the DLQ: due at `due_ms`, on its own (no
    /// chain), with a fresh attempt budget; the attempts so far move to
    /// `earlier_attempts`.
    pub(crate) fn revived(mut self: Box<Self>, due_ms: u64) -> Delivery {
        self.due_ms = due_ms;
        self.held = false;
        self.after = None;
        self.next = None;
        let round = std::mem::take(&mut self.attempts);
        self.earlier_attempts.extend(round);
        *self
    }
}

/// The fields of a stored [`Delivery`] that decide where it is queued
/// (see [`Store::routing`]); serde skips the rest of the record.
#[derive(Debug, Deserialize)]
pub(crate) struct Routing {
    /// Observer name.
    pub observer: String,
    /// Index of the webhook in the observer.
    pub webhook: usize,
    /// True while waiting for the previous webhook of its chain.
    pub held: bool,
    /// The request's URL, when it is built.
    pub payload: Option<RoutingUrl>,
    /// The event's ids, for entity lanes.
    pub event: RoutingEvent,
}

/// See [`Routing`].
#[derive(Debug, Deserialize)]
pub(crate) struct RoutingUrl {
    pub url: String,
}

/// See [`Routing`].
#[derive(Debug, Deserialize)]
pub(crate) struct RoutingEvent {
    pub id: String,
    pub entity_id: Option<String>,
}

/// The sled database with the outbox and DLQ trees.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    pub(crate) outbox: sled::Tree,
    pub(crate) dlq: sled::Tree,
    /// See [`Store::reserve`].
    reserve: Option<Reserve>,
    flusher: Arc<Flusher>,
    pub(crate) counts: Arc<Counts>,
}

/// How many records each tree holds, kept beside the trees. sled 0.34's
/// `Tree::len` reads every record: a /metrics scrape behind a backlog of
/// 100k deliveries walked them all, paged them into memory (RSS 210 ->
/// 360 MB) and took CPU from the deliveries. Counted once at open, then
/// moved by each write from what the write replaced or removed.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    outbox: AtomicU64,
    dlq: AtomicU64,
}

impl Counts {
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

/// Free space kept on the database's filesystem.
#[derive(Clone, Debug)]
struct Reserve {
    path: std::path::PathBuf,
    bytes: u64,
}

pub(crate) fn tx_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// See [`Store::open`].
const FLUSH_EVERY_MS: u64 = 20;

impl Store {
    /// Opens (or creates) the database; fails if another process has it open.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            // sled writes its buffers out on this timer; a completion still
            // buffered when the process dies is sent again after restart. A
            // short period keeps such duplicates few for a small cost.
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()?;
        let outbox = db.open_tree("outbox")?;
        let dlq = db.open_tree("dlq")?;
        let counts = Counts {
            outbox: AtomicU64::new(outbox.len() as u64),
            dlq: AtomicU64::new(crate::dlq::count_all(&dlq)?),
        };
        Ok(Store {
            outbox,
            dlq,
            db,
            reserve: None,
            flusher: Default::default(),
            counts: Arc::new(counts),
        })
    }

    /// Keeps `bytes` free on the database's filesystem: once less is left,
    /// new events are refused ([`StoreError::Full`]) while deliveries go on.
    /// sled cannot recover from a write that fails for want of space
    /// without a restart, so it must never get that far.
    pub fn reserve(mut self, path: &Path, bytes: u64) -> Store {
        self.reserve = (bytes > 0).then(|| Reserve {
            path: path.to_path_buf(),
            bytes,
        });
        self
    }

    /// Refuses new work when the filesystem is down to the reserve.
    pub fn check_space(&self) -> Result<(), StoreError> {
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

    /// [`Store::write`], then waits until it is on disk. The pipeline
    /// schedules between the two; tests that need no schedule use this.
    #[cfg(test)]
    pub(crate) async fn enqueue(
        &self,
        deliveries: Vec<Delivery>,
        dead: Vec<(Delivery, String)>,
    ) -> Result<Vec<u64>, StoreError> {
        let keys = self.write(deliveries, dead)?;
        self.flush().await?;
        Ok(keys)
    }

    /// Stores the deliveries of one accepted batch, and those that died
    /// before their first attempt (straight into the DLQ, one record for
    /// each family of ids: see `crate::dlq::grave`), in sled's memory: not
    /// on disk until the next [`Store::flush`]. Deliveries of one observer
    /// and event, given consecutively, are chained so that they run in
    /// order. Returns the keys of the live ones.
    ///
    /// The keys may be attempted before the flush: a crash in between
    /// loses nothing a source was told it had handed over (it is answered
    /// after the flush, and sends the event again), and sled recovers its
    /// log in order, so a completion is never found without its delivery.
    ///
    /// Records are inserted one by one, not as one `sled::Batch`: sled
    /// applies a batch under its global write lock, which waits for every
    /// reader, and a reader can wait for the disk. On a busy disk that made
    /// every accept wait ~40 ms (p99 at 1,000 events/s: 41-44 ms, against
    /// 1.1-1.2 ms one by one; docs/BENCHMARKS.md). A crash part-way leaves
    /// some of the batch stored; the source, not answered, sends it again:
    /// duplicates, never a loss. A chain missing its predecessor is released
    /// at start-up (`Store::pending`).
    pub fn write(
        &self,
        mut deliveries: Vec<Delivery>,
        dead: Vec<(Delivery, String)>,
    ) -> Result<Vec<u64>, StoreError> {
        self.check_space()?;
        let mut keys = Vec::with_capacity(deliveries.len());
        for _ in 0..deliveries.len() {
            keys.push(self.db.generate_id()?);
        }
        for i in 1..deliveries.len() {
            let (before, rest) = deliveries.split_at_mut(i);
            let (prev, this) = (&mut before[i - 1], &mut rest[0]);
            if prev.observer == this.observer
                && prev.event.id == this.event.id
                && prev.webhook < this.webhook
            {
                prev.next = Some(keys[i]);
                this.after = Some(keys[i - 1]);
                this.held = true;
            }
        }
        for (key, delivery) in keys.iter().zip(&deliveries) {
            self.outbox.insert(key.to_be_bytes(), encode(delivery))?;
        }
        // Fresh ids: every key is new.
        self.counts.outbox(keys.len() as u64, 0);
        if !dead.is_empty() {
            let failed_at_ms = now_ms();
            let buried = dead.len() as u64;
            let letters = dead.into_iter().map(|(delivery, reason)| DeadLetter {
                id: delivery.id.clone(),
                failed_at_ms,
                reason,
                failure: Failure::Delivery(Box::new(delivery)),
            });
            for (key, bytes) in grave::records(letters.collect()) {
                self.dlq.insert(key, bytes)?;
            }
            // Fresh v7 ids: every letter is new.
            self.counts.dlq(buried, 0);
        }
        Ok(keys)
    }

    /// Reads one pending delivery; `None` if it was completed or moved.
    pub fn get(&self, key: u64) -> Result<Option<Delivery>, StoreError> {
        self.outbox
            .get(key.to_be_bytes())?
            .map(|bytes| decode(&key.to_be_bytes(), &bytes))
            .transpose()
    }

    /// What the dispatcher routes a pending delivery by; `None` if it was
    /// completed or moved. Reads the record like [`Store::get`] but builds
    /// neither the event nor the request: a full decode cost a third of
    /// the dispatcher's reading at full speed, and the attempt decodes the
    /// record again anyway.
    pub(crate) fn routing(&self, key: u64) -> Result<Option<Routing>, StoreError> {
        self.outbox
            .get(key.to_be_bytes())?
            .map(|bytes| decode(&key.to_be_bytes(), &bytes))
            .transpose()
    }

    /// Every pending delivery that may run, with its due time, for the
    /// dispatcher at start-up. Held deliveries whose predecessor has finished
    /// its first attempt (or is gone) are released here: a crash between the
    /// two writes must not leave a chain stuck.
    pub fn pending(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut due = Vec::new();
        let mut released = Vec::new();
        for item in self.outbox.iter() {
            let (key, bytes) = item?;
            let delivery: Delivery = decode(&key, &bytes)?;
            let key = u64_key(&key);
            if delivery.held {
                let predecessor_done = match delivery.after {
                    Some(after) => self.get(after)?.is_none_or(|p| !p.attempts.is_empty()),
                    None => true,
                };
                if !predecessor_done {
                    continue;
                }
                released.push(key);
            }
            due.push((delivery.due_ms, key));
        }
        for key in released {
            self.release(key)?;
        }
        Ok(due)
    }

    /// Lets a held delivery run; returns its due time if it exists.
    pub fn release(&self, key: u64) -> Result<Option<u64>, StoreError> {
        let Some(mut delivery) = self.get(key)? else {
            return Ok(None);
        };
        delivery.held = false;
        let previous = self.outbox.insert(key.to_be_bytes(), encode(&delivery))?;
        self.counts.outbox(created(&previous), 0);
        Ok(Some(delivery.due_ms))
    }

    /// Records a failed attempt and the next due time.
    pub fn reschedule(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        let previous = self.outbox.insert(key.to_be_bytes(), encode(delivery))?;
        self.counts.outbox(created(&previous), 0);
        Ok(())
    }

    /// Removes a delivered delivery.
    pub fn complete(&self, key: u64) -> Result<(), StoreError> {
        let previous = self.outbox.remove(key.to_be_bytes())?;
        self.counts.outbox(0, existed(&previous));
        Ok(())
    }

    /// Moves a dead delivery into the DLQ, atomically.
    pub fn bury(
        &self,
        key: u64,
        delivery: Delivery,
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        let letter = DeadLetter {
            id: delivery.id.clone(),
            failed_at_ms: now_ms(),
            reason,
            failure: Failure::Delivery(Box::new(delivery)),
        };
        let bytes = encode(&letter);
        // What the transaction's last (committed) run found.
        let (left, arrived) = (Cell::new(0), Cell::new(0));
        (&self.outbox, &self.dlq)
            .transaction(|(outbox, dlq)| {
                left.set(existed(&outbox.remove(&key.to_be_bytes())?));
                arrived.set(created(
                    &dlq.insert(letter.id.as_bytes(), bytes.as_slice())?,
                ));
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)?;
        self.counts.outbox(0, left.get());
        self.counts.dlq(arrived.get(), 0);
        Ok(letter)
    }

    /// Records input that never became an event (unknown envelope) in the DLQ.
    pub async fn reject_input(
        &self,
        source: &str,
        raw: &[u8],
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        self.check_space()?;
        let letter = DeadLetter {
            id: clock::new_id(),
            failed_at_ms: now_ms(),
            reason,
            failure: Failure::Input {
                source: source.to_string(),
                raw: String::from_utf8_lossy(raw).into_owned(),
            },
        };
        let previous = self.dlq.insert(letter.id.as_bytes(), encode(&letter))?;
        self.counts.dlq(created(&previous), 0);
        self.flush().await?;
        Ok(letter)
    }

    /// Another tree in the same database (for the stages that keep state).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Number of pending deliveries.
    pub fn outbox_len(&self) -> usize {
        self.counts.outbox_len()
    }

    /// Writes everything written so far to disk, and waits for it.
    pub async fn flush(&self) -> Result<(), StoreError> {
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

pub(crate) fn u64_key(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Delivery;
    use crate::event::test_support::order_update;

    /// A fresh, never attempted delivery of event `i`.
    pub(crate) fn delivery(observer: &str, webhook: usize, i: usize) -> Delivery {
        Delivery {
            id: crate::clock::new_id(),
            observer: observer.into(),
            webhook,
            event: order_update(serde_json::json!({}), serde_json::json!({"i": i})).into(),
            payload: None,
            attempts: Vec::new(),
            earlier_attempts: Vec::new(),
            due_ms: 0,
            accepted_ms: 0,
            after: None,
            next: None,
            held: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::delivery;
    use super::*;

    /// The keys `Store::pending` hands the dispatcher at start-up.
    fn due(store: &Store) -> Vec<u64> {
        store
            .pending()
            .unwrap()
            .into_iter()
            .map(|(_, key)| key)
            .collect()
    }

    /// A batch is written record by record (see `Store::write`), so a crash
    /// can store the second webhook's delivery of a chain without the
    /// first. It must still run after the restart.
    #[test]
    fn a_chain_whose_first_delivery_is_missing_runs_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let chain = vec![delivery("o", 0, 1), delivery("o", 1, 1)];
        let keys = store.write(chain, Vec::new()).unwrap();
        assert!(store.get(keys[1]).unwrap().unwrap().held);
        assert_eq!(due(&store), vec![keys[0]], "the second waits for the first");

        store.complete(keys[0]).unwrap();
        drop(store);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(due(&store), vec![keys[1]]);
        assert!(
            !store.get(keys[1]).unwrap().unwrap().held,
            "released for good"
        );
    }

    /// The routing view reads the same fields as the whole record.
    #[test]
    fn routing_reads_what_the_delivery_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut built = delivery("o", 1, 7);
        built.payload = Some(Payload {
            method: "POST".into(),
            url: "http://127.0.0.1:9/hook".into(),
            headers: vec![("x-a".into(), "b".into())],
            content_type: None,
            // Large enough to be packed (`record`), as a 64 KB entity's is.
            body: format!("[{}]", [r#"{"url": "not this one"}"#; 3000].join(",")).into_bytes(),
        });
        let keys = store
            .write(vec![delivery("o", 0, 7), built], Vec::new())
            .unwrap();
        let stored = store.outbox.get(keys[1].to_be_bytes()).unwrap().unwrap();
        assert!(stored.len() < 20_000, "packed: {} bytes", stored.len());
        for key in keys {
            let whole = store.get(key).unwrap().unwrap();
            let routing = store.routing(key).unwrap().unwrap();
            assert_eq!(routing.observer, whole.observer);
            assert_eq!(routing.webhook, whole.webhook);
            assert_eq!(routing.held, whole.held);
            assert_eq!(routing.payload.map(|p| p.url), whole.payload.map(|p| p.url));
            assert_eq!(routing.event.id, whole.event.id);
            assert_eq!(routing.event.entity_id, whole.event.entity_id);
        }
        assert!(store.routing(u64::MAX).unwrap().is_none());
    }

    /// The dispatcher reads what `Store::write` stored while the flush
    /// runs; deliveries of different observers are never chained.
    #[test]
    fn a_write_is_counted_and_chains_only_one_observers_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let keys = store
            .write(vec![delivery("a", 0, 1), delivery("b", 0, 1)], Vec::new())
            .unwrap();
        assert_eq!(store.outbox_len(), 2);
        for key in &keys {
            assert!(store.get(*key).unwrap().is_some());
        }
        assert_eq!(due(&store), keys, "different observers: no chain");
    }
}
