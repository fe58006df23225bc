//! FraiseQL's own change log as a source: the rows FraiseQL writes to
//! `core.tb_entity_change_log` for every mutation, read in order of their
//! row number (`pk_entity_change_log`), each handed to the pipeline as a
//! FraiseQL change (`object_type`, `op`, `after`, `before`).
//!
//! wasmhook only reads FraiseQL's tables. It keeps its place in its own
//! storage, saved only after the deliveries of what it read are in the
//! outbox: a crash in between reads those rows again (at least once, under
//! the same event ids, the rows' `id`), and no row is skipped.
//!
//! Row numbers are taken when a row is written but become visible when its
//! transaction commits, so a lower number can appear after a higher one.
//! The place is therefore "every row up to `through`, and these rows
//! above it" ([`Position`]): rows above a gap are delivered at once, and the
//! gap is closed only once every transaction that was running when it was
//! seen has ended (PostgreSQL's snapshot horizon has passed it): its row
//! then either appeared and was taken, or was rolled back and never will.
//!
//! FraiseQL's `NOTIFY fraiseql_events, '<row number>'` is only a wake-up;
//! without one the log is read every `poll_interval`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement};
use tracing::{error, info, warn};

use super::postgres::{self, quote_ident, Notifications, Session, SessionError};
use super::postgres_log::TableName;
use super::Connected;
use crate::pipeline::{Message, Pipeline};

/// The change-log table of FraiseQL 2.19 (its migration 08).
pub const DEFAULT_TABLE: &str = "core.tb_entity_change_log";

/// The channel FraiseQL notifies on (its migration 03).
pub const DEFAULT_CHANNEL: &str = "fraiseql_events";

/// Rows remembered above a gap at most; past this the gap is given up (a
/// transaction open that long holds the log's readers back everywhere).
const AHEAD_CAP: usize = 100_000;

/// The lag metric counts rows up to this many.
const LAG_CAP: i64 = 100_000;

/// `[observers] backend = "fraiseql-changelog"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogConfig {
    /// Connection string (URL or `key=value` form).
    pub url: String,
    /// The change-log table, schema-qualified.
    pub table: String,
    /// The channel FraiseQL notifies on.
    pub channel: String,
    /// Rows read per batch.
    pub batch_size: usize,
    /// How often to look without a wake-up.
    pub poll_interval: Duration,
    /// Where a first start begins.
    pub start: Start,
    /// `[observers] tls`: a private CA and a client certificate.
    pub tls: crate::tls::TlsFiles,
}

/// Where the source begins when it has no saved place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the rows already in the log: only later changes.
    Now,
    /// With the oldest row the log holds.
    Beginning,
}

/// Why the change-log source stopped: only a configuration it cannot use,
/// since everything else is retried.
#[derive(Debug, thiserror::Error)]
#[error("FraiseQL change log: {0}")]
pub struct ChangelogError(String);

/// The source's place in the log: every row up to `through` is taken, and
/// so are the rows in `ahead`, which lie above a gap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    through: i64,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    ahead: BTreeSet<i64>,
}

impl Position {
    /// Records rows as taken and moves `through` up over every row taken
    /// without a gap before it.
    fn take(&mut self, rows: impl IntoIterator<Item = i64>) {
        self.ahead
            .extend(rows.into_iter().filter(|&row| row > self.through));
        while self.ahead.first() == Some(&(self.through + 1)) {
            self.ahead.pop_first();
            self.through += 1;
        }
    }

    /// The first missing row number, when rows above it are taken.
    fn gap(&self) -> Option<i64> {
        (!self.ahead.is_empty()).then_some(self.through + 1)
    }

    /// Gives up the rows of the first gap: they will never appear.
    fn close_gap(&mut self) {
        if let Some(&first) = self.ahead.first() {
            self.through = first - 1;
            self.take([]);
        }
    }
}

