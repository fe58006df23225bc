//! The delivery log in PostgreSQL: one `delivery_log` row per finished
//! delivery, shared by every node. Pending deliveries are the outbox's
//! rows; see `store::log`.

use deadpool_postgres::GenericClient;

use super::{sql_i64, store_key, Database};
use crate::store::delivery::Delivery;
use crate::store::error::StoreError;
use crate::store::log::{id_at, merge, Finished, Logged, Query, Retention, Status};
use crate::store::record::decode;

/// Inserts (or replaces) one log row: `$1` id, `$2` event id, `$3`
/// observer, `$4` status, `$5` record. Other statements embed it after
/// their own CTEs.
pub(super) const LOG_ROW: &str = "\
    INSERT INTO delivery_log (id, event_id, observer, status, record) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, record = EXCLUDED.record";

/// The columns of [`LOG_ROW`] for a finished delivery.
pub(super) struct LogRow {
    pub id: String,
    pub event_id: String,
    pub observer: String,
    pub status: &'static str,
    pub record: Vec<u8>,
}

impl LogRow {
    pub(super) fn of(finished: &Finished<'_>) -> LogRow {
        LogRow {
            id: finished.delivery.id.clone(),
            event_id: finished.delivery.event.id.clone(),
            observer: finished.delivery.observer.clone(),
            status: finished.status.as_str(),
            record: finished.record(),
        }
    }

    pub(super) async fn insert(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        let statement = client.prepare_cached(LOG_ROW).await?;
        client
            .execute(
                &statement,
                &[
                    &self.id,
                    &self.event_id,
                    &self.observer,
                    &self.status,
                    &self.record,
                ],
            )
            .await?;
        Ok(())
    }
}

/// The filters of a listing, as statement parameters: `$1` event, `$2`
/// observer, `$3` lowest id, `$4` id bound, `$5` limit (`$6` status, for
/// the log).
const WHERE: &str = "($1::text IS NULL OR event_id = $1) \
    AND ($2::text IS NULL OR observer = $2) \
    AND ($3::text IS NULL OR {id} >= $3) \
    AND ($4::text IS NULL OR {id} < $4)";

fn log_name(id: &str) -> Vec<u8> {
    format!("delivery_log/{id}").into_bytes()
}

impl Database {
    /// Deliveries the query picks, newest first: finished ones from the log,
    /// pending ones from the outbox.
    pub(crate) async fn deliveries(&self, query: &Query) -> Result<Vec<Logged>, StoreError> {
        let (low, high) = query.id_range();
        let limit = sql_i64(query.limit.min(i64::MAX as usize) as u64);
        let client = self.client().await?;
        let mut finished = Vec::new();
        if query.wants(Status::Delivered) {
            let status = query.status.map(Status::as_str);
            let statement = client
                .prepare_cached(&format!(
                    "SELECT id, record FROM delivery_log WHERE {} \
                     AND ($6::text IS NULL OR status = $6) ORDER BY id DESC LIMIT $5",
                    WHERE.replace("{id}", "id")
                ))
                .await?;
            for row in client
                .query(
                    &statement,
                    &[&query.event, &query.observer, &low, &high, &limit, &status],
                )
                .await?
            {
                let id: String = row.get(0);
                finished.push(decode(&log_name(&id), row.get(1))?);
            }
        }
        let mut pending = Vec::new();
        if query.wants(Status::Pending) {
            let statement = client
                .prepare_cached(&format!(
                    "SELECT key, held, record FROM outbox WHERE {} \
                     ORDER BY delivery_id COLLATE \"C\" DESC LIMIT $5",
                    WHERE.replace("{id}", "delivery_id COLLATE \"C\"")
                ))
                .await?;
            for row in client
                .query(
                    &statement,
                    &[&query.event, &query.observer, &low, &high, &limit],
                )
                .await?
            {
                let key = store_key(row.get(0));
                let mut delivery: Delivery =
                    decode(format!("outbox/{key}").as_bytes(), row.get(2))?;
                delivery.held = row.get(1);
                pending.push(Logged {
                    status: Status::Pending,
                    finished_at_ms: None,
                    reason: None,
                    delivery,
                });
            }
        }
        Ok(merge(finished, pending, query.limit))
    }

