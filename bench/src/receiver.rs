//! The webhook receiver every scenario delivers to: an axum server on
//! loopback that answers 200 at once, counts requests, records when each
//! arrived against the publish time the request carries, and checks the
//! signature of a sample.
//!
//! It must cost far less than what it measures, so the per-request work is
//! an atomic increment, one header parse and a push under a short lock; the
//! HMAC check runs on one request in [`SAMPLE_EVERY`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

/// The header carrying the publish time (Unix nanoseconds). wasmhook's
/// configs render it from the event's `sent_ns` field with a header
/// template; the raw client and the reference subscriber set it directly.
pub const SENT_HEADER: &str = "x-bench-sent";

/// One request in this many has its signature checked (and the first).
pub const SAMPLE_EVERY: u64 = 50;

/// Nanoseconds since the Unix epoch: the clock publishers and the receiver
/// share, since they run on one machine.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: the scheme of
/// wasmhook's README ("Delivery") and of the FraiseQL docs.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a request signed by wasmhook (`X-Wasmhook-Signature`,
/// `X-Wasmhook-Timestamp`) or by the reference subscriber, which uses the
/// docs' `X-Signature`/`X-Timestamp`. Constant-time, as a real receiver would.
pub fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let pick = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| headers.get(*n))
            .and_then(|v| v.to_str().ok())
    };
    let (Some(signature), Some(timestamp)) = (
        pick(["x-wasmhook-signature", "x-signature"]),
        pick(["x-wasmhook-timestamp", "x-timestamp"]),
    ) else {
        return false;
    };
    let Some(Ok(expected)) = signature.strip_prefix("sha256=").map(hex::decode) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

/// What arrived since the last [`Receiver::reset`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Events received (requests on `/hook`, array elements on `/batch`).
    pub count: u64,
    /// Requests received.
    pub requests: u64,
    /// Arrival time of the last one (Unix ns), 0 if none.
    pub last_ns: u64,
    /// Publish-to-arrival latencies in ns, sorted.
    pub latencies: Vec<u64>,
    /// Signatures checked, and how many of them were wrong.
    pub checked: u64,
    /// Wrong or missing signatures among the checked ones.
    pub bad: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    count: AtomicU64,
    last_ns: AtomicU64,
    checked: AtomicU64,
    bad: AtomicU64,
    stalled: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

struct Shared {
    secret: Vec<u8>,
    counters: Counters,
    release: watch::Sender<bool>,
}

/// The running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Binds a free loopback port and serves `/hook` (answers 200) and
    /// `/stall` (answers nothing until [`Receiver::release`]).
    pub async fn start(secret: &[u8]) -> Result<Receiver> {
        let (release, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            secret: secret.to_vec(),
            counters: Counters::default(),
            release,
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/batch", post(batch))
            .route("/stall", post(stall))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the receiver")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("wasmhook-bench: receiver stopped: {error}");
            }
        });
        Ok(Receiver { addr, shared })
    }

    /// `http://ADDR/hook`.
    pub fn hook_url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// `http://ADDR/batch`: counts the events in a JSON array body.
    pub fn batch_url(&self) -> String {
        format!("http://{}/batch", self.addr)
    }

    /// `http://ADDR/stall`.
    pub fn stall_url(&self) -> String {
        format!("http://{}/stall", self.addr)
    }

    /// Forgets everything recorded, and holds `/stall` requests again.
    pub fn reset(&self) {
        let c = &self.shared.counters;
        c.requests.store(0, Ordering::SeqCst);
        c.count.store(0, Ordering::SeqCst);
        c.last_ns.store(0, Ordering::SeqCst);
        c.checked.store(0, Ordering::SeqCst);
        c.bad.store(0, Ordering::SeqCst);
        c.stalled.store(0, Ordering::SeqCst);
        lock(&c.latencies).clear();
        self.shared.release.send_replace(false);
    }

    /// Lets every held `/stall` request finish (with a 503).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Events received so far (cheap; for progress polling).
    pub fn count(&self) -> u64 {
        self.shared.counters.count.load(Ordering::Acquire)
    }

    /// Requests held on `/stall` right now.
    pub fn stalled(&self) -> u64 {
        self.shared.counters.stalled.load(Ordering::Acquire)
    }

    /// Everything recorded, latencies sorted.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.shared.counters;
        let mut latencies = lock(&c.latencies).clone();
        latencies.sort_unstable();
        Snapshot {
            count: c.count.load(Ordering::Acquire),
            requests: c.requests.load(Ordering::Acquire),
            last_ns: c.last_ns.load(Ordering::Acquire),
            latencies,
            checked: c.checked.load(Ordering::Acquire),
            bad: c.bad.load(Ordering::Acquire),
        }
    }
}

/// A poisoned lock only means a handler panicked mid-push; the numbers in
/// it are still the best we have.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    record(&shared, &headers, &body, 1);
    StatusCode::OK
}

/// A batched delivery: one request, a JSON array of events. Counts events,
/// not requests, so the rate compares with the unbatched rows; the latency
/// is the batch's (its header carries one event's publish time).
async fn batch(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&body) {
        Ok(events) => {
            record(&shared, &headers, &body, events.len() as u64);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn record(shared: &Shared, headers: &HeaderMap, body: &[u8], events: u64) {
    let now = now_ns();
    let c = &shared.counters;
    let n = c.requests.fetch_add(1, Ordering::AcqRel);
    c.count.fetch_add(events, Ordering::AcqRel);
    c.last_ns.fetch_max(now, Ordering::AcqRel);
    let sent = headers
        .get(SENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(sent) = sent {
        lock(&c.latencies).push(now.saturating_sub(sent));
    }
    if n % SAMPLE_EVERY == 0 {
        c.checked.fetch_add(1, Ordering::AcqRel);
        if !verify(&shared.secret, headers, body) {
            c.bad.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Holds the request open, as a receiver that hangs would, until released
/// (or ten minutes pass).
async fn stall(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.counters.stalled.fetch_add(1, Ordering::AcqRel);
    let mut released = shared.release.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(600), released.wait_for(|r| *r)).await;
    shared.counters.stalled.fetch_sub(1, Ordering::AcqRel);
    StatusCode::SERVICE_UNAVAILABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_python_hmac() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"s", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"s", "1700000000", br#"{"a":1}"#),
            "sha256=ab7bd212df57f3ef4ea3c17d4a1a71d8981ef595d4cd699b62517c68d89192a2"
        );
    }

    #[test]
    fn verify_accepts_both_header_sets_and_rejects_tampering() {
        let body = br#"{"a":1}"#;
        let signature = sign(b"k", "12", body);
        for (sig, ts) in [
            ("x-wasmhook-signature", "x-wasmhook-timestamp"),
            ("x-signature", "x-timestamp"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(sig, signature.parse().unwrap());
            headers.insert(ts, "12".parse().unwrap());
            assert!(verify(b"k", &headers, body));
            assert!(!verify(b"k", &headers, br#"{"a":2}"#));
            assert!(!verify(b"other", &headers, body));
        }
        assert!(!verify(b"k", &HeaderMap::new(), body));
    }
}
