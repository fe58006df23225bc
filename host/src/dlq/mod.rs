//! The dead-letter queue: deliveries that will not be retried any more, and
//! input that never became an event, each with the reason. Entries are kept
//! until they are retried or purged; the key is the delivery id (a v7 UUID),
//! so iteration order is the order in which events were accepted.

pub mod redact;

use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::outbox::{decode, existed, now_ms, Delivery, Store, StoreError};

/// What died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// A delivery whose attempts failed for good.
    Delivery(Box<Delivery>),
    /// A message from a source that is not an event wasmhook understands.
    Input {
        /// The source it came from.
        source: String,
        /// The message, as received (lossy UTF-8).
        raw: String,
    },
}

/// One DLQ entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The delivery id (or a fresh id for rejected input).
    pub id: String,
    /// When it was moved here, unix milliseconds.
    pub failed_at_ms: u64,
    /// Why it died.
    pub reason: String,
    /// The delivery or the input.
    pub failure: Failure,
}

/// The flat view `dlq list` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Entry id, for `dlq show` and `dlq retry`.
    pub id: String,
    /// Observer name (empty for rejected input).
    pub observer: String,
    /// Target URL (empty for rejected input).
    pub url: String,
    /// The event's id (empty for rejected input).
    pub event_id: String,
    /// Attempts made.
    pub attempts: usize,
    /// Status of the last attempt, if it got a response.
    pub last_status: Option<u16>,
    /// The last attempt's error, or the reason.
    pub last_error: Option<String>,
    /// Why it died.
    pub reason: String,
    /// When it died, RFC 3339.
    pub failed_at: String,
}

/// Which entries an operation applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Only entries of this observer.
    pub observer: Option<String>,
    /// Only entries that died at least this many milliseconds ago.
    pub older_than_ms: Option<u64>,
    /// Only entries that died at or after this time (unix milliseconds).
    pub since_ms: Option<u64>,
    /// Only entries that died before this time (unix milliseconds).
    pub until_ms: Option<u64>,
}

impl Filter {
    fn admits(&self, letter: &DeadLetter, now: u64) -> bool {
        let observer_ok = match (&self.observer, &letter.failure) {
            (None, _) => true,
            (Some(name), Failure::Delivery(d)) => &d.observer == name,
            (Some(_), Failure::Input { .. }) => false,
        };
        let age_ok = self
            .older_than_ms
            .is_none_or(|age| now.saturating_sub(letter.failed_at_ms) >= age);
        let since_ok = self.since_ms.is_none_or(|t| letter.failed_at_ms >= t);
        let until_ok = self.until_ms.is_none_or(|t| letter.failed_at_ms < t);
        observer_ok && age_ok && since_ok && until_ok
    }
}

impl DeadLetter {
    /// The flat view of this entry.
    pub fn summary(&self) -> Summary {
        let failed_at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.failed_at_ms),
        )
        .to_string();
        match &self.failure {
            Failure::Delivery(d) => {
                let last = d.attempts.last();
                Summary {
                    id: self.id.clone(),
                    observer: d.observer.clone(),
                    url: d
                        .payload
                        .as_ref()
                        .map(|p| redact::url(&p.url))
                        .unwrap_or_default(),
                    event_id: d.event.id.clone(),
                    attempts: d.attempts.len(),
                    last_status: last.and_then(|a| a.status),
                    last_error: last
                        .and_then(|a| a.error.clone())
                        .or_else(|| Some(self.reason.clone())),
                    reason: self.reason.clone(),
                    failed_at,
                }
            }
            Failure::Input { source, .. } => Summary {
                id: self.id.clone(),
                observer: String::new(),
                url: String::new(),
                event_id: String::new(),
                attempts: 0,
                last_status: None,
                last_error: Some(format!("{source}: {}", self.reason)),
                reason: self.reason.clone(),
                failed_at,
            },
        }
    }
}

impl Store {
    /// Entries matching the filter, oldest first.
    pub fn dlq_list(&self, filter: &Filter) -> Result<Vec<DeadLetter>, StoreError> {
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.dlq.iter() {
            let (key, bytes) = item?;
            let letter: DeadLetter = decode(&key, &bytes)?;
            if filter.admits(&letter, now) {
                out.push(letter);
            }
        }
        Ok(out)
    }

