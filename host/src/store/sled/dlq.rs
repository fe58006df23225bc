//! The dead-letter queue: deliveries that will not be retried any more, and
//! input that never became an event, each with the reason. Entries are kept
//! until they are retried or purged. An entry's key is its delivery id (a v7
//! UUID), or, for the letters of one accepted batch, the part of their ids
//! they share ([`graves`]); either way iteration order is the order in which
//! events were accepted.

use std::cell::Cell;
use std::time::Duration;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::counts::created;
use super::{graves, tx_error, Database};
use crate::clock::{self, now_ms};
use crate::store::error::StoreError;
use crate::store::letter::{DeadLetter, Failure, Filter, Page};
use crate::store::record::encode;

impl Database {
    /// Records input that never became an event (unknown envelope) in the DLQ.
    pub(crate) async fn reject_input(
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

    /// Stores a letter as it is, under its own id, for tests that need
    /// one of a given age.
    #[cfg(test)]
    pub(crate) fn insert_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let previous = self.dlq.insert(letter.id.as_bytes(), encode(letter))?;
        self.counts.dlq(created(&previous), 0);
        Ok(())
    }

    /// Entries matching the filter, oldest first, from the page's start.
    pub(crate) fn dlq_list(
        &self,
        filter: &Filter,
        page: &Page,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let now = now_ms();
        let limit = page.limit.unwrap_or(usize::MAX);
        // A grave's key sorts just before its letters' own keys would.
        let start = match page.after.as_deref() {
            Some(after) => graves::key_of(after).unwrap_or_else(|| after.as_bytes().to_vec()),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for item in self.dlq.range(start..) {
            let (key, bytes) = item?;
            for letter in graves::letters(&key, &bytes)? {
                if out.len() >= limit {
                    return Ok(out);
                }
                let past = page
                    .after
                    .as_deref()
                    .is_none_or(|after| letter.id.as_str() > after);
                if past && filter.admits(&letter, now) {
                    out.push(letter);
                }
            }
        }
        Ok(out)
    }

    /// The entries matching the filter with the key of the record holding
    /// them, oldest first.
    fn dlq_scan(&self, filter: &Filter) -> Result<Vec<(sled::IVec, Vec<DeadLetter>)>, StoreError> {
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.dlq.iter() {
            let (key, bytes) = item?;
            let mut letters = graves::letters(&key, &bytes)?;
            letters.retain(|letter| filter.admits(letter, now));
            if !letters.is_empty() {
                out.push((key, letters));
            }
        }
        Ok(out)
    }

    /// One entry: under its own id, or in its grave.
    pub(crate) fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        let own = id.as_bytes().to_vec();
        for key in std::iter::once(own).chain(graves::key_of(id)) {
            if let Some(bytes) = self.dlq.get(&key)? {
                let mut letters = graves::letters(&key, &bytes)?.into_iter();
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
        match graves::key_of(id) {
            Some(key) if self.dlq.contains_key(&key)? => Ok(key),
            _ => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// Removes matching entries; returns how many.
    pub(crate) async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        let removed = self.dlq_remove_matching(filter)?;
        self.flush().await?;
        Ok(removed)
    }

    /// Puts a DLQ entry back into the outbox, due now, with a fresh attempt
    /// budget (its earlier attempts move to `earlier_attempts`). Returns its key.
    pub(crate) fn requeue(&self, id: &str) -> Result<u64, StoreError> {
        self.requeue_at(id, now_ms())
    }

    /// Like [`Database::requeue`], due at `due_ms`.
    pub(crate) fn requeue_at(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
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
    pub(crate) fn requeue_all(
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
                let mut letters = graves::letters(record, &bytes).map_err(abort)?;
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
                match graves::rest(record, &letters) {
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
        // Pending again: out of the delivery log until it finishes. After
        // the move, so a crash leaves it in both (a listing shows it once).
        for (id, _) in picks {
            self.log.remove(id)?;
        }
        Ok(keys)
    }

    /// Enforces `retention` (entries older are deleted) and `max_bytes`
    /// (the oldest entries go first until the DLQ fits); returns how many
    /// were deleted. Oldest first is the key order: ids are v7 UUIDs. A
    /// grave goes whole for `max_bytes`, so up to [`clock::Family::SIZE`]
    /// entries more than needed may go.
    pub(crate) fn dlq_enforce(
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
                    let n = graves::count(&key, &gone);
                    self.counts.dlq(0, n);
                    removed += n as usize;
                }
                total = total.saturating_sub(value.len() as u64);
            }
        }
        Ok(removed)
    }

    /// Number of entries.
    pub(crate) fn dlq_len(&self) -> usize {
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
                    graves::letters(record, &bytes).map_err(ConflictableTransactionError::Abort)?;
                let before = letters.len();
                letters.retain(|letter| !ids.contains(&letter.id.as_str()));
                if letters.len() < before {
                    match graves::rest(record, &letters) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Family;
    use crate::store::delivery::test_support::delivery;
    use crate::store::delivery::Delivery;
    use crate::store::sled::open_in;

    fn bury(store: &Database, n: usize, failed_at_ms: u64) -> Vec<String> {
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
                .insert(letter.id.as_bytes(), encode(&letter))
                .unwrap();
            store.counts.dlq(1, 0);
            ids.push(letter.id);
        }
        ids
    }

    /// The ids of every entry, in listing order.
    fn listed(store: &Database) -> Vec<String> {
        store
            .dlq_list(&Filter::default(), &Page::default())
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect()
    }

    /// `n` deliveries of one family (one accepted batch), of observers o0
    /// and o1 in turn, refused at acceptance.
    fn refused(family: &mut Family, n: usize) -> Vec<(Delivery, String)> {
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
        let store = open_in(dir.path());
        let mut family = Family::default();
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
            store.dlq_get(&Family::default().next_id()),
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
        let store = open_in(dir.path());
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
        let store = open_in(dir.path());
        let check = |store: &Database, step: &str| {
            let letters = store
                .dlq_list(&Filter::default(), &Page::default())
                .unwrap()
                .len();
            assert_eq!(
                (store.outbox_len(), store.dlq_len()),
                (store.outbox.len(), letters),
                "after {step}"
            );
        };
        let keys = store
            .enqueue(
                (0..5).map(|i| delivery("o", i, i)).collect(),
                refused(&mut Family::default(), 2),
            )
            .await
            .unwrap();
        check(&store, "enqueue");
        assert_eq!((store.outbox_len(), store.dlq_len()), (5, 2));
        store.release(keys[1]).unwrap();
        let first = store.get(keys[0]).unwrap().unwrap();
        store.reschedule(keys[0], &first).unwrap();
        check(&store, "release and reschedule");
        store.complete(keys[0], &first).unwrap();
        store.complete(keys[0], &first).unwrap();
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
        let store = open_in(dir.path());
        check(&store, "reopen");
        assert_eq!((store.outbox_len(), store.dlq_len()), (4, 0));
    }

    #[test]
    fn retention_removes_old_entries_and_size_removes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_in(dir.path());
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
        let store = open_in(dir.path());
        bury(&store, 4, 1_000);
        bury(&store, 2, 5_000);
        let count = |f: Filter| store.dlq_list(&f, &Page::default()).unwrap().len();
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
