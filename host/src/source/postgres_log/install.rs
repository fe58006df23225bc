//! `wasmhook pg install|uninstall`: the event log, the trigger function and
//! the row triggers that the `postgres-log` source reads.
//!
//! Everything happens in one transaction, serialised with other installs by
//! an advisory lock, and every statement is idempotent, so running install
//! twice, or two installs at once, leaves the same objects behind.
//!
//! The trigger function is `SECURITY DEFINER` with a fixed `search_path`:
//! roles that write to the recorded tables need no rights on the log, and a
//! caller's `search_path` cannot redirect the function's statements.

use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use super::{is_plain_name, NameError, TableName};
use crate::source::postgres::{self, quote_ident, Notifications, Session};

/// Marks a schema that install created, so uninstall drops only that one
/// (and only when nothing else lives in it).
const SCHEMA_MARK: &str = "created by wasmhook pg install";

/// Serialises installs: `CREATE … IF NOT EXISTS` alone races with itself.
const LOCK_KEY: &str = "wasmhook pg install";

/// Why install or uninstall failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A name given on the command line cannot be used.
    #[error("--{flag}: {error}")]
    Name {
        /// The flag, e.g. `table`.
        flag: &'static str,
        /// Why.
        error: NameError,
    },
    /// The connection string does not parse.
    #[error("{0}")]
    Dsn(crate::tls::postgres::PgTargetError),
    /// The server could not be reached or refused us. The caller names the
    /// server: it holds the connection string.
    #[error("cannot connect: {0}")]
    Connect(postgres::SessionError),
    /// A statement failed.
    #[error("{what}: {}", postgres::describe(error))]
    Sql {
        /// What it was doing, naming the object.
        what: String,
        /// Why.
        error: tokio_postgres::Error,
    },
    /// A table to record does not exist.
    #[error("table {0} does not exist")]
    NoSuchTable(String),
    /// The log table was given as a table to record.
    #[error("{0} is the event log itself; recording its own changes would never end")]
    LogItself(String),
    /// An unqualified log table with no schema to put it in.
    #[error("no current schema for {0} (search_path is empty); give it as schema.table")]
    NoSchema(String),
}

/// What became of one table's trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerChange {
    /// Created now.
    Created,
    /// Was there already; left as it is.
    AlreadyThere,
    /// Dropped now.
    Removed,
    /// There was none to drop.
    Absent,
    /// The table does not exist (uninstall only).
    NoSuchTable,
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The log table, schema-qualified.
    pub log_table: String,
    /// The trigger function, schema-qualified.
    pub function: String,
    /// The channel the function notifies.
    pub channel: String,
    /// Whether the schema was created now.
    pub created_schema: bool,
    /// Whether the log table was created now.
    pub created_log: bool,
    /// Each table as given, and its trigger.
    pub triggers: Vec<(String, TriggerChange)>,
}

/// What `uninstall` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uninstalled {
    /// The log table, schema-qualified.
    pub log_table: String,
    /// Each table and its trigger: the tables given, or without them every
    /// table that had one.
    pub triggers: Vec<(String, TriggerChange)>,
    /// Without tables: `Some(rows not yet delivered)` if the log table was
    /// dropped, `None` if there was none (or tables were given).
    pub dropped_log: Option<i64>,
    /// Whether the trigger function was dropped.
    pub dropped_function: bool,
    /// Whether the schema install had created was dropped; it is kept while
    /// anything else lives in it.
    pub dropped_schema: bool,
}

/// The objects derived from one log table's (qualified) name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    log: TableName,
    function: TableName,
    trigger: String,
    undone_index: String,
    done_index: String,
}

