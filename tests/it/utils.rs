//! Shared test harness: a real HTTP receiver on loopback, wasmhook run
//! in-process or as the real binary; private servers (nats-server,
//! redis-server, PostgreSQL) and free ports come from wasmhook-testkit.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use tokio::sync::oneshot;
pub use wasmhook_testkit::{
    free_port, wait_for_port, NatsServer, PgCluster, RedisServer, StopMode,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
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
        _ => status.into_response(),
    }
}

/// wasmhook running in this process on port 0.
pub struct InProcess {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), wasmhook::RunError>>>,
}

impl InProcess {
    /// Starts with `config` (TOML); `[storage] path` is set to a temp dir.
    pub async fn start(config: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(config, dir).await
    }

    pub async fn start_in(config: &str, dir: tempfile::TempDir) -> InProcess {
        // RUST_LOG=wasmhook=debug shows the process's logs in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let text = format!(
            "{}\n[storage]\npath = {:?}\n",
            config,
            dir.path().join("db").display().to_string()
        );
        let config = wasmhook::config::Config::from_toml(&text, Path::new("test.toml"), &|name| {
            std::env::var(name).ok()
        })
        .unwrap_or_else(|e| panic!("test config: {e}"));
        let mut config = config;
        // Receivers here are on loopback, which the SSRF guard refuses by
        // default: tests allow it explicitly, unless one tests the guard.
        if !text.contains("allowed_networks") {
            config.http.allowed_networks =
                vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(wasmhook::run(config, listener, async move {
            let _ = stopped.await;
        }));
        InProcess {
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_events(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        post(&self.url("/events"), body).await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `/metrics` page, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops gracefully and returns the temp dir (the database survives).
    pub async fn stop(self) -> tempfile::TempDir {
        let InProcess {
            dir, stop, task, ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
        dir
    }
}

pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, value)
}

/// A FraiseQL envelope for an order.
pub fn fraiseql_order(
    operation: &str,
    entity: serde_json::Value,
    old: Option<serde_json::Value>,
) -> serde_json::Value {
    let id = entity["id"].clone();
    let mut event = serde_json::json!({
        "event": format!("fraiseql.order.{operation}"),
        "entity_type": "Order",
        "operation": operation,
        "entity_id": id,
        "entity": entity,
        "timestamp": "2026-03-02T14:00:00Z",
    });
    if let Some(old) = old {
        event["old"] = old;
    }
    event
}

/// The real binary, built by cargo for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmhook"))
}

/// Runs `wasmhook ARGS` to completion; returns (exit code, stdout, stderr).
pub fn wasmhook(args: &[&str], cwd: &Path) -> (i32, String, String) {
    wasmhook_env(args, cwd, &[])
}

/// [`wasmhook`] with extra environment variables.
pub fn wasmhook_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `wasmhook run` as a child process, killed (SIGKILL) on drop.
pub struct Running {
    pub child: Child,
    pub port: u16,
}

impl Running {
    pub async fn start(config_path: &Path, cwd: &Path, port: u16) -> Running {
        Self::start_with_env(config_path, cwd, port, &[]).await
    }

