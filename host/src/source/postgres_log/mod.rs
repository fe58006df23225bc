//! The durable PostgreSQL source, in the manner of Hasura's event log:
//! row triggers (installed by `wasmhook pg install`, see [`install`]) record
//! each change in an event-log table and `NOTIFY` as a wake-up; wasmhook
//! claims batches with `FOR UPDATE SKIP LOCKED`, so several processes share
//! the log, and marks rows done only after their deliveries are in the
//! outbox.
//!
//! At least once: a row is marked done in the transaction that claimed it,
//! committed after the outbox write. A process that dies in between leaves
//! its transaction to be rolled back by PostgreSQL, which releases the rows
//! for the next claim: they are delivered again, never lost. The
//! notification only says "look now"; missed ones (while disconnected) are
//! made up for by looking every `poll_interval` anyway.
//!
//! Rows are claimed in id order, but concurrent writers commit out of id
//! order and several wasmhook processes work in parallel, so webhooks are
//! not strictly in commit order. `TRUNCATE` is not recorded.
//!
//! Each row becomes a native envelope (`entity`, `op`, `data`, `old`), so
//! conditions see both rows and `status.changed()` works. Done rows are
//! deleted once older than `retention`.

mod install;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement};
use tracing::{error, info, warn};

use super::postgres::{self, quote_ident, Notifications, Session, SessionError};
use super::Connected;
use crate::pipeline::{Message, Pipeline};

pub use install::{install, uninstall, InstallError, Installed, TriggerChange, Uninstalled};

/// The event-log table `pg install` creates unless told otherwise.
pub const DEFAULT_TABLE: &str = "wasmhook.event_log";

/// The channel the triggers `NOTIFY` on unless told otherwise.
pub const DEFAULT_CHANNEL: &str = "wasmhook_events";

/// The lag metric counts undone rows up to this many: counting a huge
/// backlog exactly every few seconds would cost more than it tells.
const LAG_CAP: i64 = 100_000;

/// How often done rows past their retention are deleted.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Rows deleted per statement, so expiry never holds long locks or builds
/// one huge transaction.
const EXPIRY_CHUNK: i64 = 10_000;

/// `[observers] backend = "postgres-log"`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Connection string (URL or `key=value` form).
    pub url: String,
    /// The event-log table, optionally schema-qualified.
    pub table: String,
    /// Channel the triggers `NOTIFY` on.
    pub channel: String,
    /// Rows claimed per transaction.
    pub batch_size: usize,
    /// How often to look for rows without a wake-up (missed notifications,
    /// rows left by a process that died).
    pub poll_interval: Duration,
    /// How long done rows are kept.
    pub retention: Duration,
    /// `[observers] tls`: a private CA and a client certificate.
    pub tls: crate::tls::TlsFiles,
}

/// Why the PostgreSQL log source stopped: only a configuration it cannot
/// use, since everything else is retried.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL event log: {0}")]
pub struct LogError(String);

/// A table name, optionally schema-qualified, that is safe to splice into
/// SQL: only lowercase letters, digits and `_`, as the configuration
/// accepts, and always quoted when spliced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

/// A name [`TableName::parse`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a table name (lowercase letters, digits and _, optionally schema.table)")]
pub struct NameError(String);

impl TableName {
    /// Accepts `table` or `schema.table`.
    pub fn parse(value: &str) -> Result<TableName, NameError> {
        let parts: Vec<&str> = value.split('.').collect();
        if !parts.iter().all(|p| is_plain_name(p)) {
            return Err(NameError(value.to_string()));
        }
        match parts.as_slice() {
            [name] => Ok(TableName {
                schema: None,
                name: name.to_string(),
            }),
            [schema, name] => Ok(TableName {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            }),
            _ => Err(NameError(value.to_string())),
        }
    }

    /// The table's name without its schema.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema, when the name was qualified.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The name quoted for SQL: `"schema"."table"`.
    pub(crate) fn sql(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A plain SQL identifier: what a channel or one part of a table name may be.
pub(crate) fn is_plain_name(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 63
        && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &LogConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogError> {
    let table = TableName::parse(&config.table).map_err(|e| LogError(e.to_string()))?;
    let pg = postgres::client_config(&config.url, &config.tls)
        .map_err(|e| LogError(format!("{}: {e}", postgres::display_dsn(&config.url))))?;
    // The rows wait in the table; nothing is lost while we are away.
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "PostgreSQL event log unavailable; reconnecting",
            at: super::At::Table(&table),
            hint,
        },
        &(config, &table, &pg, &pipeline),
        |&(config, table, pg, pipeline), link, shutdown| {
            Box::pin(consume(config, table, pg, pipeline, link, shutdown))
        },
    )
    .await;
    Ok(())
}

/// Advice for a lost session: a missing table is most likely not installed.
fn hint(e: &SessionError) -> &'static str {
    match e {
        SessionError::Postgres(pe) if pe.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            "; is the event log installed? (wasmhook pg install --table …)"
        }
        _ => "",
    }
}

/// The statements one connection runs, prepared once per connection.
struct Statements {
    claim: Statement,
    done: Statement,
    lag: Statement,
    expire: Statement,
}

