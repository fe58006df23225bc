//! The delivery log: every delivery that has finished, delivered or dead,
//! with its request and every attempt, kept for `[delivery_log]
//! retention`; pending deliveries are read from the outbox, so a delivery
//! is in exactly one of the two and a listing merges them. A delivery id is
//! a v7 UUID: its first 48 bits are the time its event was accepted, so
//! ids order the log by time and a time range is a range of ids.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::delivery::{Attempt, Delivery, Payload};
use super::error::StoreError;
use super::record::{self, PACKED};

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the outbox: not attempted yet, or to be retried.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Its attempts failed for good (it went to the DLQ).
    Dead,
}

impl Status {
    /// The name listings and filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(text: &str) -> Result<Status, String> {
        match text {
            "pending" => Ok(Status::Pending),
            "delivered" => Ok(Status::Delivered),
            "dead" => Ok(Status::Dead),
            other => Err(format!(
                "{other:?} is not a status; use delivered, pending or dead"
            )),
        }
    }
}

/// One delivery as the log knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    /// Where it is.
    pub status: Status,
    /// When it was delivered or died, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// Why it died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The delivery: its event, request and attempts.
    pub delivery: Delivery,
}

/// What a backend stores for a finished delivery: [`Logged`], borrowed.
#[derive(Serialize)]
pub(crate) struct Finished<'a> {
    pub status: Status,
    pub finished_at_ms: Option<u64>,
    pub reason: Option<&'a str>,
    pub delivery: &'a Delivery,
}

impl<'a> Finished<'a> {
    /// `delivery`, delivered at `at_ms`.
    pub(crate) fn delivered(delivery: &'a Delivery, at_ms: u64) -> Finished<'a> {
        Finished {
            status: Status::Delivered,
            finished_at_ms: Some(at_ms),
            reason: None,
            delivery,
        }
    }

    /// `delivery`, dead at `at_ms` for `reason`.
    pub(crate) fn dead(delivery: &'a Delivery, reason: &'a str, at_ms: u64) -> Finished<'a> {
        Finished {
            status: Status::Dead,
            finished_at_ms: Some(at_ms),
            reason: Some(reason),
            delivery,
        }
    }

    /// The stored record.
    pub(crate) fn record(&self) -> Vec<u8> {
        super::record::encode(self)
    }

    /// The stored record, made around `stored`, the delivery's outbox
    /// record: what an attempt changes (the attempts, a request built by
    /// the first attempt) and how it finished are written beside it, and
    /// the rest (the event, the request) is not serialized again.
    pub(crate) fn record_around(&self, stored: &[u8]) -> Vec<u8> {
        // A packed record cannot be searched: its request is written anyway.
        let without_payload = stored.first() == Some(&PACKED)
            || memchr::memmem::find(stored, b"\"payload\":null").is_some();
        let after = After {
            status: self.status,
            finished_at_ms: self.finished_at_ms,
            reason: self.reason.map(Cow::Borrowed),
            attempts: Cow::Borrowed(&self.delivery.attempts),
            payload: if without_payload {
                self.delivery.payload.as_ref().map(Cow::Borrowed)
            } else {
                None
            },
        };
        let after = serde_json::to_vec(&after).unwrap_or_default();
        let mut out = Vec::with_capacity(5 + stored.len() + after.len());
        out.push(AROUND);
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(stored);
        out.extend_from_slice(&after);
        out
    }
}

/// The first byte of a record made by [`Finished::record_around`], then the
/// outbox record's length (u32, little endian), the outbox record, and
/// [`After`] as JSON.
pub(crate) const AROUND: u8 = 0x02;

/// What a finished delivery adds to its outbox record: borrowed from the
/// delivery when written, owned when read.
#[derive(Serialize, Deserialize)]
struct After<'a> {
    status: Status,
    finished_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    attempts: Cow<'a, [Attempt]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Cow<'a, Payload>>,
}