impl Names {
    fn new(schema: &str, table: &str) -> Names {
        let log = TableName {
            schema: Some(schema.to_string()),
            name: table.to_string(),
        };
        Names {
            function: TableName {
                schema: Some(schema.to_string()),
                name: identifier(&format!("{table}_capture")),
            },
            // Named after the log, so one table can feed two logs.
            trigger: identifier(&format!("{schema}_{table}_capture")),
            undone_index: identifier(&format!("{table}_undone_idx")),
            done_index: identifier(&format!("{table}_delivered_at_idx")),
            log,
        }
    }

    /// `to_regprocedure`'s argument.
    fn function_signature(&self) -> String {
        format!("{}()", self.function.sql())
    }
}

/// PostgreSQL cuts names at 63 bytes; cutting them here keeps the name we
/// look up equal to the one created, without a notice. Names are ASCII.
fn identifier(name: &str) -> String {
    name.chars().take(63).collect()
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The log table and its indexes. Each index covers one side of the
/// `delivered_at IS NULL` divide, so a row enters each once: the undone
/// index when written, the delivered one when marked done.
fn log_table_sql(names: &Names) -> String {
    let log = names.log.sql();
    format!(
        "CREATE TABLE IF NOT EXISTS {log} (\n\
         \x20   id bigserial PRIMARY KEY,\n\
         \x20   schema_name text NOT NULL,\n\
         \x20   table_name text NOT NULL,\n\
         \x20   op text NOT NULL,\n\
         \x20   \"old\" jsonb,\n\
         \x20   \"new\" jsonb,\n\
         \x20   created_at timestamptz NOT NULL DEFAULT now(),\n\
         \x20   delivered_at timestamptz\n\
         );\n\
         CREATE INDEX IF NOT EXISTS {undone} ON {log} (id) WHERE delivered_at IS NULL;\n\
         CREATE INDEX IF NOT EXISTS {done} ON {log} (delivered_at) WHERE delivered_at IS NOT NULL;\n",
        undone = quote_ident(&names.undone_index),
        done = quote_ident(&names.done_index),
    )
}

/// Set only on creation: commenting needs ownership, which a later install
/// by another role may lack.
fn log_comment_sql(names: &Names) -> String {
    format!(
        "COMMENT ON TABLE {} IS {}",
        names.log.sql(),
        quote_literal(
            "wasmhook event log: row changes recorded by triggers, delivered as webhooks; \
             delivered_at is set once the deliveries are stored"
        )
    )
}

/// The trigger function: one log row per changed row, and a wake-up.
/// Identical notifications in one transaction are sent once by PostgreSQL,
/// so a bulk write wakes wasmhook once.
fn function_sql(names: &Names, channel: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger\n\
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $wasmhook$\n\
         BEGIN\n\
         \x20   INSERT INTO {log} (schema_name, table_name, op, \"old\", \"new\")\n\
         \x20   VALUES (\n\
         \x20       TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP,\n\
         \x20       CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,\n\
         \x20       CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END\n\
         \x20   );\n\
         \x20   PERFORM pg_notify({channel}, '');\n\
         \x20   RETURN NULL;\n\
         END\n\
         $wasmhook$;\n",
        function = names.function.sql(),
        log = names.log.sql(),
        channel = quote_literal(channel),
    )
}

fn trigger_sql(names: &Names, table: &TableName) -> String {
    format!(
        "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} \
         FOR EACH ROW EXECUTE FUNCTION {}()",
        quote_ident(&names.trigger),
        table.sql(),
        names.function.sql()
    )
}

fn parse_all(tables: &[String]) -> Result<Vec<TableName>, InstallError> {
    tables
        .iter()
        .map(|t| {
            TableName::parse(t).map_err(|error| InstallError::Name {
                flag: "table",
                error,
            })
        })
        .collect()
}

async fn connect(dsn: &str) -> Result<Session, InstallError> {
    let config = postgres::client_config(dsn, &crate::tls::TlsFiles::default())
        .map_err(InstallError::Dsn)?;
    // Install never LISTENs: nobody waits for this wake-up.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    Session::connect(&config, Notifications::Wake(wake))
        .await
        .map_err(InstallError::Connect)
}

fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> InstallError {
    let what = what.into();
    move |error| InstallError::Sql { what, error }
}

/// Begins, takes the install lock and resolves the log table's schema.
async fn begin<'a>(
    session: &'a mut Session,
    log_table: &TableName,
) -> Result<(Transaction<'a>, Names), InstallError> {
    let tx = session
        .client
        .transaction()
        .await
        .map_err(sql("begin a transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&LOCK_KEY])
        .await
        .map_err(sql("take the install lock"))?;
    let schema = match log_table.schema() {
        Some(schema) => schema.to_string(),
        None => tx
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(sql("read the current schema"))?
            .try_get::<_, Option<String>>(0)
            .map_err(sql("read the current schema"))?
            .ok_or_else(|| InstallError::NoSchema(log_table.to_string()))?,
    };
    Ok((tx, Names::new(&schema, log_table.name())))
}

/// The table's oid, or `None` if it does not exist.
async fn table_oid(tx: &Transaction<'_>, table: &TableName) -> Result<Option<u32>, InstallError> {
    tx.query_one("SELECT to_regclass($1)::oid", &[&table.sql()])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql(format!("look up table {table}")))
}

async fn has_trigger(
    tx: &Transaction<'_>,
    table: u32,
    names: &Names,
    shown: &TableName,
) -> Result<bool, InstallError> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2)",
        &[&table, &names.trigger],
    )
    .await
    .and_then(|row| row.try_get(0))
    .map_err(sql(format!("look up the trigger on {shown}")))
}