impl Statements {
    async fn prepare(
        client: &Client,
        table: &TableName,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            claim: client.prepare(&claim_sql(table)).await?,
            done: client.prepare(&done_sql(table)).await?,
            lag: client.prepare(&lag_sql(table)).await?,
            expire: client.prepare(&expire_sql(table)).await?,
        })
    }
}

/// The oldest undone rows that no other process holds. The timestamp is
/// formatted by the server, which knows the column's time zone.
fn claim_sql(table: &TableName) -> String {
    format!(
        "SELECT id, schema_name, table_name, op, \"old\"::text, \"new\"::text, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
         FROM {} WHERE delivered_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        table.sql()
    )
}

fn done_sql(table: &TableName) -> String {
    format!(
        "UPDATE {} SET delivered_at = now() WHERE id = ANY($1)",
        table.sql()
    )
}

fn lag_sql(table: &TableName) -> String {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {} WHERE delivered_at IS NULL LIMIT {LAG_CAP}) AS undone",
        table.sql()
    )
}

fn expire_sql(table: &TableName) -> String {
    let table = table.sql();
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE delivered_at < now() - make_interval(secs => $1) LIMIT $2)"
    )
}

async fn consume(
    config: &LogConfig,
    table: &TableName,
    pg: &crate::tls::postgres::PgTarget,
    pipeline: &Pipeline,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let wake = Arc::new(Notify::new());
    let mut session = Session::connect(pg, Notifications::Wake(wake.clone())).await?;
    let statements = Statements::prepare(&session.client, table).await?;
    // LISTEN before the first claim: a row committed in between still wakes us.
    session
        .client
        .batch_execute(&format!("LISTEN {}", quote_ident(&config.channel)))
        .await?;
    link.up();
    info!(server = %postgres::target(&pg.config), table = %table, channel = %config.channel, "PostgreSQL event-log source consuming");
    let mut last_lag: Option<Instant> = None;
    let mut last_expiry: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if last_lag.is_none_or(|at| at.elapsed() >= super::LAG_INTERVAL) {
            last_lag = Some(Instant::now());
            let undone: i64 = session
                .client
                .query_one(&statements.lag, &[])
                .await?
                .try_get(0)?;
            pipeline.metrics().source_lag(undone.max(0) as u64);
        }
        if last_expiry.is_none_or(|at| at.elapsed() >= EXPIRY_INTERVAL) {
            last_expiry = Some(Instant::now());
            expire(&session.client, &statements, config, table).await?;
        }
        let claimed = claim(
            &mut session.client,
            &statements,
            config,
            table,
            pipeline,
            shutdown,
        )
        .await?;
        if claimed >= config.batch_size {
            // A full batch: more rows are probably waiting.
            continue;
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            e = session.closed() => return Err(e),
        }
    }
}

