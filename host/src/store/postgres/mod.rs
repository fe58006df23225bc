//! The PostgreSQL backend: the outbox, the DLQ, the source cursors and the
//! small state other stages keep, in the tables of one schema that several
//! wasmhook processes may share.
//!
//! Every statement commits before it returns, so a write is as durable as
//! the server makes it and [`Database::flush`] has nothing left to do. The
//! tables live in `storage.schema`, the `search_path` of every connection,
//! so no statement names the schema. Their layout is versioned: refinery
//! applies `migrations/` at open, under an advisory lock so that nodes
//! starting together apply each migration once.
//!
//! Nodes share the outbox through leases: each open is a node with a fresh
//! id; a node owns the rows it wrote, released, rescheduled or adopted, and
//! keeps them by renewing their lease ([`Database::renew_leases`]). Rows
//! whose lease has run out (their node died, or gave them up in
//! [`Database::close`]) are taken over by [`Database::adopt`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::store::error::StoreError;
use crate::store::status::{MigrationInfo, Status};
use crate::tls::postgres::{shown, PgTarget};

mod cursors;
mod dlq;
mod log;
mod outbox;
mod state;

mod embedded {
    refinery::embed_migrations!("src/store/postgres/migrations");
}

/// How long a caller waits for a pooled connection before its operation
/// fails; the server being down must not hang ingest for good.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// The pool and what this node is, opened once.
pub(crate) struct Database {
    pool: Pool,
    /// This node's id: the `owner` of the outbox rows it holds.
    node: String,
    /// How long a row stays this node's without a renewal.
    lease: Duration,
    /// Whether finished deliveries go into the delivery log.
    logging: bool,
    /// The last counts read, answered when a count fails (a gauge has no
    /// way to report an error).
    outbox_seen: AtomicU64,
    dlq_seen: AtomicU64,
}

impl Database {
    /// Connects to the server, creates the schema if it is missing and
    /// applies the migrations it lacks, then opens a pool of up to
    /// `max_connections`. Rows this node writes are leased for `lease`;
    /// finished deliveries are logged when `logging`.
    pub(crate) async fn open(
        settings: &crate::store::PostgresSettings,
        logging: bool,
    ) -> Result<Database, StoreError> {
        let crate::store::PostgresSettings {
            target,
            schema,
            lease,
            max_connections,
        } = settings;
        let (lease, max_connections) = (*lease, *max_connections);
        let config = in_schema(target, schema)?;
        migrate(target, &config, schema).await?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match target.connector().map_err(setup)? {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(setup)?;
        Ok(Database {
            pool,
            node: crate::clock::new_id(),
            lease,
            logging,
            outbox_seen: AtomicU64::new(0),
            dlq_seen: AtomicU64::new(0),
        })
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The lease, as the SQL reads it (milliseconds, a float for `interval`
    /// arithmetic).
    fn lease_ms(&self) -> f64 {
        self.lease.as_secs_f64() * 1000.0
    }

    /// How long a row stays this node's without a renewal.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Nothing to wait for: every write committed before it returned.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Ok when a write goes through: the server is reachable, and is not a
    /// read-only standby.
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let probe = client
            .prepare_cached(
                "INSERT INTO health (probe, at) VALUES ('probe', now()) \
                 ON CONFLICT (probe) DO UPDATE SET at = EXCLUDED.at",
            )
            .await?;
        client.execute(&probe, &[]).await?;
        Ok(())
    }

    /// Reads a count for a gauge, or the last one read if that fails.
    async fn count(&self, sql: &str, seen: &AtomicU64) -> usize {
        let counted = async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await?;
            let n: i64 = client.query_one(&statement, &[]).await?.get(0);
            Ok::<_, StoreError>(n)
        }
        .await;
        match counted {
            Ok(n) => {
                let n = u64::try_from(n).unwrap_or(0);
                seen.store(n, Ordering::Relaxed);
                n as usize
            }
            Err(error) => {
                tracing::debug!(%error, "cannot count; reporting the last count");
                seen.load(Ordering::Relaxed) as usize
            }
        }
    }
}

/// True for a schema name that is spliced into statements unquoted: a
/// plain lower-case identifier, not one of PostgreSQL's own (`pg_...`).
pub(crate) fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `target`'s settings with `schema` as the `search_path` of every
/// connection (after any `options` the connection string sets).
fn in_schema(target: &PgTarget, schema: &str) -> Result<tokio_postgres::Config, StoreError> {
    if !valid_schema(schema) {
        return Err(StoreError::Setup(format!(
            "schema {schema:?} is not a plain identifier (lower-case letters, digits and _, \
             not starting with a digit or pg_, at most 63 bytes)"
        )));
    }
    let mut config = target.config.clone();
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} -c search_path={schema}"),
        _ => format!("-c search_path={schema}"),
    };
    config.options(options);
    Ok(config)
}

fn setup(error: impl std::fmt::Display) -> StoreError {
    StoreError::Setup(error.to_string())
}

