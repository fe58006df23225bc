//! The delivery log in sled: finished deliveries in the journal (segment
//! files indexed by delivery id, so in the order events were accepted).
//! Pending deliveries are the outbox's; see `store::log`.

use std::path::Path;

use serde::Deserialize;

use super::counts::created;
use super::journal::{Entry, Journal, Reader};
use super::Database;
use crate::store::delivery::Delivery;
use crate::store::error::StoreError;
use crate::store::log::{
    decode_logged, merge, searchable, Finished, Logged, Query, Retention, Status,
};
use crate::store::record::{decode, encode};

impl Database {
    /// Deliveries the query picks, newest first: finished ones from the log,
    /// pending ones from the outbox.
    pub(crate) fn deliveries(&self, query: &Query) -> Result<Vec<Logged>, StoreError> {
        let needles = query.needles();
        let mut finished = Vec::new();
        if query.wants(Status::Delivered) {
            let (low, mut high) = query.id_range();
            let mut reader = self.log.reader();
            'scan: loop {
                let batch = self.log.newest(low.as_deref(), high.as_deref(), 256);
                let Some((last, _)) = batch.last() else { break };
                let below = last.to_string();
                for (id, entry) in batch {
                    if finished.len() >= query.limit {
                        break 'scan;
                    }
                    if query.status.is_some_and(|wanted| wanted != entry.status) {
                        continue;
                    }
                    let Some(bytes) = reader.read(&entry)? else {
                        continue;
                    };
                    if !may_hold(&bytes, &needles) {
                        continue;
                    }
                    let logged = decode_logged(id.as_bytes(), &bytes)?;
                    if query.admits(logged.status, &logged.delivery) {
                        finished.push(logged);
                    }
                }
                high = Some(below);
            }
        }
        let mut pending = Vec::new();
        if query.wants(Status::Pending) {
            // Outbox keys are issued in accept order, like delivery ids.
            for item in self.outbox.iter().rev() {
                if pending.len() >= query.limit {
                    break;
                }
                let (key, bytes) = item?;
                if !may_hold(&bytes, &needles) {
                    continue;
                }
                let delivery: Delivery = decode(&key, &bytes)?;
                if query.admits(Status::Pending, &delivery) {
                    pending.push(Logged {
                        status: Status::Pending,
                        finished_at_ms: None,
                        reason: None,
                        delivery,
                    });
                }
            }
        }
        Ok(merge(finished, pending, query.limit))
    }

    /// The finished delivery `id` as the log holds it.
    fn logged(&self, id: &str) -> Result<Option<Logged>, StoreError> {
        let Some(entry) = self.log.entry(id) else {
            return Ok(None);
        };
        read(&mut self.log.reader(), id, &entry)
    }

    /// One delivery, finished or pending.
    pub(crate) fn delivery(&self, id: &str) -> Result<Logged, StoreError> {
        if let Some(logged) = self.logged(id)? {
            return Ok(logged);
        }
        self.pending_delivery(id)?
            .map(|(_, delivery)| Logged {
                status: Status::Pending,
                finished_at_ms: None,
                reason: None,
                delivery,
            })
            .ok_or_else(|| StoreError::NoDelivery(id.to_string()))
    }

    /// The outbox key and record of the pending delivery `id`, if any.
    pub(crate) fn pending_delivery(&self, id: &str) -> Result<Option<(u64, Delivery)>, StoreError> {
        let needle =
            [format!("\"id\":{}", serde_json::to_string(id).unwrap_or_default()).into_bytes()];
        for item in self.outbox.iter().rev() {
            let (key, bytes) = item?;
            if !may_hold(&bytes, &needle) {
                continue;
            }
            let delivery: Delivery = decode(&key, &bytes)?;
            if delivery.id == id {
                return Ok(Some((super::u64_key(&key), delivery)));
            }
        }
        Ok(None)
    }

    /// Writes a finished delivery into the log, when it is kept; around
    /// its outbox record `key` when it has one.
    pub(crate) fn log_finished(
        &self,
        finished: &Finished<'_>,
        key: Option<u64>,
    ) -> Result<(), StoreError> {
        if !self.logging {
            return Ok(());
        }
        let stored = match key {
            Some(key) => self.outbox.get(key.to_be_bytes())?,
            None => None,
        };
        let record = match stored {
            Some(stored) => finished.record_around(&stored),
            None => finished.record(),
        };
        self.log.append(
            &finished.delivery.id,
            finished.status,
            finished.finished_at_ms.unwrap_or_default(),
            &record,
        )
    }

    /// Sends a finished delivery again: back into the outbox due at
    /// `due_ms`, with a fresh attempt budget and the same id, out of the
    /// log (and out of the DLQ if it is there), in one step. Returns its key.
    pub(crate) fn resend(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
        let Some(logged) = self.logged(id)? else {
            return Err(match self.pending_delivery(id)? {
                Some(_) => StoreError::Pending(id.to_string()),
                None => StoreError::NoDelivery(id.to_string()),
            });
        };
        if logged.status == Status::Dead {
            match self.requeue_at(id, due_ms) {
                Err(StoreError::NotFound(_)) => {} // purged from the DLQ
                done => return done,
            }
        }
        let key = self.db.generate_id()?;
        let delivery = Box::new(logged.delivery).revived(due_ms);
        let record = encode(&delivery);
        // Into the outbox, then out of the log's index: a crash in between
        // leaves it in both, and a listing shows it once.
        let previous = self.outbox.insert(key.to_be_bytes(), record)?;
        self.counts.outbox(created(&previous), 0);
        self.log.remove(id)?;
        Ok(key)
    }

    /// Applies the log's retention; returns how many deliveries went.
    pub(crate) fn log_enforce(&self, retention: Retention) -> Result<usize, StoreError> {
        self.log.sync()?;
        self.log.enforce(retention)
    }
}