/// Claims one batch, stores its deliveries, marks it done, commits; returns
/// how many rows it took.
async fn claim(
    client: &mut Client,
    statements: &Statements,
    config: &LogConfig,
    table: &TableName,
    pipeline: &Pipeline,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<usize, SessionError> {
    let tx = client.transaction().await?;
    let rows = tx
        .query(&statements.claim, &[&(config.batch_size as i64)])
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = LogRow::from_row(row)?;
        ids.push(row.id);
        messages.push(row.message(table));
    }
    // The rows stay locked by us while storage is retried; if we give up
    // (shutdown), dropping the transaction rolls back and releases them.
    let mut delay = Duration::from_millis(100);
    while let Err(e) = pipeline.ingest_messages(&messages).await {
        error!(error = %e, rows = messages.len(), table = %table, "cannot store event-log rows; retrying");
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(0),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let marked = async {
        tx.execute(&statements.done, &[&ids]).await?;
        tx.commit().await
    };
    if let Err(e) = marked.await {
        warn!(rows = ids.len(), table = %table, "event-log rows were stored but not marked done; they will be delivered again");
        return Err(e.into());
    }
    Ok(ids.len())
}

/// Deletes done rows older than the retention, a chunk at a time.
async fn expire(
    client: &Client,
    statements: &Statements,
    config: &LogConfig,
    table: &TableName,
) -> Result<(), tokio_postgres::Error> {
    let seconds = config.retention.as_secs_f64();
    let mut deleted = 0;
    loop {
        let n = client
            .execute(&statements.expire, &[&seconds, &EXPIRY_CHUNK])
            .await?;
        deleted += n;
        if n < EXPIRY_CHUNK as u64 {
            break;
        }
    }
    if deleted > 0 {
        info!(rows = deleted, table = %table, retention = ?config.retention, "deleted delivered event-log rows past retention");
    }
    Ok(())
}

/// One event-log row as claimed.
#[derive(Debug, Clone, PartialEq)]
struct LogRow {
    id: i64,
    schema: String,
    table: String,
    op: String,
    /// JSON text, as PostgreSQL wrote it.
    old: Option<String>,
    /// JSON text, as PostgreSQL wrote it.
    new: Option<String>,
    /// RFC 3339, UTC.
    created_at: String,
}

impl LogRow {
    fn from_row(row: &Row) -> Result<LogRow, tokio_postgres::Error> {
        Ok(LogRow {
            id: row.try_get(0)?,
            schema: row.try_get(1)?,
            table: row.try_get(2)?,
            op: row.try_get(3)?,
            old: row.try_get(4)?,
            new: row.try_get(5)?,
            created_at: row.try_get(6)?,
        })
    }

    /// The row as a native envelope. Its id and key come from the log row,
    /// so a row delivered again (after a crash) keeps its event id and a
    /// receiver can recognise the duplicate. The row images are spliced in
    /// as PostgreSQL wrote them (`jsonb` text is valid JSON), not re-encoded.
    fn message(&self, log: &TableName) -> Message {
        let text = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let payload = format!(
            "{{\"id\":{},\"entity\":{},\"op\":{},\"data\":{},\"old\":{},\"timestamp\":{}}}",
            text(&format!("{log}:{}", self.id)),
            text(&self.table),
            text(&self.op),
            self.new.as_deref().unwrap_or("null"),
            self.old.as_deref().unwrap_or("null"),
            text(&self.created_at),
        );
        Message {
            source: format!("postgres-log:{}.{}", self.schema, self.table),
            payload: bytes::Bytes::from(payload),
            key: Some(format!("postgres-log:{log}:{}", self.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::Operation;
    use crate::source::envelope;

    fn row(op: &str, old: Option<&str>, new: Option<&str>) -> LogRow {
        LogRow {
            id: 42,
            schema: "public".into(),
            table: "orders".into(),
            op: op.into(),
            old: old.map(str::to_string),
            new: new.map(str::to_string),
            created_at: "2026-03-02T14:00:00.123456Z".into(),
        }
    }

    fn event(row: &LogRow) -> crate::event::Event {
        let log = TableName::parse(DEFAULT_TABLE).unwrap();
        let m = row.message(&log);
        let document = serde_json::from_slice(&m.payload).unwrap();
        envelope::parse_keyed(document, &m.source, m.key).unwrap()
    }

    #[test]
    fn an_update_carries_both_rows() {
        let e = event(&row(
            "UPDATE",
            Some(r#"{"id": 7, "status": "new"}"#),
            Some(r#"{"id": 7, "status": "shipped"}"#),
        ));
        assert_eq!(e.entity, "orders");
        assert_eq!(e.operation, Operation::Update);
        assert_eq!(e.id, "wasmhook.event_log:42");
        assert_eq!(e.entity_id.as_deref(), Some("7"));
        assert_eq!(e.data, json!({"id": 7, "status": "shipped"}));
        assert_eq!(e.old, Some(json!({"id": 7, "status": "new"})));
        assert_eq!(e.timestamp, "2026-03-02T14:00:00.123456Z");
        assert_eq!(e.source, "postgres-log:public.orders");
    }

    #[test]
    fn a_delete_shows_the_old_row() {
        let e = event(&row("DELETE", Some(r#"{"id": 7}"#), None));
        assert_eq!(e.operation, Operation::Delete);
        assert_eq!(e.data, json!({"id": 7}));
        assert_eq!(e.old, Some(json!({"id": 7})));
    }

    #[test]
    fn an_insert_has_no_old_row() {
        let e = event(&row(
            "INSERT",
            None,
            Some(r#"{"id": 1, "note": "a \"quoted\" word"}"#),
        ));
        assert_eq!(e.operation, Operation::Insert);
        assert_eq!(e.old, None);
        assert_eq!(e.data["note"], "a \"quoted\" word");
    }

    #[test]
    fn the_log_row_keys_the_message() {
        let log = TableName::parse("audit.changes").unwrap();
        let m = row("INSERT", None, Some("{}")).message(&log);
        assert_eq!(m.key.as_deref(), Some("postgres-log:audit.changes:42"));
    }

    #[test]
    fn only_plain_table_names_pass_and_are_quoted() {
        let t = TableName::parse("wasmhook.event_log").unwrap();
        assert_eq!(t.sql(), "\"wasmhook\".\"event_log\"");
        assert_eq!(t.to_string(), "wasmhook.event_log");
        assert_eq!(TableName::parse("orders").unwrap().sql(), "\"orders\"");
        for bad in [
            "",
            "a.b.c",
            "Orders",
            "x; drop table y",
            "1abc",
            "a-b",
            "a.",
            ".a",
            "a\"b",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(64);
        assert!(TableName::parse(&long).is_err());
    }

    #[test]
    fn statements_name_the_quoted_table_and_skip_locked_rows() {
        let t = TableName::parse("wasmhook.event_log").unwrap();
        let claim = claim_sql(&t);
        assert!(
            claim.contains("FROM \"wasmhook\".\"event_log\" WHERE delivered_at IS NULL"),
            "{claim}"
        );
        assert!(
            claim.ends_with("ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"),
            "{claim}"
        );
        assert!(done_sql(&t).starts_with("UPDATE \"wasmhook\".\"event_log\" SET delivered_at"));
        assert!(expire_sql(&t).contains("delivered_at < now()"));
    }
}
