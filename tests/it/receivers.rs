//! Receivers that misbehave: too slow, resetting connections, failing half
//! the time, redirecting, answering a gigabyte, and HTTPS with a private CA.
//! Nothing accepted is lost; whatever cannot be delivered is in the DLQ with
//! its reason.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::utils::{fraiseql_order, InProcess, TestReceiver};

fn orders(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| fraiseql_order("created", json!({"id": i}), None).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn delivered_ids(requests: &[crate::utils::Received]) -> HashSet<i64> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json()["id"].as_i64())
        .collect()
}

async fn dlq(wasmhook: &InProcess, count: usize) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    for _ in 0..300 {
        entries = wasmhook
            .get_json("/admin/dlq")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        if entries.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    entries
}

fn config(url: &str, extra: &str) -> String {
    format!(
        "[webhooks]\nrequest_timeout_ms = 300\nmax_concurrent = 16\n{extra}\n\
         [webhooks.retry]\nmax_attempts = 30\ninitial_delay = \"10ms\"\nmax_delay = \"50ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{url}\"\n"
    )
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_gets_retried_until_it_keeps_up() {
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(600));
    let wasmhook = InProcess::start(&config(&receiver.url("/slow"), "")).await;
    wasmhook.post_events(orders(0..20)).await;
    // The first attempts time out (300 ms) while the receiver takes 600 ms.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = wasmhook.metrics().await;
    let timeouts = crate::utils::metric_sum(&text, "wasmhook_webhook_failure_total").unwrap_or(0.0);
    assert!(timeouts >= 20.0, "attempts timed out: {timeouts}");
    receiver.set_delay(Duration::ZERO);
    receiver
        .wait_until("all once it keeps up", Duration::from_secs(30), |r| {
            delivered_ids(r).len() == 20
        })
        .await;
    wasmhook.stop().await;
}

