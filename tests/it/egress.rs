//! How deliveries leave: a client certificate for a receiver that demands
//! one (mTLS), and an outbound proxy with `no_proxy`, the SSRF guard still
//! watching the destination behind the proxy.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wasmhook_testkit::{CertFiles, TestCa};

use crate::utils::{fraiseql_order, free_port, wait_for_port, InProcess, TestReceiver};

/// An HTTPS receiver (Python's ssl module, i.e. OpenSSL) that refuses the
/// handshake without a client certificate from `ca`; each request's path
/// and the client certificate's common name go to `log`, a line each.
async fn mtls_receiver(
    dir: &Path,
    ca: &TestCa,
    server: &CertFiles,
) -> (u16, tokio::process::Child) {
    let port = free_port();
    let script = r#"
import http.server, ssl, sys
port, cert, key, ca, log = sys.argv[1:]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
        with open(log, "a") as f:
            f.write(self.path + " " + subject["commonName"] + "\n")
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", int(port)), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(ca)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    let child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(&server.cert)
        .arg(&server.key)
        .arg(ca.ca_file())
        .arg(dir.join("mtls.log"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(10)).await.unwrap();
    (port, child)
}

fn mtls_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("mtls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn dlq(wasmhook: &InProcess, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let entries = wasmhook.get_json("/admin/dlq").await;
        let entries = entries.as_array().cloned().unwrap_or_default();
        if entries.len() >= count {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the DLQ never held {count} entries");
}

fn order(id: i64) -> String {
    fraiseql_order("created", json!({"id": id}), None).to_string()
}

/// A receiver that demands a client certificate gets requests from the
/// webhook that has one (per webhook, and inherited from `[webhooks]`);
/// the webhook that drops it (`client_cert = false`) is refused at the
/// handshake and its delivery ends in the DLQ with the reason.
#[tokio::test]
async fn a_receiver_requiring_a_client_certificate_gets_it_from_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "mtls").unwrap();
    let server = ca.server("receiver", &["localhost", "127.0.0.1"]).unwrap();
    let client = ca.client("wasmhook-client", "wasmhook-node").unwrap();
    let other = ca.client("other-client", "billing-node").unwrap();
    let (port, _receiver) = mtls_receiver(dir.path(), &ca, &server).await;
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let config = format!(
        "[webhooks]\nca_file = {ca:?}\nrequest_timeout_ms = 2000\n\
         client_cert = {{ cert_file = {cert:?}, key_file = {key:?} }}\n\
         [webhooks.retry]\nmax_attempts = 2\ninitial_delay = \"10ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nname = \"inherited\"\nurl = \"{}\"\n\
         [[observer.webhook]]\nname = \"own\"\nurl = \"{}\"\n\
         client_cert = {{ cert_file = {other_cert:?}, key_file = {other_key:?} }}\n\
         [[observer.webhook]]\nname = \"none\"\nurl = \"{}\"\nclient_cert = false\n",
        url("/inherited"),
        url("/own"),
        url("/none"),
        ca = ca.ca_file().display().to_string(),
        cert = client.cert.display().to_string(),
        key = client.key.display().to_string(),
        other_cert = other.cert.display().to_string(),
        other_key = other.key.display().to_string(),
    );
    let wasmhook = InProcess::start(&config).await;
    wasmhook.post_events(order(1)).await;

    let entries = dlq(&wasmhook, 1).await;
    assert_eq!(
        entries.len(),
        1,
        "only the webhook without a certificate fails"
    );
    assert_eq!(entries[0]["url"], url("/none"), "{entries:?}");
    let error = entries[0]["last_error"].as_str().unwrap_or_default();
    // TLS 1.3 reports the missing certificate after the handshake, as an
    // alert: "received fatal alert: CertificateRequired".
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let mut log = Vec::new();
    for _ in 0..200 {
        log = mtls_log(dir.path());
        if log.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log.sort();
    assert_eq!(
        log,
        vec!["/inherited wasmhook-node", "/own billing-node"],
        "each webhook presented its own certificate"
    );
    wasmhook.stop().await;
}

/// A bad client certificate file fails at start-up, naming the key.
#[tokio::test]
async fn a_client_certificate_that_is_not_pem_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let text = format!(
        "[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\n\
         url = \"https://example.com/\"\nclient_cert = {{ cert_file = {:?}, key_file = {:?} }}\n",
        cert.display().to_string(),
        cert.display().to_string(),
    );
    let error = wasmhook::config::Config::from_toml(&text, Path::new("test.toml"), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("observer[0] (\"o\").webhook[0].client_cert") && error.contains("cert.pem"),
        "{error}"
    );
}

