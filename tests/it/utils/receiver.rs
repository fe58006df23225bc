//! A real HTTP receiver on loopback that records every request and
//! answers with statuses the test scripts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    /// Statuses to answer next, in order; then `default_status`.
    script: Mutex<VecDeque<u16>>,
    default_status: Mutex<u16>,
    delay: Mutex<Duration>,
    /// Extra delay for one path.
    path_delay: Mutex<Option<(String, Duration)>>,
    /// `Retry-After` sent with every non-2xx answer.
    retry_after: Mutex<Option<String>>,
    /// Bodies containing this text are answered with this status.
    answer_when: Mutex<Option<(String, u16)>>,
}

/// A real HTTP server on 127.0.0.1 that records every request and answers
/// with statuses the test sets.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let state = Arc::new(ReceiverState {
            default_status: Mutex::new(200),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestReceiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers these statuses to the next requests, then the default.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn set_status(&self, status: u16) {
        *self.state.default_status.lock().unwrap() = status;
    }

    /// Answers `status` to requests whose body contains `text`; `None` stops.
    pub fn answer_when(&self, rule: Option<(&str, u16)>) {
        *self.state.answer_when.lock().unwrap() = rule.map(|(t, s)| (t.to_string(), s));
    }

    /// Sends `Retry-After: value` with every non-2xx answer.
    pub fn set_retry_after(&self, value: &str) {
        *self.state.retry_after.lock().unwrap() = Some(value.to_string());
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Answers requests to `path` only after `delay`.
    pub fn set_path_delay(&self, path: &str, delay: Duration) {
        *self.state.path_delay.lock().unwrap() = Some((path.to_string(), delay));
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests answered with 2xx are not tracked apart; tests count by path.
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done` holds for the recorded requests.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let checking = Instant::now();
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; got {} requests",
                    requests.len()
                );
            }
            // Checks over many thousands of requests are not free: keep the
            // test's share of the CPU small so the process under test runs.
            let cost = checking.elapsed();
            tokio::time::sleep(Duration::from_millis(20).max(cost * 4)).await;
        }
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let rule = state.answer_when.lock().unwrap().clone();
    let status = match rule {
        Some((text, status)) if String::from_utf8_lossy(&body).contains(&text) => status,
        _ => {
            let scripted = state.script.lock().unwrap().pop_front();
            scripted.unwrap_or(*state.default_status.lock().unwrap())
        }
    };
    let mut delay = *state.delay.lock().unwrap();
    if let Some((path, extra)) = state.path_delay.lock().unwrap().as_ref() {
        if path == uri.path() {
            delay += *extra;
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.requests.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body,
        at: Instant::now(),
        status,
    });
    let status = StatusCode::from_u16(status).unwrap();
    match state.retry_after.lock().unwrap().clone() {
        Some(after) if !status.is_success() => {
            (status, [(axum::http::header::RETRY_AFTER, after)]).into_response()
        }
        // A short body, as receivers often answer: the delivery log keeps it.
        _ if status.is_success() => (status, "thanks").into_response(),
        _ => status.into_response(),
    }
}