/// A webhook's own `timeout` wins over `[webhooks] request_timeout_ms`:
/// the same slow receiver that times out the global 300 ms answers within
/// the webhook's 2 s, so nothing fails.
#[tokio::test]
async fn a_webhooks_own_timeout_overrides_the_global_one() {
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(600));
    let text = config(&receiver.url("/patient"), "").replace(
        &format!("url = \"{}\"\n", receiver.url("/patient")),
        &format!("url = \"{}\"\ntimeout = \"2s\"\n", receiver.url("/patient")),
    );
    assert!(text.contains("timeout = \"2s\""), "{text}");
    let wasmhook = InProcess::start(&text).await;
    wasmhook.post_events(orders(0..5)).await;
    receiver
        .wait_until("every event", Duration::from_secs(30), |r| {
            delivered_ids(r).len() == 5
        })
        .await;
    let failures =
        crate::utils::metric_sum(&wasmhook.metrics().await, "wasmhook_webhook_failure_total")
            .unwrap_or(0.0);
    assert_eq!(failures, 0.0, "no attempt timed out");
    assert_eq!(
        receiver.requests().len(),
        5,
        "each delivered at the first attempt"
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn half_the_answers_failing_loses_nothing() {
    let receiver = TestReceiver::start().await;
    // A fixed pseudo-random pattern: about half 500s.
    let pattern: Vec<u16> = (0..2000u32)
        .map(|i| {
            if (i.wrapping_mul(2654435761) >> 16) % 2 == 0 {
                500
            } else {
                200
            }
        })
        .collect();
    receiver.script(&pattern);
    let wasmhook = InProcess::start(&config(&receiver.url("/coin"), "")).await;
    wasmhook.post_events(orders(0..300)).await;
    let got = receiver
        .wait_until("every event", Duration::from_secs(60), |r| {
            delivered_ids(r).len() == 300
        })
        .await;
    let failed = got.iter().filter(|r| r.status == 500).count();
    eprintln!("50% 500s: 300 events delivered after {failed} failed attempts");
    assert!(failed > 50);
    wasmhook.stop().await;
}

/// A raw TCP receiver: `reset` connections are dropped mid-request with an
/// RST; the rest get `answer` (a full HTTP response head) and then
/// `body_bytes` of filler, if any.
async fn raw_receiver(
    reset: usize,
    answer: &'static str,
    body_bytes: u64,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/raw", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let written_mb = Arc::new(AtomicUsize::new(0));
    let (count, written) = (served.clone(), written_mb.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let written = written.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // Read the head and (small) body.
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await;
                if n < reset {
                    // A zero linger makes the close an RST, as a crashed peer does.
                    let _ = socket.set_zero_linger();
                    drop(socket);
                    return;
                }
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 20];
                let mut sent = 0u64;
                while sent < body_bytes {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len() as u64;
                    written.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (url, served, written_mb)
}

#[tokio::test]
async fn connections_reset_mid_request_are_retried() {
    let (url, served, _) = raw_receiver(
        3,
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        0,
    )
    .await;
    let wasmhook = InProcess::start(&config(&url, "")).await;
    wasmhook.post_events(orders(0..1)).await;
    for _ in 0..200 {
        if served.load(Ordering::SeqCst) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three resets, then the answer: delivered, nothing in the DLQ.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served.load(Ordering::SeqCst), 4);
    assert!(wasmhook
        .get_json("/admin/dlq")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    let text = wasmhook.metrics().await;
    assert_eq!(
        crate::utils::metric_sum(&text, "wasmhook_webhook_success_total"),
        Some(1.0)
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_gigabyte_error_body_is_read_only_as_far_as_its_prefix() {
    let (url, _, written_mb) = raw_receiver(
        0,
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1073741824\r\n\r\n",
        1 << 30,
    )
    .await;
    let wasmhook =
        InProcess::start(&config(&url, "").replace("max_attempts = 30", "max_attempts = 1")).await;
    wasmhook.post_events(orders(0..1)).await;
    let entries = dlq(&wasmhook, 1).await;
    assert_eq!(entries.len(), 1);
    let shown = wasmhook
        .get_json(&format!(
            "/admin/dlq/{}",
            entries[0]["id"].as_str().unwrap()
        ))
        .await;
    let error = shown["failure"]["attempts"][0]["error"].as_str().unwrap();
    assert!(
        error.len() <= 1024 && error.starts_with("xxx"),
        "{}",
        error.len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The connection was dropped long before a gigabyte went through.
    let sent = written_mb.load(Ordering::SeqCst);
    assert!(
        sent < 200,
        "{sent} MiB were written before wasmhook hung up"
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_says_why() {
    let (url, _, _) = raw_receiver(
        0,
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\n\r\n",
        0,
    )
    .await;
    let wasmhook = InProcess::start(&config(&url, "")).await;
    wasmhook.post_events(orders(0..1)).await;
    let entries = dlq(&wasmhook, 1).await;
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 302: redirects are not followed"),
        "{reason}"
    );
    wasmhook.stop().await;
}

/// An HTTPS receiver (Python's http.server with a certificate signed by a
/// CA of our own), trusted through `[webhooks] ca_file`.
#[tokio::test]
async fn an_https_receiver_with_a_private_ca_is_trusted_through_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=wasmhook test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let port = crate::utils::free_port();
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        sys.stdout.write(body.decode() + "\n"); sys.stdout.flush()
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("server.pem", "server.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::utils::wait_for_port(port, Duration::from_secs(10))
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/tls");

    // Without the CA the certificate is refused (no retry can fix that in
    // time: a short budget sends it to the DLQ).
    let untrusted =
        InProcess::start(&config(&url, "").replace("max_attempts = 30", "max_attempts = 2")).await;
    untrusted.post_events(orders(0..1)).await;
    let entries = dlq(&untrusted, 1).await;
    assert_eq!(entries.len(), 1, "refused without the CA");
    untrusted.stop().await;

    let ca = d.join("ca.pem");
    let trusted = InProcess::start(&config(
        &url,
        &format!("ca_file = {:?}", ca.display().to_string()),
    ))
    .await;
    trusted.post_events(orders(7..8)).await;
    let mut stdout = child.stdout.take().unwrap();
    let mut line = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut line))
        .await
        .expect("the HTTPS receiver got the event")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(line[..n].trim_ascii()).unwrap();
    assert_eq!(body["id"], 7);
    trusted.stop().await;
    let _ = child.kill().await;
}
