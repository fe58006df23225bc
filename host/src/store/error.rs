//! Why a storage operation failed, whichever backend ran it. Callers
//! branch on `NotFound` and `NotRetryable` (the admin API's 404 and 409)
//! and on [`StoreError::is_locked`] (the CLI goes through the running
//! process instead); the rest they report.

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
    /// The filesystem is down to its reserve; new work is refused so that
    /// what is stored can still be delivered and recorded.
    #[error("storage: only {available} bytes free on the database's filesystem, under the {reserve}-byte reserve (storage.min_free_mb); new events are refused until space returns")]
    Full {
        /// Free bytes now.
        available: u64,
        /// The reserve.
        reserve: u64,
    },
    /// No record with this id.
    #[error("no DLQ entry with id {0}")]
    NotFound(String),
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