/// Reads a log record: [`Finished::record`]'s or [`Finished::record_around`]'s.
pub(crate) fn decode_logged(key: &[u8], bytes: &[u8]) -> Result<Logged, StoreError> {
    let Some((&AROUND, rest)) = bytes.split_first() else {
        return record::decode(key, bytes);
    };
    let unreadable = |reason: &str| StoreError::Unpacked {
        key: record::shown(key),
        reason: reason.to_string(),
    };
    let (length, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| unreadable("it ends before its length"))?;
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() < length {
        return Err(unreadable("it ends inside its outbox record"));
    }
    let (stored, after) = rest.split_at(length);
    let mut delivery: Delivery = record::decode(key, stored)?;
    let after: After = serde_json::from_slice(after).map_err(|source| StoreError::Corrupt {
        key: record::shown(key),
        source,
    })?;
    delivery.attempts = after.attempts.into_owned();
    if let Some(payload) = after.payload {
        delivery.payload = Some(payload.into_owned());
    }
    Ok(Logged {
        status: after.status,
        finished_at_ms: after.finished_at_ms,
        reason: after.reason.map(Cow::into_owned),
        delivery,
    })
}

/// Whether a log record can be searched for bytes as they are (plain JSON,
/// or made around a plain outbox record).
pub(crate) fn searchable(record: &[u8]) -> bool {
    match record.first() {
        Some(&PACKED) => false,
        Some(&AROUND) => record.get(5) != Some(&PACKED),
        _ => true,
    }
}

/// Which deliveries a listing shows, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only this event's deliveries.
    pub event: Option<String>,
    /// Only this observer's.
    pub observer: Option<String>,
    /// Only those in this state.
    pub status: Option<Status>,
    /// Only those whose event was accepted at or after this time (unix ms).
    pub since_ms: Option<u64>,
    /// Only those whose event was accepted before this time (unix ms).
    pub until_ms: Option<u64>,
    /// Only ids below this one: the page after one that ended there.
    pub before: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            event: None,
            observer: None,
            status: None,
            since_ms: None,
            until_ms: None,
            before: None,
            limit: 50,
        }
    }
}

/// The smallest v7 id of a millisecond, as text: ids of deliveries
/// accepted at or after `ms` sort at or after it.
pub(crate) fn id_at(ms: u64) -> String {
    let ms = ms.min((1 << 48) - 1);
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

impl Query {
    /// The ids the query covers: at or above the first, below the second.
    pub(crate) fn id_range(&self) -> (Option<String>, Option<String>) {
        let low = self.since_ms.map(id_at);
        let until = self.until_ms.map(id_at);
        let high = match (until, &self.before) {
            (Some(a), Some(b)) => Some(if a.as_str() < b.as_str() {
                a
            } else {
                b.clone()
            }),
            (a, b) => a.or_else(|| b.clone()),
        };
        (low, high)
    }

    /// True when `delivery`, in state `status`, is one the query picks
    /// (the limit aside).
    pub(crate) fn admits(&self, status: Status, delivery: &Delivery) -> bool {
        let (low, high) = self.id_range();
        let id = delivery.id.as_str();
        self.status.is_none_or(|s| s == status)
            && self.event.as_ref().is_none_or(|e| *e == delivery.event.id)
            && self
                .observer
                .as_ref()
                .is_none_or(|o| *o == delivery.observer)
            && low.is_none_or(|low| id >= low.as_str())
            && high.is_none_or(|high| id < high.as_str())
    }

    /// Byte strings every record the query picks holds, when it is plain
    /// JSON (`store::record`): a scan skips the others without decoding.
    pub(crate) fn needles(&self) -> Vec<Vec<u8>> {
        let quoted = |key: &str, value: &str| {
            let value = serde_json::to_string(value).unwrap_or_default();
            format!("\"{key}\":{value}").into_bytes()
        };
        let mut needles = Vec::new();
        if let Some(observer) = &self.observer {
            needles.push(quoted("observer", observer));
        }
        if let Some(event) = &self.event {
            needles.push(quoted("id", event));
        }
        needles
    }

    /// Whether the query can pick pending deliveries, or finished ones.
    pub(crate) fn wants(&self, status: Status) -> bool {
        match (self.status, status) {
            (None, _) => true,
            (Some(Status::Pending), s) => s == Status::Pending,
            (Some(_), s) => s != Status::Pending,
        }
    }
}

/// The newest `limit` of two listings, each newest first.
pub(crate) fn merge(finished: Vec<Logged>, pending: Vec<Logged>, limit: usize) -> Vec<Logged> {
    let mut all = finished;
    all.extend(pending);
    all.sort_unstable_by(|a, b| b.delivery.id.cmp(&a.delivery.id));
    all.dedup_by(|a, b| a.delivery.id == b.delivery.id);
    all.truncate(limit);
    all
}

/// The flat view `deliveries list` prints and the admin API lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The delivery id (`X-Wasmhook-Delivery`).
    pub id: String,
    /// The event's id.
    pub event_id: String,
    /// Observer name.
    pub observer: String,
    /// The webhook's name.
    pub webhook: String,
    /// The webhook's position in its observer.
    pub webhook_index: usize,
    /// Target URL, credentials hidden (empty until a plugin has built it).
    pub url: String,
    /// Where it is.
    pub status: Status,
    /// Attempts made, earlier rounds included.
    pub attempts: usize,
    /// Status of the last attempt, if it got a response.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When its event was accepted, RFC 3339.
    pub created_at: String,
    /// When it was delivered or died, RFC 3339.
    pub finished_at: Option<String>,
    /// When a pending one's next attempt is due, RFC 3339.
    #[serde(default)]
    pub due_at: Option<String>,
}

