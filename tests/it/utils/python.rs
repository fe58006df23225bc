//! Python as an independent implementation: signature checks with
//! Python's own hmac and the official Standard Webhooks package, and the
//! clients FraiseQL and Hasura users publish with.

use std::process::Command;

use axum::body::Bytes;

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
    let output = super::output_with_stdin(
        Command::new("python3").arg("-c").arg(script).args(args),
        input.as_bytes(),
    );
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
