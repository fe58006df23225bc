//! `wasmhook listen`, the development receiver, against real deliveries of
//! `wasmhook run`: it checks both signature schemes, refuses a tampered
//! request with the reason, and fails on purpose so a retry can be seen.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::utils::{binary, fraiseql_order, free_port, post, wait_for_port, Running};

/// `wasmhook listen --json ARGS` on a free port; its lines arrive on a
/// channel. Killed on drop.
struct Listen {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<Value>,
}

impl Listen {
    async fn start(args: &[&str]) -> Listen {
        let port = free_port();
        let mut child = Command::new(binary())
            .args(["listen", "--json", "--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        wait_for_port(port, Duration::from_secs(10)).await.unwrap();
        Listen { child, port, lines }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a request within 30 s")
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn listen_checks_real_deliveries_in_both_schemes_and_fails_on_purpose() {
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let listen = Listen::start(&[
        "--secret",
        "s3cret",
        "--standard-webhooks",
        WHSEC,
        "--status",
        "503",
        "--times",
        "1",
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.signing]\nsecret = \"s3cret\"\n\
             [webhooks.retry]\ninitial_delay = \"50ms\"\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n\
             [[observer.webhook]]\nurl = \"{}\"\n\
             [[observer.webhook]]\nurl = \"{}\"\nsigning = {{ scheme = \"standard-webhooks\", secret = \"{WHSEC}\" }}\n",
            listen.url("/default"),
            listen.url("/standard"),
        ),
    )
    .unwrap();
    let running = Running::start(&config, dir.path(), port).await;
    let (status, _) = post(
        &running.url("/events"),
        fraiseql_order("created", json!({"id": 1}), None).to_string(),
    )
    .await;
    assert_eq!(status, 202);
    // The first request is answered 503 on purpose and retried.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(listen.next());
    }
    assert_eq!(seen[0]["status"], 503, "{seen:#?}");
    assert!(
        seen[1..].iter().all(|line| line["status"] == 200),
        "{seen:#?}"
    );
    for line in &seen {
        assert_eq!(line["signature"]["valid"], true, "{line:#}");
        assert_eq!(line["body"], json!({"id": 1}));
    }
    let schemes: Vec<&str> = seen
        .iter()
        .map(|l| l["signature"]["scheme"].as_str().unwrap())
        .collect();
    assert!(
        schemes.contains(&"wasmhook") && schemes.contains(&"standard-webhooks"),
        "{schemes:?}"
    );

    // The same headers on another body: refused, with the reason.
    let delivered = seen
        .iter()
        .find(|l| l["signature"]["scheme"] == "wasmhook")
        .unwrap();
    let mut tampered = reqwest::Client::new().post(listen.url("/default"));
    for (name, value) in delivered["headers"].as_object().unwrap() {
        if name.starts_with("x-wasmhook") {
            tampered = tampered.header(name, value.as_str().unwrap());
        }
    }
    tampered.body("{\"id\": 2}").send().await.unwrap();
    let line = listen.next();
    assert_eq!(line["signature"]["valid"], false, "{line:#}");
    assert_eq!(line["signature"]["reason"], "signature mismatch");
}