/// A gap as first seen: its first row number, and the transaction id
/// horizon then (`pg_snapshot_xmax`): once every transaction below it has
/// ended, the gap's rows will never appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    row: i64,
    horizon: u64,
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &ChangelogConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ChangelogError> {
    let table = TableName::parse(&config.table).map_err(|e| ChangelogError(e.to_string()))?;
    let pg = postgres::client_config(&config.url, &config.tls)
        .map_err(|e| ChangelogError(format!("{}: {e}", postgres::display_dsn(&config.url))))?;
    // The rows wait in FraiseQL's table; nothing is lost meanwhile.
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "FraiseQL change log unavailable; reconnecting",
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

/// Advice for a lost session: a missing table or column is most likely a
/// change log not installed, or another table named.
fn hint(e: &SessionError) -> &'static str {
    match e {
        SessionError::Postgres(pe) if pe.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            "; is FraiseQL's change log installed (its migration 08), and is observers.table right?"
        }
        SessionError::Postgres(pe) if pe.code() == Some(&SqlState::UNDEFINED_COLUMN) => {
            "; observers.table must be FraiseQL's change log (pk_entity_change_log, object_type, modification_type, object_data, ...)"
        }
        _ => "",
    }
}

/// The statements one connection runs, prepared once per connection.
struct Statements {
    read: Statement,
    snapshot: Statement,
    lag: Statement,
}

impl Statements {
    async fn prepare(
        client: &Client,
        table: &TableName,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            read: client.prepare(&read_sql(table)).await?,
            snapshot: client
                .prepare(
                    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text \
                     FROM pg_current_snapshot() AS s",
                )
                .await?,
            lag: client.prepare(&lag_sql(table)).await?,
        })
    }
}

/// The next rows above `$1` that are not taken yet (`$2`), in row order.
/// Images stay `jsonb` text, spliced into the message as PostgreSQL wrote
/// them; the time is formatted by the server, which knows the zone.
fn read_sql(table: &TableName) -> String {
    format!(
        "SELECT pk_entity_change_log, id::text, object_type, modification_type, \
         object_id::text, object_data::text, object_data_before::text, tenant_id::text, seq, \
         actor_type, acting_for::text, trace_context::text, \
         to_char(coalesce(commit_time, created_at) AT TIME ZONE 'UTC', \
         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
         FROM {} WHERE pk_entity_change_log > $1 AND NOT (pk_entity_change_log = ANY($2)) \
         ORDER BY pk_entity_change_log LIMIT $3",
        table.sql()
    )
}

fn lag_sql(table: &TableName) -> String {
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM {} WHERE pk_entity_change_log > $1 LIMIT {LAG_CAP}) AS waiting",
        table.sql()
    )
}

/// Where the source's place is saved in wasmhook's storage.
fn cursor_name(table: &TableName) -> String {
    format!("fraiseql-changelog:{table}")
}