    /// One entry.
    pub fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        let bytes = self
            .dlq
            .get(id.as_bytes())?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        decode(id.as_bytes(), &bytes)
    }

    /// Removes matching entries; returns how many.
    pub async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        let doomed = self.dlq_list(filter)?;
        for letter in &doomed {
            self.dlq_remove(letter.id.as_bytes())?;
        }
        self.flush().await?;
        Ok(doomed.len())
    }

    /// Puts every matching delivery back into the outbox (rejected input
    /// cannot be retried and is skipped), the n-th due `n * spacing` from
    /// now so a large replay does not hit receivers at once; returns the new
    /// outbox keys with their due times.
    pub fn requeue_all(
        &self,
        filter: &Filter,
        spacing: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut keys = Vec::new();
        let now = now_ms();
        for letter in self.dlq_list(filter)? {
            if matches!(letter.failure, Failure::Delivery(_)) {
                let due = now + spacing.as_millis() as u64 * keys.len() as u64;
                keys.push((self.requeue_at(&letter.id, due)?, due));
            }
        }
        Ok(keys)
    }

    /// Enforces `retention` (entries older are deleted) and `max_bytes`
    /// (the oldest entries go first until the DLQ fits); returns how many
    /// were deleted. Oldest first is the key order: ids are v7 UUIDs.
    pub fn dlq_enforce(
        &self,
        retention: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        if let Some(retention) = retention {
            let filter = Filter {
                older_than_ms: Some(retention.as_millis() as u64),
                ..Filter::default()
            };
            for letter in self.dlq_list(&filter)? {
                self.dlq_remove(letter.id.as_bytes())?;
                removed += 1;
            }
        }
        if let Some(max) = max_bytes {
            let mut total: u64 = self
                .dlq
                .iter()
                .values()
                .filter_map(Result::ok)
                .map(|v| v.len() as u64)
                .sum();
            let mut entries = self.dlq.iter();
            while total > max {
                let Some(item) = entries.next() else { break };
                let (key, value) = item?;
                self.dlq_remove(&key)?;
                total = total.saturating_sub(value.len() as u64);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Number of entries.
    pub fn dlq_len(&self) -> usize {
        self.counts.dlq_len()
    }

    fn dlq_remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let previous = self.dlq.remove(key)?;
        self.counts.dlq(0, existed(&previous));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;
    use crate::outbox::Delivery;

    /// A fresh, never attempted delivery of event `i`.
    fn delivery(observer: &str, webhook: usize, i: usize) -> Delivery {
        Delivery {
            id: crate::source::envelope::new_id(),
            observer: observer.into(),
            webhook,
            event: order_update(serde_json::json!({}), serde_json::json!({"i": i})),
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

    fn bury(store: &Store, n: usize, failed_at_ms: u64) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let delivery = delivery(&format!("o{}", i % 2), 0, i);
            let letter = DeadLetter {
                id: delivery.id.clone(),
                failed_at_ms,
                reason: "test".into(),
                failure: Failure::Delivery(Box::new(delivery)),
            };
            store
                .dlq
                .insert(letter.id.as_bytes(), crate::outbox::encode(&letter))
                .unwrap();
            store.counts.dlq(1, 0);
            ids.push(letter.id);
        }
        ids
    }

    /// The kept counts against sled's own (which walks the tree) after
    /// every kind of write, and after reopening.
    #[tokio::test]
    async fn kept_counts_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let check = |store: &Store, step: &str| {
            assert_eq!(
                (store.outbox_len(), store.dlq_len()),
                (store.outbox.len(), store.dlq.len()),
                "after {step}"
            );
        };
        let keys = store
            .enqueue(
                (0..5).map(|i| delivery("o", i, i)).collect(),
                vec![(delivery("o", 9, 9), "refused".into())],
            )
            .await
            .unwrap();
        check(&store, "enqueue");
        assert_eq!((store.outbox_len(), store.dlq_len()), (5, 1));
        store.release(keys[1]).unwrap();
        let first = store.get(keys[0]).unwrap().unwrap();
        store.reschedule(keys[0], &first).unwrap();
        check(&store, "release and reschedule");
        store.complete(keys[0]).unwrap();
        store.complete(keys[0]).unwrap();
        check(&store, "complete, twice");
        let dead = store.get(keys[1]).unwrap().unwrap();
        let letter = store.bury(keys[1], dead, "gone".into()).unwrap();
        check(&store, "bury");
        store.requeue(&letter.id).unwrap();
        check(&store, "requeue");
        store
            .reject_input("http", b"nonsense", "not an envelope".into())
            .await
            .unwrap();
        check(&store, "reject_input");
        assert_eq!((store.outbox_len(), store.dlq_len()), (4, 2));
        store.dlq_purge(&Filter::default()).await.unwrap();
        check(&store, "purge");
        drop(store);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        check(&store, "reopen");
        assert_eq!((store.outbox_len(), store.dlq_len()), (4, 0));
    }

    #[test]
    fn retention_removes_old_entries_and_size_removes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let week_ago = now_ms() - 8 * 24 * 3600 * 1000;
        bury(&store, 3, week_ago);
        let recent = bury(&store, 4, now_ms());
        let removed = store
            .dlq_enforce(Some(Duration::from_secs(7 * 24 * 3600)), None)
            .unwrap();
        assert_eq!((removed, store.dlq_len()), (3, 4));

        let one = store.dlq.get(recent[0].as_bytes()).unwrap().unwrap().len() as u64;
        let removed = store.dlq_enforce(None, Some(one * 2)).unwrap();
        assert_eq!(removed, 2);
        let left: Vec<String> = store
            .dlq_list(&Filter::default())
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(left, recent[2..].to_vec(), "the oldest go first");
    }

    #[test]
    fn filters_by_observer_and_time_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        bury(&store, 4, 1_000);
        bury(&store, 2, 5_000);
        let count = |f: Filter| store.dlq_list(&f).unwrap().len();
        assert_eq!(count(Filter::default()), 6);
        assert_eq!(
            count(Filter {
                observer: Some("o1".into()),
                ..Filter::default()
            }),
            3
        );
        assert_eq!(
            count(Filter {
                since_ms: Some(5_000),
                ..Filter::default()
            }),
            2
        );
        assert_eq!(
            count(Filter {
                until_ms: Some(5_000),
                ..Filter::default()
            }),
            4
        );
        assert_eq!(
            count(Filter {
                since_ms: Some(1_000),
                until_ms: Some(1_001),
                ..Filter::default()
            }),
            4
        );
    }
}