/// The record `entry` points to, read; `None` when its bytes are gone.
fn read(reader: &mut Reader<'_>, id: &str, entry: &Entry) -> Result<Option<Logged>, StoreError> {
    reader
        .read(entry)?
        .map(|bytes| decode_logged(id.as_bytes(), &bytes))
        .transpose()
}

/// False when `record` is plain JSON that lacks one of `needles`: it
/// cannot be one a query picks, and is skipped without decoding. Packed
/// records are decoded.
fn may_hold(record: &[u8], needles: &[Vec<u8>]) -> bool {
    !searchable(record)
        || needles
            .iter()
            .all(|needle| memchr::memmem::find(record, needle).is_some())
}

/// What an earlier version kept of each record in its index: the status
/// and the time it finished.
#[derive(Deserialize)]
struct Head {
    status: Status,
    #[serde(default)]
    finished_at_ms: Option<u64>,
}

/// Moves a log kept by an earlier version (a sled database of its own at
/// `old`) into `journal`, then deletes it.
pub(super) fn adopt_old_log(old: &Path, journal: &Journal) -> Result<usize, StoreError> {
    if !old.join("conf").exists() {
        return Ok(0);
    }
    let moved = {
        let db = sled::Config::new().path(old).open()?;
        let tree = db.open_tree(super::OLD_LOG)?;
        let mut moved = 0;
        for item in tree.iter() {
            let (key, bytes) = item?;
            let head: Head = decode(&key, &bytes)?;
            let id = String::from_utf8_lossy(&key);
            journal.append(
                &id,
                head.status,
                head.finished_at_ms.unwrap_or_default(),
                &bytes,
            )?;
            moved += 1;
        }
        journal.sync()?;
        moved
    };
    std::fs::remove_dir_all(old)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::delivery::test_support::delivery;
    use crate::store::log::Finished;

    /// A log kept by an earlier version, a sled database of its own, is
    /// moved into the journal when the store opens, and then deleted.
    #[test]
    fn a_log_in_an_earlier_versions_database_is_moved_into_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (delivered, dead) = (delivery("a", 0, 1), delivery("b", 0, 2));
        {
            let old = sled::open(dir.path().join(super::super::OLD_LOG)).unwrap();
            let tree = old.open_tree(super::super::OLD_LOG).unwrap();
            let records = [
                Finished::delivered(&delivered, 5),
                Finished::dead(&dead, "gave up", 6),
            ];
            for finished in records {
                tree.insert(finished.delivery.id.as_bytes(), finished.record())
                    .unwrap();
            }
            old.flush().unwrap();
        }
        let db = super::super::open_in(dir.path());
        let shown = db.delivery(&delivered.id).unwrap();
        assert_eq!(
            (shown.status, shown.finished_at_ms),
            (Status::Delivered, Some(5))
        );
        let shown = db.delivery(&dead.id).unwrap();
        assert_eq!(shown.status, Status::Dead);
        assert_eq!(shown.reason.as_deref(), Some("gave up"));
        assert!(!dir.path().join(super::super::OLD_LOG).exists());
        drop(db);
        let db = super::super::open_in(dir.path());
        assert_eq!(db.deliveries(&Query::default()).unwrap().len(), 2);
    }
}
