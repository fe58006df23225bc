//! The dead-letter queue: deliveries that will not be retried any more, and
//! input that never became an event, each with the reason. Entries are kept
//! until they are retried or purged. An entry's key is its delivery id (a v7
//! UUID), or, for the letters of one accepted batch, the part of their ids
//! they share ([`grave`]); either way iteration order is the order in which
//! events were accepted.

pub mod grave;
pub mod redact;

use serde::{Deserialize, Serialize};

use std::cell::Cell;
use std::time::Duration;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use crate::clock::now_ms;
use crate::outbox::{created, encode, tx_error, Delivery, Store, StoreError};

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
        Ok(self
            .dlq_scan(filter)?
            .into_iter()
            .flat_map(|(_, letters)| letters)
            .collect())
    }

    /// The entries matching the filter with the key of the record holding
    /// them, oldest first.
    fn dlq_scan(&self, filter: &Filter) -> Result<Vec<(sled::IVec, Vec<DeadLetter>)>, StoreError> {
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.dlq.iter() {
            let (key, bytes) = item?;
            let mut letters = grave::letters(&key, &bytes)?;
            letters.retain(|letter| filter.admits(letter, now));
            if !letters.is_empty() {
                out.push((key, letters));
            }
        }
        Ok(out)
    }

    /// One entry: under its own id, or in its grave.
    pub fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        let own = id.as_bytes().to_vec();
        for key in std::iter::once(own).chain(grave::key_of(id)) {
            if let Some(bytes) = self.dlq.get(&key)? {
                let mut letters = grave::letters(&key, &bytes)?.into_iter();
                if let Some(letter) = letters.find(|letter| letter.id == id) {
                    return Ok(letter);
                }
            }
        }
        Err(StoreError::NotFound(id.to_string()))
    }

    /// The key of the record holding the entry `id`: its own, or its grave's.
    fn dlq_record_of(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        if self.dlq.contains_key(id.as_bytes())? {
            return Ok(id.as_bytes().to_vec());
        }
        match grave::key_of(id) {
            Some(key) if self.dlq.contains_key(&key)? => Ok(key),
            _ => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// Removes matching entries; returns how many.
    pub async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        let removed = self.dlq_remove_matching(filter)?;
        self.flush().await?;
        Ok(removed)
    }

    /// Puts a DLQ entry back into the outbox, due now, with a fresh attempt
    /// budget (its earlier attempts move to `earlier_attempts`). Returns its key.
    pub fn requeue(&self, id: &str) -> Result<u64, StoreError> {
        self.requeue_at(id, now_ms())
    }

    /// Like [`Store::requeue`], due at `due_ms`.
    pub fn requeue_at(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
        let record = self.dlq_record_of(id)?;
        self.dlq_requeue(&record, &[(id, due_ms)])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Puts every matching delivery back into the outbox (rejected input
    /// cannot be retried and is skipped), the n-th due `n * spacing` from
    /// now so a large replay does not hit receivers at once; returns the new
    /// outbox keys with their due times. A grave is rewritten once, not
    /// once per letter.
    pub fn requeue_all(
        &self,
        filter: &Filter,
        spacing: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        let (now, step) = (now_ms(), spacing.as_millis() as u64);
        for (record, letters) in self.dlq_scan(filter)? {
            let picks: Vec<(&str, u64)> = letters
                .iter()
                .filter(|letter| matches!(letter.failure, Failure::Delivery(_)))
                .enumerate()
                .map(|(i, letter)| (letter.id.as_str(), now + step * (out.len() + i) as u64))
                .collect();
            if picks.is_empty() {
                continue;
            }
            let keys = self.dlq_requeue(&record, &picks)?;
            out.extend(keys.into_iter().zip(picks.iter().map(|&(_, due)| due)));
        }
        Ok(out)
    }

    /// Moves these entries of one record into the outbox, each due at its
    /// time, in one transaction; returns their outbox keys in order.
    fn dlq_requeue(&self, record: &[u8], picks: &[(&str, u64)]) -> Result<Vec<u64>, StoreError> {
        let keys = picks
            .iter()
            .map(|_| self.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        let abort = ConflictableTransactionError::Abort;
        let missing = |id: &str| abort(StoreError::NotFound(id.to_string()));
        // What the transaction's last (committed) run found.
        let (left, arrived) = (Cell::new(0), Cell::new(0));
        (&self.outbox, &self.dlq)
            .transaction(|(outbox, dlq)| {
                let Some(bytes) = dlq.get(record)? else {
                    return Err(missing(picks.first().map_or("", |p| p.0)));
                };
                let mut letters = grave::letters(record, &bytes).map_err(abort)?;
                let mut created_now = 0;
                for (&(id, due_ms), key) in picks.iter().zip(&keys) {
                    let Some(at) = letters.iter().position(|letter| letter.id == id) else {
                        return Err(missing(id));
                    };
                    let Failure::Delivery(delivery) = letters.remove(at).failure else {
                        return Err(abort(StoreError::NotRetryable(id.to_string())));
                    };
                    let delivery = delivery.revived(due_ms);
                    created_now += created(&outbox.insert(&key.to_be_bytes(), encode(&delivery))?);
                }
                match grave::rest(record, &letters) {
                    Some(rest) => dlq.insert(record, rest)?,
                    None => dlq.remove(record)?,
                };
                left.set(picks.len() as u64);
                arrived.set(created_now);
                Ok(())
            })
            .map_err(tx_error)?;
        self.counts.dlq(0, left.get());
        self.counts.outbox(arrived.get(), 0);
        Ok(keys)
    }

    /// Enforces `retention` (entries older are deleted) and `max_bytes`
    /// (the oldest entries go first until the DLQ fits); returns how many
    /// were deleted. Oldest first is the key order: ids are v7 UUIDs. A
    /// grave goes whole for `max_bytes`, so up to [`crate::clock::Family::SIZE`]
    /// entries more than needed may go.
    pub fn dlq_enforce(
        &self,
        retention: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        if let Some(retention) = retention {
            removed += self.dlq_remove_matching(&Filter {
                older_than_ms: Some(retention.as_millis() as u64),
                ..Filter::default()
            })?;
        }
        if let Some(max) = max_bytes {
            let mut total: u64 = self
                .dlq
                .iter()
                .values()
                .filter_map(Result::ok)
                .map(|v| v.len() as u64)
                .sum();
            let mut records = self.dlq.iter();
            while total > max {
                let Some(item) = records.next() else { break };
                let (key, value) = item?;
                if let Some(gone) = self.dlq.remove(&key)? {
                    let n = grave::count(&key, &gone);
                    self.counts.dlq(0, n);
                    removed += n as usize;
                }
                total = total.saturating_sub(value.len() as u64);
            }
        }
        Ok(removed)
    }

    /// Number of entries.
    pub fn dlq_len(&self) -> usize {
        self.counts.dlq_len()
    }

    /// Removes the entries matching the filter; returns how many.
    fn dlq_remove_matching(&self, filter: &Filter) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (record, letters) in self.dlq_scan(filter)? {
            let doomed: Vec<&str> = letters.iter().map(|l| l.id.as_str()).collect();
            removed += self.dlq_take(&record, &doomed)?;
        }
        Ok(removed)
    }

    /// Removes these entries from one record (the record goes when none is
    /// left); returns how many were there.
    fn dlq_take(&self, record: &[u8], ids: &[&str]) -> Result<usize, StoreError> {
        let removed = self
            .dlq
            .transaction(|dlq| {
                let Some(bytes) = dlq.get(record)? else {
                    return Ok(0);
                };
                let mut letters =
                    grave::letters(record, &bytes).map_err(ConflictableTransactionError::Abort)?;
                let before = letters.len();
                letters.retain(|letter| !ids.contains(&letter.id.as_str()));
                if letters.len() < before {
                    match grave::rest(record, &letters) {
                        Some(rest) => dlq.insert(record, rest)?,
                        None => dlq.remove(record)?,
                    };
                }
                Ok(before - letters.len())
            })
            .map_err(tx_error)?;
        self.counts.dlq(0, removed as u64);
        Ok(removed)
    }
}

/// Entries in a DLQ tree, counted once at open.
pub(crate) fn count_all(dlq: &sled::Tree) -> Result<u64, StoreError> {
    let mut n = 0;
    for item in dlq.iter() {
        let (key, bytes) = item?;
        n += grave::count(&key, &bytes);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::test_support::delivery;

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

    /// The ids of every entry, in listing order.
    fn listed(store: &Store) -> Vec<String> {
        store
            .dlq_list(&Filter::default())
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect()
    }

    /// `n` deliveries of one family (one accepted batch), of observers o0
    /// and o1 in turn, refused at acceptance.
    fn refused(family: &mut crate::clock::Family, n: usize) -> Vec<(Delivery, String)> {
        (0..n)
            .map(|i| {
                let mut refused = delivery(&format!("o{}", i % 2), 0, i);
                refused.id = family.next_id();
                (refused, format!("refused {i}"))
            })
            .collect()
    }

    /// The letters of one accepted batch share a record, and every DLQ
    /// operation still works letter by letter.
    #[tokio::test]
    async fn a_batch_of_letters_is_one_record_and_each_letter_still_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let mut family = crate::clock::Family::default();
        let dead = refused(&mut family, 6);
        let ids: Vec<String> = dead.iter().map(|(d, _)| d.id.clone()).collect();
        store
            .enqueue(vec![delivery("o", 0, 0)], dead)
            .await
            .unwrap();
        assert_eq!(
            (store.dlq.len(), store.dlq_len()),
            (1, 6),
            "one record, six letters"
        );
        assert_eq!(listed(&store), ids);
        let third = store.dlq_get(&ids[2]).unwrap();
        assert_eq!(
            (third.id.as_str(), third.reason.as_str()),
            (ids[2].as_str(), "refused 2")
        );
        assert!(matches!(
            store.dlq_get(&crate::clock::Family::default().next_id()),
            Err(StoreError::NotFound(_))
        ));

        // Retry one: it leaves the grave for the outbox, with its id.
        let key = store.requeue(&ids[2]).unwrap();
        assert_eq!(store.get(key).unwrap().unwrap().id, ids[2]);
        assert!(matches!(
            store.dlq_get(&ids[2]),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.requeue(&ids[2]),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!((store.outbox_len(), store.dlq_len()), (2, 5));

        // Purge one observer's: the others stay in the grave.
        let o1 = Filter {
            observer: Some("o1".into()),
            ..Filter::default()
        };
        assert_eq!(store.dlq_purge(&o1).await.unwrap(), 3);
        assert_eq!(listed(&store), vec![ids[0].clone(), ids[4].clone()]);

        // Retry the rest at once, spaced: the grave goes.
        let requeued = store
            .requeue_all(&Filter::default(), Duration::from_millis(10))
            .unwrap();
        assert_eq!(requeued.len(), 2);
        assert_eq!(requeued[1].1 - requeued[0].1, 10);
        assert_eq!(
            (store.dlq.len(), store.dlq_len(), store.outbox_len()),
            (0, 0, 4)
        );

        // Counted again at open, letter by letter.
        store
            .enqueue(Vec::new(), refused(&mut family, 3))
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.dlq_len(), 3);
        assert_eq!(
            store.dlq_enforce(None, Some(1)).unwrap(),
            3,
            "a grave goes whole"
        );
        assert_eq!(store.dlq_len(), 0);
    }

    /// The kept counts against sled's own (which walks the tree) after
    /// every kind of write, and after reopening.
    #[tokio::test]
    async fn kept_counts_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let check = |store: &Store, step: &str| {
            let letters = store.dlq_list(&Filter::default()).unwrap().len();
            assert_eq!(
                (store.outbox_len(), store.dlq_len()),
                (store.outbox.len(), letters),
                "after {step}"
            );
        };
        let keys = store
            .enqueue(
                (0..5).map(|i| delivery("o", i, i)).collect(),
                refused(&mut crate::clock::Family::default(), 2),
            )
            .await
            .unwrap();
        check(&store, "enqueue");
        assert_eq!((store.outbox_len(), store.dlq_len()), (5, 2));
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
        assert_eq!((store.outbox_len(), store.dlq_len()), (4, 3));
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
        assert_eq!(listed(&store), recent[2..].to_vec(), "the oldest go first");
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
