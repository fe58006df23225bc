//! The delivery log in sled: one tree of finished deliveries keyed by
//! delivery id, so keys are in the order events were accepted. Pending
//! deliveries are the outbox's; see `store::log`.

use super::counts::created;
use super::Database;
use crate::clock::now_ms;
use crate::store::delivery::Delivery;
use crate::store::error::StoreError;
use crate::store::log::{id_at, merge, Logged, Query, Retention, Status};
use crate::store::record::{decode, encode};

impl Database {
    /// Deliveries the query picks, newest first: finished ones from the log,
    /// pending ones from the outbox.
    pub(crate) fn deliveries(&self, query: &Query) -> Result<Vec<Logged>, StoreError> {
        let needles = query.needles();
        let mut finished = Vec::new();
        if query.wants(Status::Delivered) {
            let (low, high) = query.id_range();
            let range = match (low, high) {
                (Some(l), Some(h)) if l >= h => None,
                (Some(l), Some(h)) => Some(self.log.range(l.into_bytes()..h.into_bytes())),
                (Some(l), None) => Some(self.log.range(l.into_bytes()..)),
                (None, Some(h)) => Some(self.log.range(..h.into_bytes())),
                (None, None) => Some(self.log.iter()),
            };
            for item in range.into_iter().flatten().rev() {
                if finished.len() >= query.limit {
                    break;
                }
                let (key, bytes) = item?;
                if !may_hold(&bytes, &needles) {
                    continue;
                }
                let logged: Logged = decode(&key, &bytes)?;
                if query.admits(logged.status, &logged.delivery) {
                    finished.push(logged);
                }
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

    /// One delivery, finished or pending.
    pub(crate) fn delivery(&self, id: &str) -> Result<Logged, StoreError> {
        if let Some(bytes) = self.log.get(id.as_bytes())? {
            return decode(id.as_bytes(), &bytes);
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

    /// Sends a finished delivery again: back into the outbox due at
    /// `due_ms`, with a fresh attempt budget and the same id, out of the
    /// log (and out of the DLQ if it is there), in one step. Returns its key.
    pub(crate) fn resend(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
        let Some(bytes) = self.log.get(id.as_bytes())? else {
            return Err(match self.pending_delivery(id)? {
                Some(_) => StoreError::Pending(id.to_string()),
                None => StoreError::NoDelivery(id.to_string()),
            });
        };
        let logged: Logged = decode(id.as_bytes(), &bytes)?;
        if logged.status == Status::Dead {
            match self.requeue_at(id, due_ms) {
                Err(StoreError::NotFound(_)) => {} // purged from the DLQ
                done => return done,
            }
        }
        let key = self.db.generate_id()?;
        let delivery = Box::new(logged.delivery).revived(due_ms);
        let record = encode(&delivery);
        // Into the outbox, then out of the log (another database): a crash
        // in between leaves it in both, and a listing shows it once.
        let previous = self.outbox.insert(key.to_be_bytes(), record)?;
        self.counts.outbox(created(&previous), 0);
        self.log.remove(id.as_bytes())?;
        Ok(key)
    }

    /// Deletes finished deliveries whose event is older than `max_age`, then
    /// the oldest until the log's records fit in `max_bytes`; returns how
    /// many went.
    pub(crate) fn log_enforce(&self, retention: Retention) -> Result<usize, StoreError> {
        let mut removed = 0;
        if let Some(age) = retention.max_age {
            let cutoff = id_at(now_ms().saturating_sub(age.as_millis() as u64));
            for key in self.log.range(..cutoff.into_bytes()).keys() {
                if self.log.remove(key?)?.is_some() {
                    removed += 1;
                }
            }
        }
        if let Some(max) = retention.max_bytes {
            let mut total: u64 = self
                .log
                .iter()
                .values()
                .filter_map(Result::ok)
                .map(|v| v.len() as u64)
                .sum();
            let mut records = self.log.iter();
            while total > max {
                let Some(item) = records.next() else { break };
                let (key, value) = item?;
                if self.log.remove(&key)?.is_some() {
                    removed += 1;
                }
                total = total.saturating_sub(value.len() as u64);
            }
        }
        Ok(removed)
    }
}

/// False when `record` is plain JSON that lacks one of `needles`: it
/// cannot be one a query picks, and is skipped without decoding. Packed
/// records are decoded.
fn may_hold(record: &[u8], needles: &[Vec<u8>]) -> bool {
    record.first() == Some(&crate::store::record::PACKED)
        || needles
            .iter()
            .all(|needle| memchr::memmem::find(record, needle).is_some())
}
