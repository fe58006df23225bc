//! The dead-letter queue in PostgreSQL: one row per letter, keyed by its
//! id. Ids are v7 UUIDs compared in "C" order, so `ORDER BY id` lists the
//! entries in the order sled's keys do: oldest first. Filters are SQL, and
//! say what [`Filter::admits`] says.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{sql_i64, Database};
use crate::clock::{self, now_ms};
use crate::store::error::StoreError;
use crate::store::letter::{DeadLetter, Failure, Filter, Page};
use crate::store::record::{decode, encode};

/// [`Filter`] as SQL, on `$1` (observer), `$2` (died at or before),
/// `$3` (since) and `$4` (until); see [`Bounds`].
const FILTER: &str = "\
    ($1::text IS NULL OR observer = $1) \
    AND ($2::bigint IS NULL OR failed_at_ms <= $2) \
    AND ($3::bigint IS NULL OR failed_at_ms >= $3) \
    AND ($4::bigint IS NULL OR failed_at_ms < $4)";

/// The parameters of [`FILTER`] for a filter at `now`.
struct Bounds {
    observer: Option<String>,
    died_by: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
}

impl Bounds {
    fn of(filter: &Filter, now: u64) -> Bounds {
        Bounds {
            observer: filter.observer.clone(),
            // "At least this long ago" is "at or before now minus it"; an age
            // of 0 admits every entry, even one stamped ahead of this clock.
            died_by: filter
                .older_than_ms
                .filter(|age| *age > 0)
                .map(|age| sql_i64(now).saturating_sub(sql_i64(age))),
            since: filter.since_ms.map(sql_i64),
            until: filter.until_ms.map(sql_i64),
        }
    }
}

/// DLQ rows about to be inserted, column by column.
pub(super) struct Letters {
    pub(super) id: Vec<String>,
    pub(super) failed_at_ms: Vec<i64>,
    pub(super) observer: Vec<Option<String>>,
    pub(super) retryable: Vec<bool>,
    pub(super) record: Vec<Vec<u8>>,
}

impl Letters {
    /// The rows of these letters; of two with one id, the later is kept
    /// (sled's insert replaces too).
    pub(super) fn of(letters: &[DeadLetter]) -> Letters {
        let mut rows = Letters {
            id: Vec::with_capacity(letters.len()),
            failed_at_ms: Vec::with_capacity(letters.len()),
            observer: Vec::with_capacity(letters.len()),
            retryable: Vec::with_capacity(letters.len()),
            record: Vec::with_capacity(letters.len()),
        };
        for (i, letter) in letters.iter().enumerate() {
            if letters[i + 1..].iter().any(|later| later.id == letter.id) {
                continue;
            }
            let observer = match &letter.failure {
                Failure::Delivery(delivery) => Some(delivery.observer.clone()),
                Failure::Input { .. } => None,
            };
            rows.id.push(letter.id.clone());
            rows.failed_at_ms.push(sql_i64(letter.failed_at_ms));
            rows.retryable.push(observer.is_some());
            rows.observer.push(observer);
            rows.record.push(encode(letter));
        }
        rows
    }
}

/// Inserts letters (replacing any with the same id) in one statement.
pub(super) async fn insert_letters(
    client: &impl GenericClient,
    rows: Letters,
) -> Result<(), StoreError> {
    if rows.id.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "INSERT INTO dlq (id, failed_at_ms, observer, retryable, record) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bool[], $5::bytea[]) \
             ON CONFLICT (id) DO UPDATE SET \
                 failed_at_ms = EXCLUDED.failed_at_ms, observer = EXCLUDED.observer, \
                 retryable = EXCLUDED.retryable, record = EXCLUDED.record",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &rows.id,
                &rows.failed_at_ms,
                &rows.observer,
                &rows.retryable,
                &rows.record,
            ],
        )
        .await?;
    Ok(())
}

fn letter_of(id: &str, bytes: &[u8]) -> Result<DeadLetter, StoreError> {
    decode(format!("dlq/{id}").as_bytes(), bytes)
}

impl Database {
    /// Records input that never became an event (unknown envelope) in the DLQ.
    pub(crate) async fn reject_input(
        &self,
        source: &str,
        raw: &[u8],
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        let letter = DeadLetter {
            id: clock::new_id(),
            failed_at_ms: now_ms(),
            reason,
            failure: Failure::Input {
                source: source.to_string(),
                raw: String::from_utf8_lossy(raw).into_owned(),
            },
        };
        let client = self.client().await?;
        insert_letters(&client, Letters::of(std::slice::from_ref(&letter))).await?;
        Ok(letter)
    }