/// One delivery in full, as `deliveries show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The summary.
    #[serde(flatten)]
    pub entry: Entry,
    /// Why it died.
    pub reason: Option<String>,
    /// The event.
    pub event: serde_json::Value,
    /// The request as sent, credentials hidden (signature headers are
    /// added at each attempt); `None` until a plugin has built it.
    pub request: Option<Request>,
    /// Every attempt, oldest first, earlier rounds included.
    pub timeline: Vec<Step>,
}

/// See [`Detail`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Target URL.
    pub url: String,
    /// Headers, as `[name, value]`.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// One attempt in a [`Detail`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When it started, RFC 3339.
    pub at: String,
    /// The response status.
    pub status: Option<u16>,
    /// The transport error, or the start of an error body.
    pub error: Option<String>,
    /// The start of a successful response's body.
    pub response: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// Unix milliseconds as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

impl Logged {
    /// The flat view; `webhook` is the webhook's name.
    pub fn entry(&self, webhook: String) -> Entry {
        let d = &self.delivery;
        let last = d.attempts.last().or(d.earlier_attempts.last());
        Entry {
            id: d.id.clone(),
            event_id: d.event.id.clone(),
            observer: d.observer.clone(),
            webhook,
            webhook_index: d.webhook,
            url: d
                .payload
                .as_ref()
                .map(|p| super::redact::url(&p.url))
                .unwrap_or_default(),
            status: self.status,
            attempts: d.attempts.len() + d.earlier_attempts.len(),
            last_status: last.and_then(|a| a.status),
            last_error: last.and_then(|a| a.error.clone()),
            created_at: rfc3339(d.accepted_ms),
            finished_at: self.finished_at_ms.map(rfc3339),
            due_at: (self.status == Status::Pending).then(|| rfc3339(d.due_ms)),
        }
    }