/// Creates the event log and a trigger on each of `tables`, idempotently;
/// `channel` is what the triggers `NOTIFY` on (the function is replaced, so
/// a new channel applies to tables installed before too).
pub async fn install(
    dsn: &str,
    log_table: &str,
    channel: &str,
    tables: &[String],
) -> Result<Installed, InstallError> {
    let log_table = TableName::parse(log_table).map_err(|error| InstallError::Name {
        flag: "log-table",
        error,
    })?;
    if !is_plain_name(channel) {
        return Err(InstallError::Name {
            flag: "channel",
            error: NameError(channel.to_string()),
        });
    }
    let tables = parse_all(tables)?;
    let mut session = connect(dsn).await?;
    let (tx, names) = begin(&mut session, &log_table).await?;
    let log = &names.log;
    let schema = log.schema().unwrap_or_default();

    let schema_exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql(format!("look up schema {schema}")))?;
    if !schema_exists {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; COMMENT ON SCHEMA {s} IS {}",
            quote_literal(SCHEMA_MARK),
            s = quote_ident(schema)
        ))
        .await
        .map_err(sql(format!("create schema {schema}")))?;
    }
    let created_log = table_oid(&tx, log).await?.is_none();
    tx.batch_execute(&log_table_sql(&names))
        .await
        .map_err(sql(format!("create the event log {log}")))?;
    if created_log {
        tx.batch_execute(&log_comment_sql(&names))
            .await
            .map_err(sql(format!("comment on the event log {log}")))?;
    }
    let log_oid = table_oid(&tx, log).await?;
    tx.batch_execute(&function_sql(&names, channel))
        .await
        .map_err(sql(format!(
            "create the trigger function {}",
            names.function
        )))?;

    let mut triggers = Vec::with_capacity(tables.len());
    for table in &tables {
        let Some(oid) = table_oid(&tx, table).await? else {
            return Err(InstallError::NoSuchTable(table.to_string()));
        };
        if Some(oid) == log_oid {
            return Err(InstallError::LogItself(table.to_string()));
        }
        let change = if has_trigger(&tx, oid, &names, table).await? {
            TriggerChange::AlreadyThere
        } else {
            tx.batch_execute(&trigger_sql(&names, table))
                .await
                .map_err(sql(format!("create the trigger on {table}")))?;
            TriggerChange::Created
        };
        triggers.push((table.to_string(), change));
    }
    tx.commit().await.map_err(sql("commit"))?;
    Ok(Installed {
        log_table: log.to_string(),
        function: names.function.to_string(),
        channel: channel.to_string(),
        created_schema: !schema_exists,
        created_log,
        triggers,
    })
}