    /// Stores a letter as it is, for tests that need one of a given age.
    #[cfg(test)]
    pub(crate) async fn insert_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_letters(&client, Letters::of(std::slice::from_ref(letter))).await
    }

    /// Entries matching the filter, oldest first, from the page's start.
    pub(crate) async fn dlq_list(
        &self,
        filter: &Filter,
        page: &Page,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let bounds = Bounds::of(filter, now_ms());
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT id, record FROM dlq WHERE {FILTER} \
                 AND ($5::text IS NULL OR id > $5) ORDER BY id LIMIT $6"
            ))
            .await?;
        // LIMIT NULL is no limit.
        let limit = page.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        client
            .query(
                &statement,
                &[
                    &bounds.observer,
                    &bounds.died_by,
                    &bounds.since,
                    &bounds.until,
                    &page.after,
                    &limit,
                ],
            )
            .await?
            .iter()
            .map(|row| letter_of(row.get(0), row.get(1)))
            .collect()
    }

    /// One entry.
    pub(crate) async fn dlq_get(&self, id: &str) -> Result<DeadLetter, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT record FROM dlq WHERE id = $1")
            .await?;
        match client.query_opt(&statement, &[&id]).await? {
            Some(row) => letter_of(id, row.get(0)),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// Removes matching entries; returns how many.
    pub(crate) async fn dlq_purge(&self, filter: &Filter) -> Result<usize, StoreError> {
        let bounds = Bounds::of(filter, now_ms());
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!("DELETE FROM dlq WHERE {FILTER}"))
            .await?;
        let removed = client
            .execute(
                &statement,
                &[
                    &bounds.observer,
                    &bounds.died_by,
                    &bounds.since,
                    &bounds.until,
                ],
            )
            .await?;
        Ok(removed as usize)
    }

    /// Puts a DLQ entry back into the outbox, due now, with a fresh attempt
    /// budget (its earlier attempts move to `earlier_attempts`), in one
    /// transaction. Returns its key, owned by this node.
    pub(crate) async fn requeue(&self, id: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let take = transaction
            .prepare_cached("DELETE FROM dlq WHERE id = $1 AND retryable RETURNING record")
            .await?;
        let Some(row) = transaction.query_opt(&take, &[&id]).await? else {
            // Nothing taken: no such entry, or input that cannot be retried
            // (left where it is).
            let look = transaction
                .prepare_cached("SELECT 1 FROM dlq WHERE id = $1")
                .await?;
            return Err(match transaction.query_opt(&look, &[&id]).await? {
                Some(_) => StoreError::NotRetryable(id.to_string()),
                None => StoreError::NotFound(id.to_string()),
            });
        };
        let letter = letter_of(id, row.get(0))?;
        let Failure::Delivery(delivery) = letter.failure else {
            return Err(StoreError::NotRetryable(id.to_string()));
        };
        let delivery = delivery.revived(now_ms());
        // Pending again: out of the delivery log until it finishes.
        let unlog = transaction
            .prepare_cached("DELETE FROM delivery_log WHERE id = $1")
            .await?;
        transaction.execute(&unlog, &[&id]).await?;
        let key = self.insert_one(&transaction, &delivery).await?;
        transaction.commit().await?;
        Ok(key)
    }

    /// Puts every matching delivery back into the outbox (rejected input
    /// cannot be retried and stays), the n-th due `n * spacing` from now,
    /// in one transaction; returns the new outbox keys with their due times.
    pub(crate) async fn requeue_all(
        &self,
        filter: &Filter,
        spacing: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let now = now_ms();
        let step = spacing.as_millis() as u64;
        let bounds = Bounds::of(filter, now);
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let take = transaction
            .prepare_cached(&format!(
                "DELETE FROM dlq WHERE retryable AND {FILTER} RETURNING id, record"
            ))
            .await?;
        let mut taken: Vec<(String, Vec<u8>)> = transaction
            .query(
                &take,
                &[
                    &bounds.observer,
                    &bounds.died_by,
                    &bounds.since,
                    &bounds.until,
                ],
            )
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        // RETURNING has no order; the listing's is the ids'.
        taken.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut deliveries = Vec::with_capacity(taken.len());
        for (n, (id, bytes)) in taken.iter().enumerate() {
            let letter = letter_of(id, bytes)?;
            let Failure::Delivery(delivery) = letter.failure else {
                return Err(StoreError::NotRetryable(id.clone()));
            };
            deliveries.push(delivery.revived(now + step * n as u64));
        }
        let unlog = transaction
            .prepare_cached("DELETE FROM delivery_log WHERE id = ANY($1)")
            .await?;
        let ids: Vec<&str> = taken.iter().map(|(id, _)| id.as_str()).collect();
        transaction.execute(&unlog, &[&ids]).await?;
        let keys = Self::reserve_keys(&transaction, deliveries.len()).await?;
        let keyed: Vec<(u64, &crate::store::delivery::Delivery)> =
            keys.iter().copied().zip(&deliveries).collect();
        self.insert_deliveries(&transaction, &keyed).await?;
        transaction.commit().await?;
        Ok(keys
            .into_iter()
            .zip(deliveries.iter().map(|d| d.due_ms))
            .collect())
    }

    /// Enforces `retention` (entries older are deleted) and `max_bytes`
    /// (the oldest entries go first until the DLQ fits); returns how many
    /// were deleted. An entry's bytes are its record's, as sled counts them.
    pub(crate) async fn dlq_enforce(
        &self,
        retention: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        if let Some(retention) = retention {
            removed += self
                .dlq_purge(&Filter {
                    older_than_ms: Some(retention.as_millis() as u64),
                    ..Filter::default()
                })
                .await?;
        }
        if let Some(max) = max_bytes {
            let client = self.client().await?;
            // An entry goes when it and every newer one still weigh more
            // than `max`: what removing the oldest first, one by one, until
            // the rest fits would remove.
            let statement = client
                .prepare_cached(
                    "WITH weighed AS ( \
                         SELECT id, sum(octet_length(record)) OVER ( \
                             ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW \
                         ) AS from_here \
                         FROM dlq) \
                     DELETE FROM dlq USING weighed \
                     WHERE dlq.id = weighed.id AND weighed.from_here > $1",
                )
                .await?;
            removed += client.execute(&statement, &[&sql_i64(max)]).await? as usize;
        }
        Ok(removed)
    }

    /// Number of entries.
    pub(crate) async fn dlq_len(&self) -> usize {
        self.count("SELECT count(*) FROM dlq", &self.dlq_seen).await
    }
}