/// One connection outside the pool (migrations, status), over TLS unless
/// `sslmode=disable`; its driver runs on a task of its own.
async fn connect(
    target: &PgTarget,
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, StoreError> {
    match target.connector().map_err(setup)? {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(error) = connection.await {
        tracing::debug!(error = %error, "storage connection closed");
    }
}

/// The advisory lock's key for `schema`'s migrations: one per schema, so
/// schemas of one database migrate independently.
fn lock_name(schema: &str) -> String {
    format!("wasmhook storage migrations: {schema}")
}

/// Creates `schema` if it is missing and applies the migrations it lacks,
/// holding an advisory lock so that nodes starting together wait for one
/// another rather than apply a migration twice. Returns those applied now.
async fn migrate(
    target: &PgTarget,
    config: &tokio_postgres::Config,
    schema: &str,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let mut client = connect(target, config).await?;
    let lock = lock_name(schema);
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock])
        .await?;
    let applied = async {
        // refinery creates its history table `IF NOT EXISTS`; the notice
        // that it exists would be logged at every start.
        client
            .batch_execute("SET client_min_messages TO warning")
            .await?;
        // Looked up first: `CREATE SCHEMA IF NOT EXISTS` needs the right to
        // create schemas even when the schema is there.
        let exists = client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await?;
        }
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await?;
        Ok::<_, StoreError>(
            report
                .applied_migrations()
                .iter()
                .map(|m| MigrationInfo {
                    version: i64::from(m.version()),
                    name: m.name().to_string(),
                })
                .collect(),
        )
    }
    .await;
    // On failure the lock goes with the connection, dropped here.
    if applied.is_ok() {
        client
            .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock])
            .await?;
    }
    applied
}

/// Applies the migrations `schema` lacks; returns those applied now.
pub(crate) async fn migrate_only(
    target: &PgTarget,
    schema: &str,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let config = in_schema(target, schema)?;
    migrate(target, &config, schema).await
}

/// The schema's state, read without changing it: no schema, table or
/// migration is created.
pub(crate) async fn status(target: &PgTarget, schema: &str) -> Result<Status, StoreError> {
    let config = in_schema(target, schema)?;
    let client = connect(target, &config).await?;
    // `to_regclass` finds the tables through the search_path: the schema.
    let row = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL, \
                    to_regclass('outbox') IS NOT NULL, \
                    to_regclass('dlq') IS NOT NULL",
            &[],
        )
        .await?;
    let (history, outbox, dlq): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let mut applied = Vec::new();
    if history {
        for row in client
            .query(
                "SELECT version::bigint, name FROM refinery_schema_history ORDER BY version",
                &[],
            )
            .await?
        {
            applied.push(MigrationInfo {
                version: row.get(0),
                name: row.get(1),
            });
        }
    }
    let pending = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| MigrationInfo {
            version: i64::from(m.version()),
            name: m.name().to_string(),
        })
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .collect();
    Ok(Status {
        backend: "postgres",
        location: shown(&target.config),
        schema: Some(schema.to_string()),
        applied,
        pending,
        outbox_len: count_if(&client, outbox, "SELECT count(*) FROM outbox").await?,
        dlq_len: count_if(&client, dlq, "SELECT count(*) FROM dlq").await?,
        size_on_disk: None,
    })
}

/// The count `sql` reads, if its table is `present`.
async fn count_if(
    client: &tokio_postgres::Client,
    present: bool,
    sql: &str,
) -> Result<Option<u64>, StoreError> {
    if !present {
        return Ok(None);
    }
    let n: i64 = client.query_one(sql, &[]).await?.get(0);
    Ok(Some(u64::try_from(n).unwrap_or(0)))
}

/// A unix-millisecond time or a count as PostgreSQL's `bigint`; values past
/// its range (never reached) stay at its end.
fn sql_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An outbox key as PostgreSQL's `bigint`; `None` for a key it cannot
/// have issued.
fn sql_key(key: u64) -> Option<i64> {
    i64::try_from(key).ok()
}

/// A key PostgreSQL issued, as the store hands it out.
fn store_key(key: i64) -> u64 {
    // Keys come from a sequence that starts at 1.
    key.max(0) as u64
}

/// What the tests of the store use to reach a PostgreSQL server: a fresh
/// schema per test, dropped when the test ends, however it ends.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::tls::TlsFiles;

    /// The server the tests use: `WASMHOOK_TEST_PG` (a connection string),
    /// else the local one with trust authentication.
    pub(crate) fn target() -> PgTarget {
        let conninfo = std::env::var("WASMHOOK_TEST_PG").unwrap_or_else(|_| {
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable".into()
        });
        PgTarget::parse(&conninfo, &TlsFiles::default()).unwrap()
    }

    /// A schema name no other test uses; dropped (with its tables) when
    /// the value is.
    pub(crate) struct Schema(pub(crate) String);

    impl Schema {
        pub(crate) fn fresh() -> Schema {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            Schema(format!("wasmhook_test_{}", hex::encode(bytes)))
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let name = self.0.clone();
            // Drop runs inside the test's runtime, which cannot be blocked
            // on: a thread of its own with its own runtime drops the schema.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let target = target();
                    let (client, connection) = target.config.connect(NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}", self.0);
            }
        }
    }
}
