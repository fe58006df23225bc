//! A webhook receiver on 127.0.0.1 that answers 200 and records each
//! request's path, headers and body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use serde_json::Value;

use crate::signature;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `X-FraiseQL-Event-Id`.
    pub fn event_id(&self) -> &str {
        self.header("x-fraiseql-event-id")
    }

    /// Panics unless `X-FraiseQL-Signature-256` verifies for `secret`.
    pub fn assert_signed(&self, secret: &str) {
        let header = self.header("x-fraiseql-signature-256");
        if let Err(why) = signature::verify(secret, header, &self.body, signature::now()) {
            panic!(
                "{} {}: bad X-FraiseQL-Signature-256: {why}",
                self.path,
                String::from_utf8_lossy(&self.body)
            );
        }
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    delay: Mutex<Duration>,
}

/// The receiver; clones share it.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts one on a free loopback port.
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, shared }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers each request only after `delay` (to keep work pending).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// What was received on `path`.
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done` holds for the requests on `path`; panics after
    /// `timeout` with what did arrive.
    pub async fn wait_until(
        &self,
        path: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.on(path);
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let bodies: Vec<_> = got
                    .iter()
                    .take(20)
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what} on {path}; got {}: {bodies:#?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for at least `n` requests on `path`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(path, &format!("{n} requests"), timeout, |r| r.len() >= n)
            .await
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared.requests.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
    });
    StatusCode::OK
}