async fn consume(
    config: &ChangelogConfig,
    table: &TableName,
    pg: &crate::tls::postgres::PgTarget,
    pipeline: &Pipeline,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let wake = std::sync::Arc::new(Notify::new());
    let mut session = Session::connect(pg, Notifications::Wake(wake.clone())).await?;
    let statements = Statements::prepare(&session.client, table).await?;
    // LISTEN before the first read: a row committed in between still wakes us.
    session
        .client
        .batch_execute(&format!("LISTEN {}", quote_ident(&config.channel)))
        .await?;
    let name = cursor_name(table);
    let mut position =
        load_position(config, table, &session.client, pipeline, &name, shutdown).await?;
    link.up();
    info!(server = %postgres::target(&pg.config), table = %table, channel = %config.channel, through = position.through, "FraiseQL change-log source reading");
    let mut watching: Option<Gap> = None;
    let mut last_lag: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if last_lag.is_none_or(|at| at.elapsed() >= super::LAG_INTERVAL) {
            last_lag = Some(Instant::now());
            let waiting: i64 = session
                .client
                .query_one(&statements.lag, &[&position.through])
                .await?
                .try_get(0)?;
            let ahead = position.ahead.len() as i64;
            pipeline
                .metrics()
                .source_lag(waiting.saturating_sub(ahead).max(0) as u64);
        }
        // The horizon is read before the rows: a gap whose transactions had
        // all ended by then shows its rows in this read, if it has any. Only
        // asked for while a gap is watched: most polls have none.
        let closable = match watching.filter(|gap| position.gap() == Some(gap.row)) {
            Some(gap) => {
                let (horizon, _) = snapshot(&session.client, &statements).await?;
                (horizon >= gap.horizon).then_some(gap)
            }
            None => None,
        };
        let before = position.clone();
        let ahead: Vec<i64> = position.ahead.iter().copied().collect();
        let rows = session
            .client
            .query(
                &statements.read,
                &[&position.through, &ahead, &(config.batch_size as i64)],
            )
            .await?;
        let read = rows.len();
        if !rows.is_empty() {
            let mut numbers = Vec::with_capacity(rows.len());
            let mut messages = Vec::with_capacity(rows.len());
            for row in &rows {
                let row = ChangeRow::from_row(row)?;
                numbers.push(row.number);
                messages.push(row.message(table));
            }
            if !store(pipeline, &messages, table, shutdown).await {
                return Ok(());
            }
            position.take(numbers);
        }
        if let Some(gap) = closable {
            if position.gap() == Some(gap.row) {
                info!(table = %table, from = gap.row, to = position.ahead.first().map(|n| n - 1), "rows never committed (rolled back); going on past them");
                position.close_gap();
            }
        }
        if position.ahead.len() > AHEAD_CAP {
            warn!(table = %table, row = ?position.gap(), "a change-log row has been missing while {AHEAD_CAP} later ones were read; its transaction is still open or it was rolled back; going on past it");
            position.close_gap();
        }
        watching = match (position.gap(), watching) {
            (None, _) => None,
            (Some(row), Some(gap)) if gap.row == row => Some(gap),
            (Some(row), _) => {
                let (_, horizon) = snapshot(&session.client, &statements).await?;
                Some(Gap { row, horizon })
            }
        };
        if position != before {
            save_position(pipeline, &name, &position, shutdown).await;
        }
        if read >= config.batch_size {
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

/// The saved place, or for a first start the one `start` asks for (saved
/// at once, so a restart begins there too).
async fn load_position(
    config: &ChangelogConfig,
    table: &TableName,
    client: &Client,
    pipeline: &Pipeline,
    name: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Position, SessionError> {
    let saved = loop {
        match pipeline.store().source_cursor(name).await {
            Ok(saved) => break saved,
            Err(e) => {
                error!(error = %e, "cannot read the change-log source's place; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    if let Some(bytes) = saved {
        match serde_json::from_slice::<Position>(&bytes) {
            Ok(position) => return Ok(position),
            Err(e) => {
                error!(error = %e, "the change-log source's saved place is unreadable; starting as configured by observers.start")
            }
        }
    }
    let through = match config.start {
        Start::Beginning => 0,
        Start::Now => client
            .query_one(
                &format!(
                    "SELECT coalesce(max(pk_entity_change_log), 0) FROM {}",
                    table.sql()
                ),
                &[],
            )
            .await?
            .try_get(0)?,
    };
    let position = Position {
        through,
        ahead: BTreeSet::new(),
    };
    save_position(pipeline, name, &position, shutdown).await;
    Ok(position)
}

/// Saves the place, retrying storage failures; a failure only means rows
/// are read again after a restart.
async fn save_position(
    pipeline: &Pipeline,
    name: &str,
    position: &Position,
    shutdown: &mut watch::Receiver<bool>,
) {
    let Ok(bytes) = serde_json::to_vec(position) else {
        return;
    };
    let mut delay = Duration::from_millis(100);
    while let Err(e) = pipeline.store().save_source_cursor(name, &bytes).await {
        error!(error = %e, "cannot save the change-log source's place; retrying");
        if super::pause(delay, shutdown).await {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Stores one batch's deliveries, retrying storage failures; false if
/// shutdown came first (the rows are then read again at the next start).
async fn store(
    pipeline: &Pipeline,
    messages: &[Message],
    table: &TableName,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut delay = Duration::from_millis(100);
    while let Err(e) = pipeline.ingest_messages(messages).await {
        error!(error = %e, rows = messages.len(), table = %table, "cannot store change-log rows; retrying");
        if super::pause(delay, shutdown).await {
            return false;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    true
}

/// The transaction-id horizon now: the oldest transaction still running,
/// and the next one to start.
async fn snapshot(client: &Client, statements: &Statements) -> Result<(u64, u64), SessionError> {
    let row = client.query_one(&statements.snapshot, &[]).await?;
    let number = |i: usize| -> Result<u64, SessionError> {
        let text: String = row.try_get(i)?;
        // xid8 is an unsigned 64-bit number; PostgreSQL writes it in digits.
        Ok(text.parse().unwrap_or(0))
    };
    Ok((number(0)?, number(1)?))
}

/// One change-log row as read.
#[derive(Debug, Clone, PartialEq)]
struct ChangeRow {
    number: i64,
    id: String,
    object_type: String,
    modification_type: String,
    object_id: Option<String>,
    /// JSON text, as PostgreSQL wrote it.
    after: Option<String>,
    /// JSON text, as PostgreSQL wrote it.
    before: Option<String>,
    tenant_id: Option<String>,
    seq: Option<i64>,
    actor_type: Option<String>,
    acting_for: Option<String>,
    /// JSON text, as PostgreSQL wrote it.
    trace_context: Option<String>,
    /// RFC 3339, UTC.
    time: String,
}

impl ChangeRow {
    fn from_row(row: &Row) -> Result<ChangeRow, tokio_postgres::Error> {
        Ok(ChangeRow {
            number: row.try_get(0)?,
            id: row.try_get(1)?,
            object_type: row.try_get(2)?,
            modification_type: row.try_get(3)?,
            object_id: row.try_get(4)?,
            after: row.try_get(5)?,
            before: row.try_get(6)?,
            tenant_id: row.try_get(7)?,
            seq: row.try_get(8)?,
            actor_type: row.try_get(9)?,
            acting_for: row.try_get(10)?,
            trace_context: row.try_get(11)?,
            time: row.try_get(12)?,
        })
    }

    /// The row as a FraiseQL change (the CDC sinks' shape, with the row's
    /// own `id`): the event keeps that id however often it is read.
    fn message(&self, table: &TableName) -> Message {
        let text = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let optional = |s: &Option<String>| s.as_deref().map_or("null".to_string(), text);
        let raw = |s: &Option<String>| s.clone().unwrap_or_else(|| "null".to_string());
        let payload = format!(
            "{{\"id\":{},\"seq\":{},\"object_type\":{},\"op\":{},\"tenant_id\":{},\"object_id\":{},\
             \"after\":{},\"before\":{},\"commit_time\":{},\"actor_type\":{},\"acting_for\":{},\
             \"trace_context\":{}}}",
            text(&self.id),
            self.seq.map_or("null".to_string(), |seq| seq.to_string()),
            text(&self.object_type),
            text(&self.modification_type),
            optional(&self.tenant_id),
            optional(&self.object_id),
            raw(&self.after),
            raw(&self.before),
            text(&self.time),
            optional(&self.actor_type),
            optional(&self.acting_for),
            raw(&self.trace_context),
        );
        Message {
            source: format!("fraiseql-changelog:{table}"),
            payload: payload.into(),
            key: Some(format!("{table}:{}", self.number)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Envelope, Operation};
    use serde_json::json;

    fn taken(through: i64, ahead: &[i64]) -> Position {
        Position {
            through,
            ahead: ahead.iter().copied().collect(),
        }
    }

    #[test]
    fn the_place_moves_over_rows_without_gaps_and_remembers_those_above_one() {
        let mut position = Position::default();
        position.take([1, 2, 3]);
        assert_eq!(position, taken(3, &[]));
        assert_eq!(position.gap(), None);
        // Row 4 is not committed yet: 5 and 6 are delivered and remembered.
        position.take([5, 6]);
        assert_eq!(position, taken(3, &[5, 6]));
        assert_eq!(position.gap(), Some(4));
        // Row 4 appears later and closes the gap.
        position.take([4, 7]);
        assert_eq!(position, taken(7, &[]));
        // Rows already behind the place are ignored.
        position.take([2]);
        assert_eq!(position, taken(7, &[]));
    }

    #[test]
    fn a_gap_given_up_moves_to_the_next_gap() {
        let mut position = taken(3, &[5, 6, 9]);
        position.close_gap();
        assert_eq!(position, taken(6, &[9]));
        assert_eq!(position.gap(), Some(7));
        position.close_gap();
        assert_eq!(position, taken(9, &[]));
        position.close_gap();
        assert_eq!(position, taken(9, &[]));
    }

    #[test]
    fn the_place_is_saved_as_small_json() {
        assert_eq!(
            serde_json::to_string(&taken(7, &[])).unwrap(),
            r#"{"through":7}"#
        );
        let back: Position = serde_json::from_str(r#"{"through":3,"ahead":[5]}"#).unwrap();
        assert_eq!(back, taken(3, &[5]));
    }

    fn row() -> ChangeRow {
        ChangeRow {
            number: 12,
            id: "0195f3a2-0000-7000-8000-00000000000c".into(),
            object_type: "Order".into(),
            modification_type: "UPDATE".into(),
            object_id: Some("0195f3a2-0000-7000-8000-000000000001".into()),
            after: Some(r#"{"id": 1, "status": "shipped"}"#.into()),
            before: Some(r#"{"id": 1, "status": "paid"}"#.into()),
            tenant_id: None,
            seq: Some(12),
            actor_type: Some("user".into()),
            acting_for: None,
            trace_context: Some(r#"{"traceparent": "00-ab"}"#.into()),
            time: "2026-12-07T04:14:57.503393Z".into(),
        }
    }

    #[test]
    fn a_row_becomes_a_fraiseql_change_named_by_its_id() {
        let table = TableName::parse(DEFAULT_TABLE).unwrap();
        let message = row().message(&table);
        assert_eq!(message.key.as_deref(), Some("core.tb_entity_change_log:12"));
        let document: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let event = crate::source::envelope::parse(document, &message.source).unwrap();
        assert_eq!(event.id, "0195f3a2-0000-7000-8000-00000000000c");
        assert_eq!(
            (event.entity.as_str(), &event.operation),
            ("Order", &Operation::Update)
        );
        assert_eq!(event.envelope, Envelope::FraiseqlCdc);
        assert_eq!(event.changed().len(), 1, "status changed");
        assert_eq!(event.timestamp, "2026-12-07T04:14:57.503393Z");
        assert_eq!(
            serde_json::Value::Object(event.meta.clone()),
            json!({"actor_type": "user", "trace_context": {"traceparent": "00-ab"}, "seq": 12})
        );
        assert_eq!(event.source, "fraiseql-changelog:core.tb_entity_change_log");
    }

    #[test]
    fn a_delete_without_images_still_names_its_row() {
        let table = TableName::parse(DEFAULT_TABLE).unwrap();
        let mut deleted = row();
        deleted.modification_type = "DELETE".into();
        deleted.after = None;
        let document: serde_json::Value =
            serde_json::from_slice(&deleted.message(&table).payload).unwrap();
        let event = crate::source::envelope::parse(document, "t").unwrap();
        assert_eq!(event.operation, Operation::Delete);
        assert_eq!(event.data, json!({"id": 1, "status": "paid"}));
    }
}
