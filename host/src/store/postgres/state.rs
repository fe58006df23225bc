//! The small state other stages keep between runs, one table each:
//! switched-off webhooks (`delivery::switches`), the provider delivery ids
//! an incoming receiver has seen (`incoming::replay`) and the last run of
//! each schedule (`schedule`). Every write commits before it returns.

use std::time::Duration;

use super::{sql_i64, Database};
use crate::clock::now_ms;
use crate::store::error::StoreError;

impl Database {
    /// The switched-off webhooks: (observer, position).
    pub(crate) async fn disabled_webhooks(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT observer, webhook FROM disabled_webhooks \
                 ORDER BY observer COLLATE \"C\", webhook",
            )
            .await?;
        Ok(client
            .query(&statement, &[])
            .await?
            .iter()
            .filter_map(|row| {
                let webhook: i64 = row.get(1);
                Some((row.get(0), usize::try_from(webhook).ok()?))
            })
            .collect())
    }

    /// Switches a webhook off or on.
    pub(crate) async fn switch_webhook(
        &self,
        observer: &str,
        webhook: usize,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let sql = if disabled {
            "INSERT INTO disabled_webhooks (observer, webhook) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM disabled_webhooks WHERE observer = $1 AND webhook = $2"
        };
        let statement = client.prepare_cached(sql).await?;
        client
            .execute(&statement, &[&observer, &sql_i64(webhook as u64)])
            .await?;
        Ok(())
    }

    /// Records `key` for `window`; false if it was already there and not
    /// expired (a replay). One statement: of two concurrent copies, the
    /// second waits for the first's row and finds it live.
    pub(crate) async fn replay_first_time(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let expiry = sql_i64(now.saturating_add(window.as_millis() as u64));
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO incoming_seen (key, expires_ms) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET expires_ms = EXCLUDED.expires_ms \
                 WHERE incoming_seen.expires_ms <= $3 \
                 RETURNING 1",
            )
            .await?;
        Ok(client
            .query_opt(&statement, &[&key, &expiry, &sql_i64(now)])
            .await?
            .is_some())
    }

    /// Forgets `key`.
    pub(crate) async fn replay_forget(&self, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM incoming_seen WHERE key = $1")
            .await?;
        client.execute(&statement, &[&key]).await?;
        Ok(())
    }

    /// Drops expired ids; returns how many.
    pub(crate) async fn replay_purge(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("DELETE FROM incoming_seen WHERE expires_ms <= $1")
            .await?;
        Ok(client.execute(&statement, &[&sql_i64(now_ms())]).await? as usize)
    }

    /// The last run the schedule `name` handled, unix milliseconds.
    pub(crate) async fn schedule_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT at_ms FROM schedule_marks WHERE name = $1")
            .await?;
        Ok(client
            .query_opt(&statement, &[&name])
            .await?
            .map(|row| row.get(0)))
    }

    /// Records the last run the schedule `name` handled.
    pub(crate) async fn save_schedule_mark(
        &self,
        name: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO schedule_marks (name, at_ms) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET at_ms = EXCLUDED.at_ms",
            )
            .await?;
        client.execute(&statement, &[&name, &at_ms]).await?;
        Ok(())
    }
}
