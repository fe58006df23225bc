//! The outbox in PostgreSQL: one row per pending delivery, owned by the
//! node that leases it.
//!
//! A row is its node's while `lease_until` is ahead: the node wrote it (or
//! released, rescheduled or adopted it) and renews the lease on a timer.
//! Another node takes over only rows whose lease has run out, and locks
//! them while it does (`FOR UPDATE SKIP LOCKED`), so two nodes never adopt
//! the same row.
//!
//! A chain (the webhooks of one observer and event, run in order) is what
//! sled keeps: each record names the key before it (`after`) and after it
//! (`next`). The `held` column says whether a delivery still waits; it is
//! the truth (a release only flips it), and reads copy it into the record.

use deadpool_postgres::GenericClient;

use super::dlq::{insert_letters, Letters};
use super::log::{LogRow, LOG_ROW};
use super::{sql_i64, sql_key, store_key, Database};
use crate::clock::now_ms;
use crate::store::delivery::{chain, Delivery, Routing};
use crate::store::error::StoreError;
use crate::store::letter::{DeadLetter, Failure};
use crate::store::log::Finished;
use crate::store::record::{decode, encode};

/// Inserts outbox rows given as parallel arrays, owned by `$10` and leased
/// for `$11` milliseconds: one statement for a whole batch.
const INSERT: &str = "\
    INSERT INTO outbox (key, due_ms, observer, webhook, event_id, delivery_id, held, \
                        after_key, attempted, owner, lease_until, record) \
    SELECT t.key, t.due_ms, t.observer, t.webhook, t.event_id, t.delivery_id, t.held, \
           t.after_key, t.attempted, $10, now() + $11::float8 * interval '1 millisecond', t.record \
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
                $7::bool[], $8::bigint[], $9::bool[], $12::bytea[]) \
         AS t(key, due_ms, observer, webhook, event_id, delivery_id, held, after_key, attempted, record)";

/// Takes rows for this node (`$1`), leased for `$2` milliseconds, at most
/// `$3` (NULL: all) of those `{which}` picks, and releases the held ones
/// whose predecessor has had its first attempt or is gone: a crash between
/// an attempt and the release must not leave a chain stuck.
const CLAIM: &str = "\
    WITH picked AS ( \
        SELECT key FROM outbox WHERE {which} \
        ORDER BY lease_until, due_ms LIMIT $3::bigint FOR UPDATE SKIP LOCKED) \
    UPDATE outbox AS o \
    SET owner = $1, \
        lease_until = now() + $2::float8 * interval '1 millisecond', \
        held = o.held AND EXISTS ( \
            SELECT 1 FROM outbox AS p WHERE p.key = o.after_key AND NOT p.attempted) \
    FROM picked WHERE o.key = picked.key \
    RETURNING o.key, o.due_ms, o.held";

/// Which rows [`CLAIM`] takes.
enum Claim {
    /// Those this node owns.
    Mine,
    /// Those of other nodes (or of none) whose lease has run out, at most
    /// this many (`None`: all).
    Expired(Option<usize>),
}

/// Outbox rows about to be inserted, column by column.
#[derive(Default)]
struct Rows {
    key: Vec<i64>,
    due_ms: Vec<i64>,
    observer: Vec<String>,
    webhook: Vec<i64>,
    event_id: Vec<String>,
    delivery_id: Vec<String>,
    held: Vec<bool>,
    after: Vec<Option<i64>>,
    attempted: Vec<bool>,
    record: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, key: u64, delivery: &Delivery) {
        self.key.push(sql_i64(key));
        self.due_ms.push(sql_i64(delivery.due_ms));
        self.observer.push(delivery.observer.clone());
        self.webhook.push(sql_i64(delivery.webhook as u64));
        self.event_id.push(delivery.event.id.clone());
        self.delivery_id.push(delivery.id.clone());
        self.held.push(delivery.held);
        self.after.push(delivery.after.and_then(sql_key));
        self.attempted.push(!delivery.attempts.is_empty());
        self.record.push(encode(delivery));
    }
}

