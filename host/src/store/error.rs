//! Why a storage operation failed, whichever backend ran it. Callers
//! branch on `NotFound` and `NotRetryable` (the admin API's 404 and 409)
//! and on [`StoreError::is_locked`] (the CLI goes through the running
//! process instead); the rest they report. No variant carries a connection
//! string: a PostgreSQL password never reaches a message.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, a second process holding the lock).
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be read back.
    #[error("storage: record {key} is unreadable: {source}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A packed record could not be unpacked.
    #[error("storage: record {key} is unreadable: {reason}")]
    Unpacked {
        /// The record's key.
        key: String,
        /// What is wrong with its bytes.
        reason: String,
    },
    /// The delivery log's files could not be read or written.
    #[error("storage: the delivery log's files: {0}")]
    LogFile(#[from] std::io::Error),
    /// The filesystem is down to its reserve; new work is refused so that
    /// what is stored can still be delivered and recorded.
    #[error("storage: only {available} bytes free on the database's filesystem, under the {reserve}-byte reserve (storage.min_free_mb); new events are refused until space returns")]
    Full {
        /// Free bytes now.
        available: u64,
        /// The reserve.
        reserve: u64,
    },
    // The PostgreSQL variants spell out their causes themselves (the
    // server's message, which `tokio_postgres::Error` hides) and name no
    // `source`, so that a report walking the chain does not repeat them.
    /// PostgreSQL refused a statement, or the connection broke.
    #[error("storage (PostgreSQL): {}", describe(.0))]
    Postgres(tokio_postgres::Error),
    /// No connection could be taken from the pool: the server cannot be
    /// reached, or every connection stayed busy for the whole wait.
    #[error("storage (PostgreSQL): no connection: {}", pool_text(.0))]
    Pool(deadpool_postgres::PoolError),
    /// The schema's migrations could not be applied or read.
    #[error("storage (PostgreSQL): migrations: {}", chain_text(.0))]
    Migration(refinery::Error),
    /// The PostgreSQL settings cannot be used (the schema's name, the TLS
    /// files, the pool's size).
    #[error("storage (PostgreSQL): {0}")]
    Setup(String),
    /// An outbox key the database never issued.
    #[error("storage: outbox key {0} was never issued by this database")]
    UnknownKey(u64),
    /// No record with this id.
    #[error("no DLQ entry with id {0}")]
    NotFound(String),
    /// No delivery with this id, pending or in the delivery log.
    #[error("no delivery with id {0} (pending, or in the delivery log)")]
    NoDelivery(String),
    /// The delivery is still pending: it will be attempted anyway.
    #[error(
        "delivery {0} is still pending; it is resent only once it has been delivered or has died"
    )]
    Pending(String),
    /// The delivery has finished (delivered or dead): nothing to cancel.
    #[error(
        "delivery {0} has already been delivered or has died; only a pending one can be cancelled"
    )]
    Finished(String),
    /// The entry cannot be retried (it is input that never became an event).
    #[error("DLQ entry {0} is undeliverable input, not a delivery; it cannot be retried")]
    NotRetryable(String),
}

impl StoreError {
    /// True when sled refused to open because another process holds it.
    pub fn is_locked(&self) -> bool {
        match self {
            StoreError::Sled(sled::Error::Io(e)) => {
                e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock")
            }
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(error)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Pool(error)
    }
}

impl From<refinery::Error> for StoreError {
    fn from(error: refinery::Error) -> StoreError {
        StoreError::Migration(error)
    }
}

/// `tokio_postgres::Error` displays a server error as only "db error"; the
/// server's message (and detail, hint) is what an operator needs.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string().replace('\n', "; ");
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

fn pool_text(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

/// An error and its causes, a PostgreSQL one described in full.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let shown = match e.downcast_ref::<tokio_postgres::Error>() {
            Some(pg) => describe(pg),
            None => e.to_string(),
        };
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = e.source();
    }
    text
}