    /// With extra environment variables (for `${VAR}` in the config).
    pub async fn start_with_env(
        config_path: &Path,
        cwd: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Running {
        let log = std::fs::File::create(cwd.join(format!(
            "wasmhook-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
        .unwrap();
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config_path)
            .current_dir(cwd)
            .env("RUST_LOG", "wasmhook=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(15)).await.unwrap();
        Running { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Checks signatures with the verification function from the FraiseQL
/// webhook docs, run by Python's own hmac: an independent implementation.
/// `items` are (signature, timestamp, body); returns one verdict each.
pub fn python_verify(secret: &str, items: &[(String, String, Bytes)]) -> Vec<bool> {
    use base64::Engine;
    let script = r#"
import base64, hashlib, hmac, json, sys, time

def verify_webhook(payload: bytes, signature: str, timestamp: str, secret: str, max_age_seconds: int = 300) -> bool:
    ts = int(timestamp)
    if abs(time.time() - ts) > max_age_seconds:
        return False
    message = f"{timestamp}.".encode() + payload
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)

secret = sys.argv[1]
for line in sys.stdin:
    item = json.loads(line)
    print(json.dumps(verify_webhook(base64.b64decode(item["body"]), item["signature"], item["timestamp"], secret)))
"#;
    let mut input = String::new();
    for (signature, timestamp, body) in items {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        input.push_str(
            &serde_json::json!({"signature": signature, "timestamp": timestamp, "body": b64})
                .to_string(),
        );
        input.push('\n');
    }
    python_lines(script, &[secret], &input)
        .iter()
        .map(|l| l == "true")
        .collect()
}

/// Checks Standard Webhooks requests with the official Python package
/// (`standardwebhooks`). `items` are (webhook-id, webhook-timestamp,
/// webhook-signature, body); returns one verdict each.
pub fn python_standard_verify(
    secret: &str,
    items: &[(String, String, String, Bytes)],
) -> Vec<bool> {
    use base64::Engine;
    let script = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook
wh = Webhook(sys.argv[1])
for line in sys.stdin:
    item = json.loads(line)
    headers = {"webhook-id": item["id"], "webhook-timestamp": item["ts"], "webhook-signature": item["sig"]}
    try:
        wh.verify(base64.b64decode(item["body"]), headers)
        print("true")
    except Exception:
        print("false")
"#;
    let mut input = String::new();
    for (id, ts, sig, body) in items {
        let body = base64::engine::general_purpose::STANDARD.encode(body);
        input.push_str(
            &serde_json::json!({"id": id, "ts": ts, "sig": sig, "body": body}).to_string(),
        );
        input.push('\n');
    }
    python_lines(script, &[secret], &input)
        .iter()
        .map(|l| l == "true")
        .collect()
}

/// Runs a Python script with `args`, feeding `input` on stdin; returns its
/// output lines.
fn python_lines(script: &str, args: &[&str], input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python failed (see .ci/run for the packages): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs a Python script with `args` (in `sys.argv[1:]`); panics with its
/// stderr if it fails. The clients FraiseQL and Hasura users publish with
/// (redis-py, nats-py, psycopg) are installed by .ci/run.
pub fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is installed");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `/readyz` answers `status`.
pub async fn readyz(url: &str, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(url).await.map(|r| r.status().as_u16()).ok() != Some(status) {
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Entity id -> how many times it was delivered (2xx answers).
pub fn delivered(requests: &[Received]) -> std::collections::HashMap<i64, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in requests.iter().filter(|r| r.status == 200) {
        *counts.entry(r.json()["id"].as_i64().unwrap()).or_default() += 1;
    }
    counts
}

/// Runs the binary with `config` and SIGKILLs it `rounds` times, each time
/// once a further share of `total` events has arrived: kills land on
/// progress, not after a fixed time, however loaded the machine is. Checks
/// that the kills landed mid-stream.
pub async fn kill_on_progress(
    what: &str,
    config: &Path,
    dir: &Path,
    port: u16,
    receiver: &TestReceiver,
    total: i64,
    rounds: i64,
) {
    for round in 0..rounds {
        let mut running = Running::start(config, dir, port).await;
        let target = (round + 1) * total / (rounds + 1);
        receiver
            .wait_until("progress before the kill", Duration::from_secs(120), |r| {
                delivered(r).len() as i64 >= target
            })
            .await;
        running.kill9();
        let done = delivered(&receiver.requests()).len();
        eprintln!(
            "{what}: after kill {}: {done} of {total} delivered",
            round + 1
        );
    }
    assert!(
        (delivered(&receiver.requests()).len() as i64) < total,
        "{what}: the kills must land mid-stream"
    );
}

/// The sum of a metric's samples in Prometheus text: lines named `name`
/// (followed by labels or a space); `None` when there is none. Give the
/// labels too (`name{a="b"}`) to pick one sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The kill tests' scale: `WASMHOOK_KILLS` kills across
/// `WASMHOOK_KILL_EVENTS` events (3 kills and `events` in CI; the recorded
/// runs in docs/RELIABILITY.md use 20 and 20000).
pub fn kill_scale(events: i64) -> (i64, i64) {
    let get = |name: &str, default: i64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        get("WASMHOOK_KILLS", 3),
        get("WASMHOOK_KILL_EVENTS", events),
    )
}