/// The name a record has in error messages.
fn record_name(key: u64) -> Vec<u8> {
    format!("outbox/{key}").into_bytes()
}

impl Database {
    /// Takes `n` fresh keys from the outbox's sequence, ascending.
    pub(super) async fn reserve_keys(
        client: &impl GenericClient,
        n: usize,
    ) -> Result<Vec<u64>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let statement = client
            .prepare_cached("SELECT nextval('outbox_key_seq') FROM generate_series(1, $1::bigint)")
            .await?;
        let mut keys: Vec<u64> = client
            .query(&statement, &[&sql_i64(n as u64)])
            .await?
            .iter()
            .map(|row| store_key(row.get(0)))
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Inserts deliveries under their keys, owned by this node.
    pub(super) async fn insert_deliveries(
        &self,
        client: &impl GenericClient,
        keyed: &[(u64, &Delivery)],
    ) -> Result<(), StoreError> {
        if keyed.is_empty() {
            return Ok(());
        }
        let mut rows = Rows::default();
        for (key, delivery) in keyed {
            rows.push(*key, delivery);
        }
        let statement = client.prepare_cached(INSERT).await?;
        client
            .execute(
                &statement,
                &[
                    &rows.key,
                    &rows.due_ms,
                    &rows.observer,
                    &rows.webhook,
                    &rows.event_id,
                    &rows.delivery_id,
                    &rows.held,
                    &rows.after,
                    &rows.attempted,
                    &self.node,
                    &self.lease_ms(),
                    &rows.record,
                ],
            )
            .await?;
        Ok(())
    }

    /// Puts one delivery (revived from the DLQ or the delivery log) into
    /// the outbox under a fresh key, owned by this node; returns the key.
    pub(super) async fn insert_one(
        &self,
        client: &impl GenericClient,
        delivery: &Delivery,
    ) -> Result<u64, StoreError> {
        let keys = Self::reserve_keys(client, 1).await?;
        let key = *keys
            .first()
            .ok_or_else(|| StoreError::NoDelivery(delivery.id.clone()))?;
        self.insert_deliveries(client, &[(key, delivery)]).await?;
        Ok(key)
    }

    /// Stores the deliveries of one accepted batch, and those that died
    /// before their first attempt (straight into the DLQ), in one
    /// transaction: durable when it returns. Deliveries of one observer
    /// and event, given consecutively, are chained so that they run in
    /// order. Returns the keys of the live ones, owned by this node.
    pub(crate) async fn write(
        &self,
        mut deliveries: Vec<Delivery>,
        dead: Vec<(Delivery, String)>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let keys = Self::reserve_keys(&transaction, deliveries.len()).await?;
        chain(&mut deliveries, &keys);
        let keyed: Vec<(u64, &Delivery)> = keys.iter().copied().zip(&deliveries).collect();
        self.insert_deliveries(&transaction, &keyed).await?;
        if !dead.is_empty() {
            let failed_at_ms = now_ms();
            let letters: Vec<DeadLetter> = dead
                .into_iter()
                .map(|(delivery, reason)| DeadLetter::of_delivery(delivery, reason, failed_at_ms))
                .collect();
            insert_letters(&transaction, Letters::of(&letters)).await?;
            if self.logging {
                for letter in &letters {
                    if let Failure::Delivery(delivery) = &letter.failure {
                        LogRow::of(&Finished::dead(delivery, &letter.reason, failed_at_ms))
                            .insert(&transaction)
                            .await?;
                    }
                }
            }
        }
        transaction.commit().await?;
        Ok(keys)
    }

    /// Reads one pending delivery; `None` if it was completed or moved.
    pub(crate) async fn get(&self, key: u64) -> Result<Option<Delivery>, StoreError> {
        let Some((held, bytes)) = self.read(key).await? else {
            return Ok(None);
        };
        let mut delivery: Delivery = decode(&record_name(key), &bytes)?;
        delivery.held = held;
        Ok(Some(delivery))
    }