    /// Everything, credentials hidden.
    pub fn detail(&self, webhook: String) -> Detail {
        let d = &self.delivery;
        Detail {
            entry: self.entry(webhook),
            reason: self.reason.clone(),
            event: serde_json::to_value(&d.event).unwrap_or_default(),
            request: d.payload.as_ref().map(|p| {
                let mut headers = p.headers.clone();
                super::redact::headers(&mut headers);
                Request {
                    method: p.method.clone(),
                    url: super::redact::url(&p.url),
                    headers,
                    body: String::from_utf8_lossy(&p.body).into_owned(),
                }
            }),
            timeline: d
                .earlier_attempts
                .iter()
                .chain(&d.attempts)
                .map(|a| Step {
                    at: rfc3339(a.at_ms),
                    status: a.status,
                    error: a.error.clone(),
                    response: a.response.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// How long finished deliveries are kept (`[delivery_log]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Deliveries whose event is older are deleted.
    pub max_age: Option<std::time::Duration>,
    /// The oldest are deleted beyond this many bytes of records.
    pub max_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::delivery::test_support::delivery;

    /// A record made around the outbox record reads back as the finished
    /// delivery: the attempts since, a request built by the first attempt,
    /// and from a packed outbox record too.
    #[test]
    fn a_record_made_around_the_outbox_record_reads_back_whole() {
        let attempt = |status| Attempt {
            at_ms: 1,
            status: Some(status),
            error: None,
            response: Some("ok".into()),
            duration_ms: 2,
        };
        let mut stored = delivery("o", 0, 1);
        stored.attempts.push(attempt(500));
        let built = stored.payload.take();
        let mut large = stored.clone();
        large.event = {
            let mut event = (*large.event).clone();
            event.data = serde_json::json!({"note": "x".repeat(20_000)});
            event.into()
        };
        for before in [stored.clone(), large] {
            for with_payload in [false, true] {
                let mut before = before.clone();
                if with_payload {
                    before.payload = built.clone();
                }
                let bytes = record::encode(&before);
                let mut after = before.clone();
                after.payload = built.clone();
                after.attempts.push(attempt(200));
                let finished = Finished::delivered(&after, 42);
                let record = finished.record_around(&bytes);
                let logged = decode_logged(b"k", &record).unwrap();
                assert_eq!(logged.status, Status::Delivered);
                assert_eq!(logged.finished_at_ms, Some(42));
                assert_eq!(logged.delivery, after);
                assert_eq!(searchable(&record), bytes.first() != Some(&PACKED));
            }
        }
        let dead = Finished::dead(&stored, "gave up", 7).record_around(&record::encode(&stored));
        assert_eq!(
            decode_logged(b"k", &dead).unwrap().reason.as_deref(),
            Some("gave up")
        );
        let cut = &dead[..20];
        assert!(decode_logged(b"k", cut).is_err());
    }

    #[test]
    fn ids_of_a_time_bound_the_ids_made_then() {
        let before = id_at(crate::clock::now_ms());
        let made = crate::clock::new_id();
        let after = id_at(crate::clock::now_ms() + 1);
        assert!(before.as_str() <= made.as_str(), "{before} {made}");
        assert!(made.as_str() < after.as_str(), "{made} {after}");
    }

    #[test]
    fn a_query_picks_by_every_field() {
        let d = delivery("orders", 0, 1);
        let pick = |q: Query, s| q.admits(s, &d);
        assert!(pick(Query::default(), Status::Delivered));
        assert!(!pick(
            Query {
                status: Some(Status::Dead),
                ..Query::default()
            },
            Status::Delivered
        ));
        assert!(!pick(
            Query {
                observer: Some("other".into()),
                ..Query::default()
            },
            Status::Pending
        ));
        assert!(pick(
            Query {
                event: Some(d.event.id.clone()),
                ..Query::default()
            },
            Status::Pending
        ));
        assert!(!pick(
            Query {
                before: Some(d.id.clone()),
                ..Query::default()
            },
            Status::Pending
        ));
        assert!(!pick(
            Query {
                since_ms: Some(crate::clock::now_ms() + 1000),
                ..Query::default()
            },
            Status::Pending
        ));
        assert!(!pick(
            Query {
                until_ms: Some(1),
                ..Query::default()
            },
            Status::Pending
        ));
    }

    #[test]
    fn a_merge_keeps_the_newest_once() {
        let logged = |status| Logged {
            status,
            finished_at_ms: None,
            reason: None,
            delivery: delivery("o", 0, 1),
        };
        let (a, b, c) = (
            logged(Status::Delivered),
            logged(Status::Pending),
            logged(Status::Dead),
        );
        let merged = merge(vec![c.clone(), a.clone()], vec![b.clone()], 2);
        let ids: Vec<&str> = merged.iter().map(|l| l.delivery.id.as_str()).collect();
        assert_eq!(ids, [c.delivery.id.as_str(), b.delivery.id.as_str()]);
    }
}
