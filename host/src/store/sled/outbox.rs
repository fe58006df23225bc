//! The outbox: every accepted event's pending deliveries, until each is
//! delivered or dead. Ingest answers only after [`Database::write`] has
//! been followed by [`Database::flush`], which is what makes "accepted"
//! mean "will not be lost".

use std::cell::Cell;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::counts::{created, existed};
use super::{graves, tx_error, u64_key, Database};
use crate::clock::now_ms;
use crate::store::delivery::{chain, Delivery, Routing};
use crate::store::error::StoreError;
use crate::store::letter::{DeadLetter, Failure};
use crate::store::log::Finished;
use crate::store::record::{decode, encode};

impl Database {
    /// [`Database::write`], then waits until it is on disk. The pipeline
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
    /// each family of ids: see `graves`), in sled's memory: not on disk
    /// until the next [`Database::flush`]. Deliveries of one observer and
    /// event, given consecutively, are chained so that they run in order.
    /// Returns the keys of the live ones.
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
    /// at start-up (`Database::pending`).
    pub(crate) fn write(
        &self,
        mut deliveries: Vec<Delivery>,
        dead: Vec<(Delivery, String)>,
    ) -> Result<Vec<u64>, StoreError> {
        self.check_space()?;
        let mut keys = Vec::with_capacity(deliveries.len());
        for _ in 0..deliveries.len() {
            keys.push(self.db.generate_id()?);
        }
        chain(&mut deliveries, &keys);
        for (key, delivery) in keys.iter().zip(&deliveries) {
            self.outbox.insert(key.to_be_bytes(), encode(delivery))?;
        }
        // Fresh ids: every key is new.
        self.counts.outbox(keys.len() as u64, 0);
        if !dead.is_empty() {
            let failed_at_ms = now_ms();
            let buried = dead.len() as u64;
            let letters: Vec<DeadLetter> = dead
                .into_iter()
                .map(|(delivery, reason)| DeadLetter::of_delivery(delivery, reason, failed_at_ms))
                .collect();
            for letter in &letters {
                if let Failure::Delivery(delivery) = &letter.failure {
                    self.log_finished(
                        &Finished::dead(delivery, &letter.reason, failed_at_ms),
                        None,
                    )?;
                }
            }
            for (key, bytes) in graves::records(letters) {
                self.dlq.insert(key, bytes)?;
            }
            // Fresh v7 ids: every letter is new.
            self.counts.dlq(buried, 0);
        }
        Ok(keys)
    }

    /// Reads one pending delivery; `None` if it was completed or moved.
    pub(crate) fn get(&self, key: u64) -> Result<Option<Delivery>, StoreError> {
        self.outbox
            .get(key.to_be_bytes())?
            .map(|bytes| decode(&key.to_be_bytes(), &bytes))
            .transpose()
    }

    /// What the dispatcher routes a pending delivery by; `None` if it was
    /// completed or moved. Reads the record like [`Database::get`] but builds
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
    pub(crate) fn pending(&self) -> Result<Vec<(u64, u64)>, StoreError> {
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
    pub(crate) fn release(&self, key: u64) -> Result<Option<u64>, StoreError> {
        let Some(mut delivery) = self.get(key)? else {
            return Ok(None);
        };
        delivery.held = false;
        let previous = self.outbox.insert(key.to_be_bytes(), encode(&delivery))?;
        self.counts.outbox(created(&previous), 0);
        Ok(Some(delivery.due_ms))
    }

    /// Records a failed attempt and the next due time.
    pub(crate) fn reschedule(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        let previous = self.outbox.insert(key.to_be_bytes(), encode(delivery))?;
        self.counts.outbox(created(&previous), 0);
        Ok(())
    }

    /// Removes a delivered delivery, into the delivery log when it is kept.
    /// The log is written first: a crash in between leaves the delivery
    /// pending (it is sent again and logged again), never lost.
    pub(crate) fn complete(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        self.log_finished(&Finished::delivered(delivery, now_ms()), Some(key))?;
        let previous = self.outbox.remove(key.to_be_bytes())?;
        self.counts.outbox(0, existed(&previous));
        Ok(())
    }

    /// Number of pending deliveries.
    pub(crate) fn outbox_len(&self) -> usize {
        self.counts.outbox_len()
    }

    /// Moves a dead delivery into the DLQ, atomically.
    pub(crate) fn bury(
        &self,
        key: u64,
        delivery: Delivery,
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        let letter = DeadLetter::of_delivery(delivery, reason, now_ms());
        let bytes = encode(&letter);
        // Logged first, as `complete` does (the log is not in the transaction).
        if let Failure::Delivery(delivery) = &letter.failure {
            self.log_finished(
                &Finished::dead(delivery, &letter.reason, letter.failed_at_ms),
                Some(key),
            )?;
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::delivery::test_support::delivery;
    use crate::store::delivery::Payload;
    use crate::store::sled::open_in;

    /// The keys `Database::pending` hands the dispatcher at start-up.
    fn due(store: &Database) -> Vec<u64> {
        store
            .pending()
            .unwrap()
            .into_iter()
            .map(|(_, key)| key)
            .collect()
    }

    /// A batch is written record by record (see `Database::write`), so a crash
    /// can store the second webhook's delivery of a chain without the
    /// first. It must still run after the restart.
    #[test]
    fn a_chain_whose_first_delivery_is_missing_runs_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(dir.path());
        let chain = vec![delivery("o", 0, 1), delivery("o", 1, 1)];
        let keys = store.write(chain, Vec::new()).unwrap();
        assert!(store.get(keys[1]).unwrap().unwrap().held);
        assert_eq!(due(&store), vec![keys[0]], "the second waits for the first");

        store
            .complete(keys[0], &store.get(keys[0]).unwrap().unwrap())
            .unwrap();
        drop(store);
        let store = open_in(dir.path());
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
        let store = open_in(dir.path());
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

    /// The dispatcher reads what `Database::write` stored while the flush
    /// runs; deliveries of different observers are never chained.
    #[test]
    fn a_write_is_counted_and_chains_only_one_observers_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(dir.path());
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