/// Drops the triggers of `tables`; with none given, every trigger feeding
/// the log, the function, the log table (undelivered rows included) and the
/// schema if install created it and nothing else is in it.
pub async fn uninstall(
    dsn: &str,
    log_table: &str,
    tables: &[String],
) -> Result<Uninstalled, InstallError> {
    let log_table = TableName::parse(log_table).map_err(|error| InstallError::Name {
        flag: "log-table",
        error,
    })?;
    let tables = parse_all(tables)?;
    let mut session = connect(dsn).await?;
    let (mut tx, names) = begin(&mut session, &log_table).await?;
    let mut report = Uninstalled {
        log_table: names.log.to_string(),
        triggers: Vec::new(),
        dropped_log: None,
        dropped_function: false,
        dropped_schema: false,
    };

    if !tables.is_empty() {
        for table in &tables {
            let change = match table_oid(&tx, table).await? {
                None => TriggerChange::NoSuchTable,
                Some(oid) if has_trigger(&tx, oid, &names, table).await? => {
                    tx.batch_execute(&format!(
                        "DROP TRIGGER IF EXISTS {} ON {}",
                        quote_ident(&names.trigger),
                        table.sql()
                    ))
                    .await
                    .map_err(sql(format!("drop the trigger on {table}")))?;
                    TriggerChange::Removed
                }
                Some(_) => TriggerChange::Absent,
            };
            report.triggers.push((table.to_string(), change));
        }
        tx.commit().await.map_err(sql("commit"))?;
        return Ok(report);
    }

    // Every trigger calling the function, whatever its name or table:
    // dropping the function must not fail on, or silently take, any of them.
    let signature = names.function_signature();
    let feeding = tx
        .query(
            "SELECT c.oid::regclass::text, t.tgname::text FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE t.tgfoid = to_regprocedure($1)::oid ORDER BY 1, 2",
            &[&signature],
        )
        .await
        .map_err(sql(format!("list the triggers calling {}", names.function)))?;
    for row in &feeding {
        let (table, trigger): (String, String) = (
            row.try_get(0).map_err(sql("read a trigger"))?,
            row.try_get(1).map_err(sql("read a trigger"))?,
        );
        // `regclass` text is already quoted (and qualified) as SQL needs it.
        tx.batch_execute(&format!(
            "DROP TRIGGER IF EXISTS {} ON {table}",
            quote_ident(&trigger)
        ))
        .await
        .map_err(sql(format!("drop the trigger on {table}")))?;
        report.triggers.push((table, TriggerChange::Removed));
    }
    let function_exists: bool = tx
        .query_one("SELECT to_regprocedure($1) IS NOT NULL", &[&signature])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql(format!("look up {}", names.function)))?;
    if function_exists {
        tx.batch_execute(&format!("DROP FUNCTION IF EXISTS {signature}"))
            .await
            .map_err(sql(format!("drop {}", names.function)))?;
        report.dropped_function = true;
    }
    let log = &names.log;
    if table_oid(&tx, log).await?.is_some() {
        let undone: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE delivered_at IS NULL",
                    log.sql()
                ),
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(sql(format!("count undelivered rows in {log}")))?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", log.sql()))
            .await
            .map_err(sql(format!("drop the event log {log}")))?;
        report.dropped_log = Some(undone);
    }

    let schema = log.schema().unwrap_or_default();
    let ours: bool = tx
        .query_one(
            "SELECT coalesce((SELECT obj_description(oid, 'pg_namespace') = $2 \
             FROM pg_namespace WHERE nspname = $1), false)",
            &[&schema, &SCHEMA_MARK],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(sql(format!("look up schema {schema}")))?;
    if ours {
        // RESTRICT: a schema holding anything else stays.
        let savepoint = tx
            .savepoint("wasmhook_schema")
            .await
            .map_err(sql("savepoint"))?;
        match savepoint
            .batch_execute(&format!("DROP SCHEMA {}", quote_ident(schema)))
            .await
        {
            Ok(()) => {
                savepoint.commit().await.map_err(sql("release savepoint"))?;
                report.dropped_schema = true;
            }
            Err(e) if e.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
                savepoint
                    .rollback()
                    .await
                    .map_err(sql("rollback to savepoint"))?;
            }
            Err(e) => return Err(sql(format!("drop schema {schema}"))(e)),
        }
        tx.commit().await.map_err(sql("commit"))?;
    } else {
        tx.commit().await.map_err(sql("commit"))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("wasmhook", "event_log")
    }

    #[test]
    fn every_object_is_created_idempotently() {
        let sql = log_table_sql(&names());
        for line in sql.lines().filter(|l| l.starts_with("CREATE")) {
            assert!(line.contains("IF NOT EXISTS"), "{line}");
        }
        assert!(sql.starts_with("CREATE TABLE IF NOT EXISTS \"wasmhook\".\"event_log\" ("));
        assert!(sql.contains(
            "CREATE INDEX IF NOT EXISTS \"event_log_undone_idx\" ON \"wasmhook\".\"event_log\" (id) WHERE delivered_at IS NULL"
        ));
        assert!(function_sql(&names(), "wasmhook_events").starts_with(
            "CREATE OR REPLACE FUNCTION \"wasmhook\".\"event_log_capture\"() RETURNS trigger"
        ));
    }

    #[test]
    fn the_function_records_both_rows_and_wakes_the_channel() {
        let sql = function_sql(&names(), "orders_events");
        assert!(sql.contains("INSERT INTO \"wasmhook\".\"event_log\""));
        assert!(sql.contains("to_jsonb(OLD)") && sql.contains("to_jsonb(NEW)"));
        assert!(sql.contains("PERFORM pg_notify('orders_events', '')"));
        assert!(sql.contains("SECURITY DEFINER SET search_path = pg_catalog, pg_temp"));
    }

    #[test]
    fn triggers_are_named_after_the_log_and_quote_the_table() {
        let table = TableName::parse("shop.orders").unwrap();
        assert_eq!(
            trigger_sql(&names(), &table),
            "CREATE TRIGGER \"wasmhook_event_log_capture\" AFTER INSERT OR UPDATE OR DELETE \
             ON \"shop\".\"orders\" FOR EACH ROW EXECUTE FUNCTION \"wasmhook\".\"event_log_capture\"()"
        );
    }

    #[test]
    fn long_names_are_cut_as_postgresql_would() {
        let long = "l".repeat(63);
        let n = Names::new(&"s".repeat(63), &long);
        assert_eq!(n.trigger.len(), 63);
        assert_eq!(n.function.name().len(), 63);
    }

    #[test]
    fn bad_names_are_refused_before_connecting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The DSN points nowhere: the names must fail first.
        let dsn = "postgres://nobody@127.0.0.1:1/none";
        let e = rt
            .block_on(install(dsn, DEFAULT_LOG, "ok", &["Orders".into()]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--table: \"Orders\" is not a table name (lowercase letters, digits and _, optionally schema.table)"
        );
        let e = rt
            .block_on(install(dsn, DEFAULT_LOG, "bad channel", &["orders".into()]))
            .unwrap_err();
        assert!(e.to_string().starts_with("--channel: "), "{e}");
        let e = rt.block_on(uninstall(dsn, "a.b.c", &[])).unwrap_err();
        assert!(e.to_string().starts_with("--log-table: "), "{e}");
    }

    const DEFAULT_LOG: &str = super::super::DEFAULT_TABLE;
}