/// A forward proxy for tests: CONNECT tunnels (HTTPS) and absolute-form
/// requests (plain HTTP, forwarded with `Connection: close` so that each
/// connection carries one request). Records what it was asked for.
struct TestProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    async fn start() -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(proxy_one(stream, log.clone()));
            }
        });
        TestProxy { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn proxy_one(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    seen.lock().unwrap().push(format!("{method} {target}"));
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        let _ = client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    let Ok(url) = reqwest::Url::parse(target) else {
        return;
    };
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let Ok(mut upstream) = TcpStream::connect(&authority).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let mut forwarded = format!("{method} {} HTTP/1.1\r\nconnection: close\r\n", url.path());
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("\r\n");
    if upstream.write_all(forwarded.as_bytes()).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Deliveries go through `[webhooks] proxy`, over HTTP (absolute-form)
/// and HTTPS (CONNECT, with the client certificate inside the tunnel),
/// except to `no_proxy` hosts and webhooks with `proxy = false`.
#[tokio::test]
async fn deliveries_go_through_the_proxy_except_no_proxy_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start().await;
    let receiver = TestReceiver::start().await;
    let port = receiver
        .url("/")
        .split(':')
        .nth(2)
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let ca = TestCa::new(dir.path(), "proxy").unwrap();
    let server = ca.server("receiver", &["localhost", "127.0.0.1"]).unwrap();
    let client = ca.client("client", "through-proxy").unwrap();
    let (tls_port, _mtls) = mtls_receiver(dir.path(), &ca, &server).await;
    let config = format!(
        "[webhooks]\nproxy = \"http://localhost:{proxy}\"\nno_proxy = [\"127.0.0.1\"]\n\
         ca_file = {ca:?}\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nname = \"proxied\"\nurl = \"http://localhost:{port}/proxied\"\n\
         [[observer.webhook]]\nname = \"listed\"\nurl = \"http://127.0.0.1:{port}/listed\"\n\
         [[observer.webhook]]\nname = \"direct\"\nurl = \"http://localhost:{port}/direct\"\nproxy = false\n\
         [[observer.webhook]]\nname = \"tunnel\"\nurl = \"https://localhost:{tls_port}/tunnel\"\n\
         client_cert = {{ cert_file = {cert:?}, key_file = {key:?} }}\n",
        proxy = proxy.port,
        ca = ca.ca_file().display().to_string(),
        cert = client.cert.display().to_string(),
        key = client.key.display().to_string(),
    );
    let wasmhook = InProcess::start(&config).await;
    wasmhook.post_events(order(1)).await;
    receiver
        .wait_until("the three plain deliveries", Duration::from_secs(20), |r| {
            ["/proxied", "/listed", "/direct"]
                .iter()
                .all(|path| r.iter().any(|x| x.path == *path && x.status == 200))
        })
        .await;
    for _ in 0..200 {
        if !mtls_log(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mtls_log(dir.path()), vec!["/tunnel through-proxy"]);
    let mut seen = proxy.seen();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            format!("CONNECT localhost:{tls_port}"),
            format!("POST http://localhost:{port}/proxied"),
        ],
        "only the proxied webhooks went through the proxy"
    );
    wasmhook.stop().await;
}

/// Behind a proxy the guard still refuses a destination that resolves to
/// a blocked network (here `localhost`, with no `allowed_networks`), while
/// the proxy itself, also on loopback, is the operator's and reachable: a
/// name that does not resolve here goes to it (and fails there).
#[tokio::test]
async fn the_ssrf_guard_refuses_a_blocked_destination_behind_the_proxy() {
    let proxy = TestProxy::start().await;
    let config = format!(
        "[webhooks]\nproxy = \"http://localhost:{}\"\nallowed_networks = []\n\
         [webhooks.retry]\nmax_attempts = 1\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"http://localhost:9/internal\"\n\
         [[observer.webhook]]\nurl = \"http://receiver.invalid/elsewhere\"\n",
        proxy.port
    );
    let wasmhook = InProcess::start(&config).await;
    wasmhook.post_events(order(1)).await;
    let entries = dlq(&wasmhook, 2).await;
    let entry = |url: &str| {
        entries
            .iter()
            .find(|e| e["url"] == url)
            .unwrap_or_else(|| panic!("no DLQ entry for {url}: {entries:?}"))
    };
    let blocked = entry("http://localhost:9/internal");
    let reason = blocked["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("loopback"), "{reason}");
    assert_eq!(
        entry("http://receiver.invalid/elsewhere")["last_status"],
        502
    );
    assert_eq!(
        proxy.seen(),
        vec!["POST http://receiver.invalid/elsewhere".to_string()],
        "the blocked destination never reached the proxy"
    );
    wasmhook.stop().await;
}