    /// What the dispatcher routes a pending delivery by; `None` if it was
    /// completed or moved. Builds neither the event nor the request.
    pub(crate) async fn routing(&self, key: u64) -> Result<Option<Routing>, StoreError> {
        let Some((held, bytes)) = self.read(key).await? else {
            return Ok(None);
        };
        let mut routing: Routing = decode(&record_name(key), &bytes)?;
        routing.held = held;
        Ok(Some(routing))
    }

    /// The `held` column and the record of one row.
    async fn read(&self, key: u64) -> Result<Option<(bool, Vec<u8>)>, StoreError> {
        let Some(key) = sql_key(key) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT held, record FROM outbox WHERE key = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&key])
            .await?
            .map(|row| (row.get(0), row.get(1))))
    }

    /// Takes the rows `claim` picks for this node; returns those that may
    /// run (not held), with their due times, in key order.
    async fn claim(&self, claim: Claim) -> Result<Vec<(u64, u64)>, StoreError> {
        let (which, limit) = match claim {
            Claim::Mine => ("owner = $1", None),
            // Not this node's own: it still has them on its dispatcher, and
            // its next renewal takes them back.
            Claim::Expired(limit) => ("lease_until < now() AND owner IS DISTINCT FROM $1", limit),
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&CLAIM.replace("{which}", which))
            .await?;
        let limit = limit.map(|n| sql_i64(n as u64));
        let mut due: Vec<(u64, u64)> = client
            .query(&statement, &[&self.node, &self.lease_ms(), &limit])
            .await?
            .iter()
            .filter(|row| !row.get::<_, bool>(2))
            .map(|row| {
                let due_ms: i64 = row.get(1);
                (u64::try_from(due_ms).unwrap_or(0), store_key(row.get(0)))
            })
            .collect();
        due.sort_unstable_by_key(|&(_, key)| key);
        Ok(due)
    }

    /// Every pending delivery that may run, with its due time, for the
    /// dispatcher at start-up: the rows this node owns (none, at a start)
    /// and every row whose lease has run out, all of them now this node's.
    /// Held deliveries whose predecessor has finished its first attempt (or
    /// is gone) are released here.
    pub(crate) async fn pending(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut due = self.claim(Claim::Mine).await?;
        due.extend(self.claim(Claim::Expired(None)).await?);
        due.sort_unstable_by_key(|&(_, key)| key);
        due.dedup_by_key(|&mut (_, key)| key);
        Ok(due)
    }

    /// Takes over up to `limit` rows whose lease has run out (their node
    /// died, or gave them up); returns those that may run, with their due
    /// times. Held rows are taken too, and released when their predecessor
    /// is done, as at start-up.
    pub(crate) async fn adopt(&self, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        self.claim(Claim::Expired(Some(limit))).await
    }

    /// Renews the lease of every row this node owns, expired or not (no
    /// other node took it meanwhile); returns how many.
    pub(crate) async fn renew_leases(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE outbox SET lease_until = now() + $2::float8 * interval '1 millisecond' \
                 WHERE owner = $1",
            )
            .await?;
        Ok(client
            .execute(&statement, &[&self.node, &self.lease_ms()])
            .await?)
    }

    /// Gives up every row this node owns, for another node (or the next
    /// start) to adopt at once rather than after the lease.
    pub(crate) async fn close(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE outbox SET owner = NULL, lease_until = '-infinity' WHERE owner = $1",
            )
            .await?;
        Ok(client.execute(&statement, &[&self.node]).await?)
    }

    /// Lets a held delivery run, on this node; returns its due time if it
    /// exists.
    pub(crate) async fn release(&self, key: u64) -> Result<Option<u64>, StoreError> {
        let Some(key) = sql_key(key) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE outbox SET held = false, owner = $2, \
                 lease_until = now() + $3::float8 * interval '1 millisecond' \
                 WHERE key = $1 RETURNING due_ms",
            )
            .await?;
        Ok(client
            .query_opt(&statement, &[&key, &self.node, &self.lease_ms()])
            .await?
            .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// Records a failed attempt and the next due time; the row is this
    /// node's from now on. Like sled's, it stores the delivery whether or
    /// not the row is still there.
    pub(crate) async fn reschedule(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        let sql = sql_key(key).ok_or(StoreError::UnknownKey(key))?;
        let mut rows = Rows::default();
        rows.push(key, delivery);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO outbox (key, due_ms, observer, webhook, event_id, delivery_id, held, \
                                     after_key, attempted, owner, lease_until, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                         now() + $11::float8 * interval '1 millisecond', $12) \
                 ON CONFLICT (key) DO UPDATE SET \
                     due_ms = EXCLUDED.due_ms, held = EXCLUDED.held, \
                     attempted = EXCLUDED.attempted, owner = EXCLUDED.owner, \
                     lease_until = EXCLUDED.lease_until, record = EXCLUDED.record",
            )
            .await?;
        client
            .execute(
                &statement,
                &[
                    &sql,
                    &rows.due_ms[0],
                    &rows.observer[0],
                    &rows.webhook[0],
                    &rows.event_id[0],
                    &rows.delivery_id[0],
                    &rows.held[0],
                    &rows.after[0],
                    &rows.attempted[0],
                    &self.node,
                    &self.lease_ms(),
                    &rows.record[0],
                ],
            )
            .await?;
        Ok(())
    }

    /// Removes a delivered delivery, into the delivery log when it is
    /// kept: one statement.
    pub(crate) async fn complete(&self, key: u64, delivery: &Delivery) -> Result<(), StoreError> {
        let Some(key) = sql_key(key) else {
            return Ok(());
        };
        let client = self.client().await?;
        if !self.logging {
            let statement = client
                .prepare_cached("DELETE FROM outbox WHERE key = $1")
                .await?;
            client.execute(&statement, &[&key]).await?;
            return Ok(());
        }
        let row = LogRow::of(&Finished::delivered(delivery, now_ms()));
        // The removal is a data-modifying CTE of the insert: both happen,
        // or neither.
        let statement = client
            .prepare_cached(&format!(
                "WITH gone AS (DELETE FROM outbox WHERE key = $6) {LOG_ROW}"
            ))
            .await?;
        client
            .execute(
                &statement,
                &[
                    &row.id,
                    &row.event_id,
                    &row.observer,
                    &row.status,
                    &row.record,
                    &key,
                ],
            )
            .await?;
        Ok(())
    }

    /// Number of pending deliveries, on every node.
    pub(crate) async fn outbox_len(&self) -> usize {
        self.count("SELECT count(*) FROM outbox", &self.outbox_seen)
            .await
    }

    /// Moves a dead delivery into the DLQ, in one statement.
    pub(crate) async fn bury(
        &self,
        key: u64,
        delivery: Delivery,
        reason: String,
    ) -> Result<DeadLetter, StoreError> {
        let letter = DeadLetter::of_delivery(delivery, reason, now_ms());
        let columns = Letters::of(std::slice::from_ref(&letter));
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        if self.logging {
            if let Failure::Delivery(delivery) = &letter.failure {
                LogRow::of(&Finished::dead(
                    delivery,
                    &letter.reason,
                    letter.failed_at_ms,
                ))
                .insert(&transaction)
                .await?;
            }
        }
        // The removal is a data-modifying CTE of the insert: both happen,
        // or neither.
        let statement = transaction
            .prepare_cached(
                "WITH gone AS (DELETE FROM outbox WHERE key = $6) \
                 INSERT INTO dlq (id, failed_at_ms, observer, retryable, record) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET \
                     failed_at_ms = EXCLUDED.failed_at_ms, observer = EXCLUDED.observer, \
                     retryable = EXCLUDED.retryable, record = EXCLUDED.record",
            )
            .await?;
        // A key it never issued removes nothing; the letter is stored all the same.
        let key = sql_key(key).unwrap_or(-1);
        transaction
            .execute(
                &statement,
                &[
                    &columns.id[0],
                    &columns.failed_at_ms[0],
                    &columns.observer[0],
                    &columns.retryable[0],
                    &columns.record[0],
                    &key,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(letter)
    }
}