    /// One delivery, finished or pending.
    pub(crate) async fn delivery(&self, id: &str) -> Result<Logged, StoreError> {
        let client = self.client().await?;
        let logged = client
            .prepare_cached("SELECT record FROM delivery_log WHERE id = $1")
            .await?;
        if let Some(row) = client.query_opt(&logged, &[&id]).await? {
            return decode(&log_name(id), row.get(0));
        }
        drop(client);
        let Some((_, delivery)) = self.pending_delivery(id).await? else {
            return Err(StoreError::NoDelivery(id.to_string()));
        };
        Ok(Logged {
            status: Status::Pending,
            finished_at_ms: None,
            reason: None,
            delivery,
        })
    }

    /// The outbox key and record of the pending delivery `id`, if any.
    pub(crate) async fn pending_delivery(
        &self,
        id: &str,
    ) -> Result<Option<(u64, Delivery)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT key, held, record FROM outbox WHERE delivery_id COLLATE \"C\" = $1 LIMIT 1",
            )
            .await?;
        let Some(row) = client.query_opt(&statement, &[&id]).await? else {
            return Ok(None);
        };
        let key = store_key(row.get(0));
        let mut delivery: Delivery = decode(format!("outbox/{key}").as_bytes(), row.get(2))?;
        delivery.held = row.get(1);
        Ok(Some((key, delivery)))
    }

    /// Sends a finished delivery again: back into the outbox due at
    /// `due_ms`, owned by this node, with a fresh attempt budget and the
    /// same id, out of the log and the DLQ, in one transaction.
    pub(crate) async fn resend(&self, id: &str, due_ms: u64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await?;
        let take = transaction
            .prepare_cached("DELETE FROM delivery_log WHERE id = $1 RETURNING record")
            .await?;
        let Some(row) = transaction.query_opt(&take, &[&id]).await? else {
            let look = transaction
                .prepare_cached("SELECT 1 FROM outbox WHERE delivery_id COLLATE \"C\" = $1")
                .await?;
            return Err(match transaction.query_opt(&look, &[&id]).await? {
                Some(_) => StoreError::Pending(id.to_string()),
                None => StoreError::NoDelivery(id.to_string()),
            });
        };
        let logged: Logged = decode(&log_name(id), row.get(0))?;
        let drop_letter = transaction
            .prepare_cached("DELETE FROM dlq WHERE id = $1")
            .await?;
        transaction.execute(&drop_letter, &[&id]).await?;
        let delivery = Box::new(logged.delivery).revived(due_ms);
        let key = self.insert_one(&transaction, &delivery).await?;
        transaction.commit().await?;
        Ok(key)
    }

    /// Deletes finished deliveries whose event is older than `max_age`, then
    /// the oldest until the log's records fit in `max_bytes`; returns how
    /// many went.
    pub(crate) async fn log_enforce(&self, retention: Retention) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let mut removed = 0;
        if let Some(age) = retention.max_age {
            let cutoff = id_at(crate::clock::now_ms().saturating_sub(age.as_millis() as u64));
            let statement = client
                .prepare_cached("DELETE FROM delivery_log WHERE id < $1")
                .await?;
            removed += client.execute(&statement, &[&cutoff]).await? as usize;
        }
        if let Some(max) = retention.max_bytes {
            // A row goes when it and every newer one weigh more than `max`.
            let statement = client
                .prepare_cached(
                    "WITH weighed AS ( \
                         SELECT id, sum(octet_length(record)) OVER ( \
                             ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW \
                         ) AS from_here \
                         FROM delivery_log) \
                     DELETE FROM delivery_log USING weighed \
                     WHERE delivery_log.id = weighed.id AND weighed.from_here > $1",
                )
                .await?;
            removed += client.execute(&statement, &[&sql_i64(max)]).await? as usize;
        }
        Ok(removed)
    }
}
