//! The records of the DLQ: a [`DeadLetter`] (a delivery that will not be
//! retried any more, or input that never became an event, with the reason),
//! the [`Filter`] that picks entries, and the flat [`Summary`] `dlq list`
//! prints (built in `redact`, which hides credentials).

use serde::{Deserialize, Serialize};

use super::delivery::Delivery;

/// What died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// A delivery whose attempts failed for good.
    Delivery(Box<Delivery>),
    /// A message from a source that is not an event wasmhook understands.
    Input {
        /// The source it came from.
        source: String,
        /// The message, as received (lossy UTF-8).
        raw: String,
    },
}

/// One DLQ entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The delivery id (or a fresh id for rejected input).
    pub id: String,
    /// When it was moved here, unix milliseconds.
    pub failed_at_ms: u64,
    /// Why it died.
    pub reason: String,
    /// The delivery or the input.
    pub failure: Failure,
}

/// The flat view `dlq list` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Entry id, for `dlq show` and `dlq retry`.
    pub id: String,
    /// Observer name (empty for rejected input).
    pub observer: String,
    /// Target URL (empty for rejected input).
    pub url: String,
    /// The event's id (empty for rejected input).
    pub event_id: String,
    /// Attempts made.
    pub attempts: usize,
    /// Status of the last attempt, if it got a response.
    pub last_status: Option<u16>,
    /// The last attempt's error, or the reason.
    pub last_error: Option<String>,
    /// Why it died.
    pub reason: String,
    /// When it died, RFC 3339.
    pub failed_at: String,
}

/// Which part of a listing to return: the entries after `after` (an
/// entry's id; oldest first), at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Only entries whose id sorts after this one.
    pub after: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// Which entries an operation applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Only entries of this observer.
    pub observer: Option<String>,
    /// Only entries that died at least this many milliseconds ago.
    pub older_than_ms: Option<u64>,
    /// Only entries that died at or after this time (unix milliseconds).
    pub since_ms: Option<u64>,
    /// Only entries that died before this time (unix milliseconds).
    pub until_ms: Option<u64>,
}

impl DeadLetter {
    /// The letter of a delivery that died at `failed_at_ms`; its id is the
    /// delivery's.
    pub(crate) fn of_delivery(delivery: Delivery, reason: String, failed_at_ms: u64) -> DeadLetter {
        DeadLetter {
            id: delivery.id.clone(),
            failed_at_ms,
            reason,
            failure: Failure::Delivery(Box::new(delivery)),
        }
    }
}

impl Filter {
    /// True when `letter` is one of the entries this filter picks, at `now`.
    pub(crate) fn admits(&self, letter: &DeadLetter, now: u64) -> bool {
        let observer_ok = match (&self.observer, &letter.failure) {
            (None, _) => true,
            (Some(name), Failure::Delivery(d)) => &d.observer == name,
            (Some(_), Failure::Input { .. }) => false,
        };
        let age_ok = self
            .older_than_ms
            .is_none_or(|age| now.saturating_sub(letter.failed_at_ms) >= age);
        let since_ok = self.since_ms.is_none_or(|t| letter.failed_at_ms >= t);
        let until_ok = self.until_ms.is_none_or(|t| letter.failed_at_ms < t);
        observer_ok && age_ok && since_ok && until_ok
    }
}
