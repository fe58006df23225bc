//! Delivery: signatures, retries, the DLQ, webhook order.

use std::time::Duration;

use serde_json::json;

use crate::utils::{
    fraiseql_order, python_standard_verify, python_verify, InProcess, TestReceiver,
};

fn config(receiver: &TestReceiver, signing: &str, retry: &str, paths: &[&str]) -> String {
    let webhooks: String = paths
        .iter()
        .map(|p| format!("  [[observer.webhook]]\n  url = \"{}\"\n", receiver.url(p)))
        .collect();
    format!(
        "{signing}\n[webhooks.retry]\n{retry}\n\n[[observer]]\nname = \"orders\"\nentity = \"Order\"\n{webhooks}"
    )
}

const SIGNING: &str = "[webhooks.signing]\nsecret = \"whsec-test-secret\"\nheader = \"X-FraiseQL-Signature\"\ntimestamp_header = \"X-FraiseQL-Timestamp\"";
const FAST_RETRY: &str = "max_attempts = 3\ninitial_delay = \"50ms\"\nmax_delay = \"200ms\"";

#[tokio::test]
async fn every_request_verifies_with_the_fraiseql_receiver_code() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&config(&receiver, SIGNING, FAST_RETRY, &["/in"])).await;
    let events: Vec<String> = (0..20)
        .map(|i| {
            // Bodies with quotes, backslashes and non-ASCII text must verify too.
            fraiseql_order(
                "created",
                json!({"id": format!("o{i}"), "note": format!("\"q\\{i}\" – ünïcode"), "total": i}),
                None,
            )
            .to_string()
        })
        .collect();
    let (status, _) = wasmhook.post_events(events.join("\n")).await;
    assert_eq!(status, 202);
    let got = receiver
        .wait_until("20 deliveries", Duration::from_secs(10), |r| r.len() == 20)
        .await;
    let items: Vec<_> = got
        .iter()
        .map(|r| {
            (
                r.header("x-fraiseql-signature").to_string(),
                r.header("x-fraiseql-timestamp").to_string(),
                r.body.clone(),
            )
        })
        .collect();
    assert!(items.iter().all(|(s, _, _)| s.starts_with("sha256=")));
    assert_eq!(python_verify("whsec-test-secret", &items), vec![true; 20]);
    // The check is real: a wrong secret or a changed body fails it.
    assert_eq!(python_verify("other-secret", &items[..1]), vec![false]);
    let mut tampered = items[0].clone();
    tampered.2 = axum::body::Bytes::from(format!("{} ", String::from_utf8_lossy(&tampered.2)));
    assert_eq!(python_verify("whsec-test-secret", &[tampered]), vec![false]);
    assert!(got
        .iter()
        .all(|r| r.header("x-wasmhook-delivery").len() == 36));
    assert!(got
        .iter()
        .all(|r| r.header("content-type") == "application/json"));
    wasmhook.stop().await;
}

#[tokio::test]
async fn standard_webhooks_with_a_rotated_secret_verify_with_the_official_package() {
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let receiver = TestReceiver::start().await;
    let signing = format!(
        "[webhooks.signing]\nscheme = \"standard-webhooks\"\nsecrets = [\"{NEW}\", \"{OLD}\"]"
    );
    let wasmhook = InProcess::start(&config(&receiver, &signing, FAST_RETRY, &["/in"])).await;
    let events: Vec<String> = (0..5)
        .map(|i| fraiseql_order("created", json!({"id": i, "note": "\"ü\""}), None).to_string())
        .collect();
    wasmhook.post_events(events.join("\n")).await;
    let got = receiver
        .wait_until("5 deliveries", Duration::from_secs(10), |r| r.len() == 5)
        .await;
    let items: Vec<_> = got
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").to_string(),
                r.header("webhook-timestamp").to_string(),
                r.header("webhook-signature").to_string(),
                r.body.clone(),
            )
        })
        .collect();
    // The webhook id is the delivery id, stable across retries.
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == r.header("x-wasmhook-delivery")));
    assert!(items
        .iter()
        .all(|i| i.2.starts_with("v1,") && i.2.contains(" v1,")));
    // Receivers on either secret verify; a third secret does not.
    assert_eq!(python_standard_verify(NEW, &items), vec![true; 5]);
    assert_eq!(python_standard_verify(OLD, &items), vec![true; 5]);
    assert_eq!(
        python_standard_verify("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=", &items),
        vec![false; 5]
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn retry_after_on_429_and_503_is_honoured_up_to_max_delay() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[429, 503]);
    receiver.set_retry_after("1");
    // Without Retry-After the retries would come after about 10 ms.
    let retry = "max_attempts = 5\ninitial_delay = \"10ms\"\nmax_delay = \"3s\"";
    let wasmhook = InProcess::start(&config(&receiver, "", retry, &["/in"])).await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": "r"}), None).to_string())
        .await;
    let got = receiver
        .wait_until(
            "delivered on the third attempt",
            Duration::from_secs(20),
            |r| r.len() == 3,
        )
        .await;
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 503, 200]
    );
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    }
    wasmhook.stop().await;

    // A Retry-After beyond max_delay is cut to max_delay.
    let receiver = TestReceiver::start().await;
    receiver.script(&[503]);
    receiver.set_retry_after("Fri, 31 Dec 2100 23:59:59 GMT");
    let retry = "max_attempts = 3\ninitial_delay = \"10ms\"\nmax_delay = \"300ms\"";
    let wasmhook = InProcess::start(&config(&receiver, "", retry, &["/in"])).await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": "d"}), None).to_string())
        .await;
    let got = receiver
        .wait_until(
            "delivered on the second attempt",
            Duration::from_secs(20),
            |r| r.len() == 2,
        )
        .await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(250), "waited only {gap:?}");
    wasmhook.stop().await;
}

#[tokio::test]
async fn built_in_field_encryption_round_trips_through_wasmhook_decrypt() {
    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[[observer]]\nname = \"users\"\nentity = \"user\"\n[[observer.webhook]]\nurl = \"{}\"\n\
         body = {{ id = \"{{{{ id }}}}\", email = \"{{{{ email }}}}\", ssn = \"{{{{ ssn }}}}\" }}\n\
         encryption = {{ algorithm = \"AES-256-GCM\", key = \"{KEY}\", fields = [\"email\", \"ssn\"] }}\n",
        receiver.url("/users")
    ))
    .await;
    let row = json!({"id": 1, "email": "ada@example.com", "ssn": "123-45-6789"});
    wasmhook
        .post_events(json!({"entity": "user", "op": "INSERT", "data": row}).to_string())
        .await;
    let got = receiver
        .wait_until("an encrypted user", Duration::from_secs(10), |r| {
            r.len() == 1
        })
        .await;
    let sent = got[0].json();
    assert_eq!(sent["id"], 1);
    assert!(
        sent["email"].as_str().unwrap().starts_with("wh1:"),
        "{sent}"
    );
    assert!(!String::from_utf8_lossy(&got[0].body).contains("123-45"));

    // What a receiver runs: the real binary, the body on stdin.
    let out = crate::utils::output_with_stdin(
        std::process::Command::new(crate::utils::binary()).args([
            "decrypt",
            "--key",
            KEY,
            "--fields",
            "email,ssn",
        ]),
        &got[0].body,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(opened, row);

    // A wrong key is a clear error, never garbage.
    let wrong = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let path = wasmhook.dir.path().join("body.json");
    std::fs::write(&path, &got[0].body).unwrap();
    let (code, _, err) = crate::utils::wasmhook(
        &[
            "decrypt",
            "--key",
            wrong,
            "--fields",
            "email",
            path.to_str().unwrap(),
        ],
        wasmhook.dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("field `email`: authentication failed"),
        "{err}"
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn an_oversized_body_goes_to_the_dlq_with_the_reason() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[webhooks]\nmax_payload_bytes = 100000\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nmax_payload_bytes = 64\n\
         [[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/small"),
        receiver.url("/default")
    ))
    .await;
    let big = "x".repeat(200);
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": 1, "note": big}), None).to_string())
        .await;
    let got = receiver
        .wait_until("the default-limit webhook", Duration::from_secs(10), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(got[0].path, "/default");
    let dlq = wasmhook.get_json("/admin/dlq").await;
    let entries = dlq.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{dlq}");
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(reason.contains("over max_payload_bytes (64)"), "{reason}");
    assert!(receiver.on("/small").is_empty());
    wasmhook.stop().await;
}

#[tokio::test]
async fn sha512_signatures() {
    let receiver = TestReceiver::start().await;
    let signing = "[webhooks.signing]\nsecret = \"k\"\nalgorithm = \"sha512\"";
    let wasmhook = InProcess::start(&config(&receiver, signing, FAST_RETRY, &["/in"])).await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": "a"}), None).to_string())
        .await;
    let got = receiver
        .wait_until("a delivery", Duration::from_secs(10), |r| r.len() == 1)
        .await;
    let (sig, ts) = (
        got[0].header("x-wasmhook-signature"),
        got[0].header("x-wasmhook-timestamp"),
    );
    let script = "import hmac,hashlib,sys; print('sha512=' + hmac.new(b'k', sys.argv[1].encode() + b'.' + sys.argv[2].encode(), hashlib.sha512).hexdigest())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, ts, &String::from_utf8_lossy(&got[0].body)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), sig);
    wasmhook.stop().await;
}

#[tokio::test]
async fn retries_on_500_then_delivers_with_one_delivery_id() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[500, 503]);
    let wasmhook = InProcess::start(&config(&receiver, "", FAST_RETRY, &["/flaky"])).await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": "r1"}), None).to_string())
        .await;
    let got = receiver
        .wait_until("three attempts", Duration::from_secs(10), |r| r.len() == 3)
        .await;
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("x-wasmhook-delivery"))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // The backoff waited between attempts (50 ms, then 100 ms, each within
    // ±20% jitter: at least 120 ms in all).
    assert!(
        got[2].at - got[0].at >= Duration::from_millis(115),
        "{:?}",
        got[2].at - got[0].at
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wasmhook.get_json_dlq().await, json!([]));
    assert_eq!(receiver.requests().len(), 3);
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_400_goes_straight_to_the_dlq_and_exhausted_retries_follow() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&config(&receiver, "", FAST_RETRY, &["/bad", "/down"])).await;
    receiver.script(&[400]);
    receiver.set_status(502);
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": "d1"}), None).to_string())
        .await;
    receiver
        .wait_until("1 + 3 attempts", Duration::from_secs(10), |r| r.len() == 4)
        .await;
    let dlq = wait_dlq(&wasmhook, 2).await;
    let bad = dlq
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("/bad"))
        .unwrap();
    assert_eq!(
        (bad["attempts"].as_u64(), bad["last_status"].as_u64()),
        (Some(1), Some(400))
    );
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 400 is not retried"),
        "{bad}"
    );
    let down = dlq
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("/down"))
        .unwrap();
    assert_eq!(
        (down["attempts"].as_u64(), down["last_status"].as_u64()),
        (Some(3), Some(502))
    );
    assert_eq!(down["observer"], "orders");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{down}"
    );

    // `show` keeps the event, the request as sent and every attempt.
    let shown = wasmhook
        .get_json(&format!("/admin/dlq/{}", down["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["failure"]["event"]["entity_id"], "d1");
    assert_eq!(
        shown["failure"]["payload"]["body"],
        json!({"id": "d1"}).to_string()
    );
    assert_eq!(shown["failure"]["attempts"].as_array().unwrap().len(), 3);

    // Fixed receiver + retry-all: delivered, DLQ empty.
    receiver.set_status(200);
    let (status, answer) =
        crate::utils::post(&wasmhook.url("/admin/dlq/retry-all"), json!({}).to_string()).await;
    assert_eq!(
        (status, answer["requeued"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    receiver
        .wait_until("both redelivered", Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.path == "/bad").count() == 2
                && r.iter().filter(|r| r.path == "/down").count() == 4
        })
        .await;
    wait_dlq(&wasmhook, 0).await;
    wasmhook.stop().await;
}

#[tokio::test]
async fn webhooks_of_one_observer_run_in_order() {
    let receiver = TestReceiver::start().await;
    // The first webhook is slow: the others must still arrive after it.
    receiver.set_path_delay("/first", Duration::from_millis(150));
    let wasmhook = InProcess::start(&config(
        &receiver,
        "",
        FAST_RETRY,
        &["/first", "/second", "/third"],
    ))
    .await;
    let events: Vec<String> = (0..5)
        .map(|i| fraiseql_order("created", json!({"id": i}), None).to_string())
        .collect();
    wasmhook.post_events(events.join("\n")).await;
    let got = receiver
        .wait_until("15 deliveries", Duration::from_secs(10), |r| r.len() == 15)
        .await;
    for i in 0..5 {
        let order: Vec<&str> = got
            .iter()
            .filter(|r| r.json()["id"] == i)
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(order, ["/first", "/second", "/third"], "event {i}");
    }
    wasmhook.stop().await;
}

async fn wait_dlq(wasmhook: &InProcess, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let list = wasmhook.get_json_dlq().await;
        if list.as_array().unwrap().len() == n {
            return list.as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "DLQ did not reach {n} entries: {}",
        wasmhook.get_json_dlq().await
    );
}

impl InProcess {
    async fn get_json_dlq(&self) -> serde_json::Value {
        self.get_json("/admin/dlq").await
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_every_blocked_class_and_redirects_into_them() {
    let receiver = TestReceiver::start().await;
    let port = receiver.addr.port();
    let targets = [
        (format!("http://127.0.0.1:{port}/loopback"), "loopback"),
        (format!("http://localhost:{port}/by-name"), "loopback"),
        (format!("http://[::1]:{port}/v6"), "loopback"),
        ("http://10.0.0.1/private".to_string(), "private"),
        ("http://192.168.1.1/private".to_string(), "private"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://100.64.0.1/cgnat".to_string(), "CGNAT"),
        ("http://224.0.0.1/multicast".to_string(), "multicast"),
        ("http://[::ffff:127.0.0.1]:1/mapped".to_string(), "loopback"),
    ];
    let webhooks: String = targets
        .iter()
        .map(|(url, _)| format!("[[observer.webhook]]\nurl = \"{url}\"\n"))
        .collect();
    // An allowance elsewhere opens nothing here.
    let wasmhook = InProcess::start(&format!(
        "[webhooks]\nallowed_networks = [\"10.99.0.0/16\"]\n\
         [webhooks.retry]\nmax_attempts = 5\ninitial_delay = \"10ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n{webhooks}"
    ))
    .await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": 1}), None).to_string())
        .await;
    let mut dlq = serde_json::Value::Null;
    for _ in 0..200 {
        dlq = wasmhook.get_json("/admin/dlq").await;
        if dlq.as_array().unwrap().len() == targets.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries = dlq.as_array().unwrap();
    assert_eq!(entries.len(), targets.len(), "{dlq}");
    for (url, class) in &targets {
        let entry = entries
            .iter()
            .find(|e| e["url"] == url.as_str())
            .unwrap_or_else(|| panic!("no DLQ entry for {url}: {dlq}"));
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("is a {class} address")),
            "{url}: {reason}"
        );
        // Refused for good: one attempt, no retries.
        assert_eq!(entry["attempts"], 1, "{url}: {entry}");
    }
    assert!(receiver.requests().is_empty(), "nothing reached loopback");
    wasmhook.stop().await;

    // Redirects: followed only when enabled, and each hop is checked.
    let redirector = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(
                axum::http::header::LOCATION,
                "http://169.254.169.254/latest",
            )],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_url = format!("http://{}/hop", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await });
    let wasmhook = InProcess::start(&format!(
        "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nfollow_redirects = 2\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{redirector_url}\"\n"
    ))
    .await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": 2}), None).to_string())
        .await;
    let mut reason = String::new();
    for _ in 0..200 {
        let dlq = wasmhook.get_json("/admin/dlq").await;
        if let Some(r) = dlq[0]["reason"].as_str() {
            reason = r.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reason.contains("169.254.169.254 is a link-local address"),
        "{reason}"
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_webhook_signs_with_its_own_secret_or_not_at_all() {
    const OWN: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[webhooks.signing]\nsecret = \"global-secret\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nsigning = {{ scheme = \"standard-webhooks\", secret = \"{OWN}\" }}\n\
         [[observer.webhook]]\nurl = \"{}\"\nsigning = false\n",
        receiver.url("/global"),
        receiver.url("/own"),
        receiver.url("/unsigned")
    ))
    .await;
    wasmhook
        .post_events(fraiseql_order("created", json!({"id": 1}), None).to_string())
        .await;
    receiver
        .wait_until("three webhooks", Duration::from_secs(10), |r| r.len() == 3)
        .await;
    let global = &receiver.on("/global")[0];
    let item = (
        global.header("x-wasmhook-signature").to_string(),
        global.header("x-wasmhook-timestamp").to_string(),
        global.body.clone(),
    );
    assert_eq!(python_verify("global-secret", &[item]), vec![true]);
    let own = &receiver.on("/own")[0];
    assert_eq!(own.header("x-wasmhook-signature"), "");
    let item = (
        own.header("webhook-id").to_string(),
        own.header("webhook-timestamp").to_string(),
        own.header("webhook-signature").to_string(),
        own.body.clone(),
    );
    assert_eq!(python_standard_verify(OWN, &[item]), vec![true]);
    let unsigned = &receiver.on("/unsigned")[0];
    assert_eq!(unsigned.header("x-wasmhook-signature"), "");
    assert_eq!(unsigned.header("webhook-signature"), "");
    wasmhook.stop().await;
}

/// FraiseQL's documented `[webhooks]` and `[webhooks.retry]` blocks, as its
/// docs spell them (`signing_secret`, `signature_header`,
/// `initial_delay_ms`, `retry_status_codes`, ...), run unchanged: the
/// receiver verifies with FraiseQL's own code, and a 503 is retried.
#[tokio::test]
async fn fraiseql_doc_config_blocks_run_unchanged() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[503]);
    let config = format!(
        "[webhooks]\nsigning_enabled = true\nsigning_secret = \"fraiseql-doc-secret\"\n\
         signing_algorithm = \"sha256\" # or \"sha512\"\n\
         # Headers for signature\nsignature_header = \"X-FraiseQL-Signature\"\n\
         timestamp_header = \"X-FraiseQL-Timestamp\"\n\
         [webhooks.retry]\nenabled = true\nmax_attempts = 5\ninitial_delay_ms = 10\n\
         max_delay_ms = 60\nbackoff_multiplier = 2.0\n\
         # Retry on these status codes\nretry_status_codes = [408, 429, 500, 502, 503, 504]\n\
         [[observer]]\nname = \"orders\"\nentity = \"Order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/doc")
    );
    let wasmhook = InProcess::start(&config).await;
    let (status, _) = wasmhook
        .post_events(fraiseql_order("created", json!({"id": "o1", "total": 5}), None).to_string())
        .await;
    assert_eq!(status, 202);
    let got = receiver
        .wait_until("a retry that succeeds", Duration::from_secs(10), |r| {
            r.iter().any(|x| x.status == 200)
        })
        .await;
    assert_eq!(got[0].status, 503, "the first answer was the scripted 503");
    let delivered = got.iter().find(|r| r.status == 200).unwrap();
    let item = (
        delivered.header("x-fraiseql-signature").to_string(),
        delivered.header("x-fraiseql-timestamp").to_string(),
        delivered.body.clone(),
    );
    assert_eq!(python_verify("fraiseql-doc-secret", &[item]), vec![true]);
    wasmhook.stop().await;
}

/// A URL with placeholders in its path and query, and `query` parameters:
/// each value is percent-encoded, so a value holding `/`, `?`, `&` or a
/// space stays one segment or one parameter.
#[tokio::test]
async fn url_templates_and_query_parameters_encode_each_value() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "[[observer]]\nname = \"orders\"\nentity = \"Order\"\n\
         [[observer.webhook]]\nurl = \"{}/{{{{ id }}}}?status={{{{ status }}}}\"\n\
         query = {{ source = \"{{{{ _entity }}}}\", \"page size\" = \"10\" }}\n",
        receiver.url("/orders")
    );
    let wasmhook = InProcess::start(&config).await;
    let event = fraiseql_order(
        "updated",
        json!({"id": "a/b c?d", "status": "paid&shipped"}),
        None,
    );
    let (status, _) = wasmhook.post_events(event.to_string()).await;
    assert_eq!(status, 202);
    let got = receiver
        .wait_until("one delivery", Duration::from_secs(10), |r| !r.is_empty())
        .await;
    assert_eq!(got[0].path, "/orders/a%2Fb%20c%3Fd");
    assert_eq!(
        got[0].query,
        "status=paid%26shipped&page%20size=10&source=Order"
    );
    wasmhook.stop().await;
}

/// `body_format = "hasura"`: a handler written the way Hasura's docs show
/// (it checks `x-hasura-admin-secret`, reads `payload['event']['data']['new']`
/// and answers 500 "to trigger retry") takes wasmhook's deliveries
/// unchanged, from a Hasura source and from a FraiseQL one; each attempt
/// says which retry it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hasura_handler_takes_body_format_hasura_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handled.jsonl");
    let port = crate::utils::free_port();
    let script = r#"
import http.server, json, sys
port, log = sys.argv[1:]
seen = set()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        # Verify webhook authenticity
        admin_secret = self.headers.get('x-hasura-admin-secret')
        if admin_secret != 's3cret':
            return self.answer(401, {'status': 'unauthorized'})
        payload = json.loads(self.rfile.read(int(self.headers['content-length'])))
        event = payload['event']
        new_order = event['data']['new']
        with open(log, 'a') as f:
            f.write(json.dumps({
                'id': payload['id'], 'op': event['op'], 'new': new_order,
                'old': event['data']['old'], 'session': event['session_variables'],
                'trigger': payload['trigger']['name'], 'table': payload['table'],
                'created_at': payload['created_at'], 'delivery_info': payload['delivery_info'],
            }) + '\n')
        if payload['id'] not in seen:
            seen.add(payload['id'])
            # Return error to trigger retry
            return self.answer(500, {'status': 'error', 'message': 'try again'})
        self.answer(200, {'status': 'success', 'message': 'Order processed successfully'})
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(port)), Handler).serve_forever()
"#;
    let _handler = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(&log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::utils::wait_for_port(port, Duration::from_secs(10))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/webhooks/order-completed");
    let wasmhook = InProcess::start(&format!(
        "[webhooks.retry]\n{FAST_RETRY}\n\n\
         [[observer]]\nname = \"order_completed\"\nentity = \"orders\"\n\
         [[observer.webhook]]\nurl = \"{url}\"\nbody_format = \"hasura\"\n\
         headers = {{ x-hasura-admin-secret = \"s3cret\" }}\n\
         [[observer]]\nname = \"fraiseql_orders\"\nentity = \"Order\"\n\
         [[observer.webhook]]\nurl = \"{url}\"\nbody_format = \"hasura\"\n\
         headers = {{ x-hasura-admin-secret = \"s3cret\" }}\n"
    ))
    .await;
    let from_hasura = json!({
        "id": "85558393-c75d-4d2f-9c15-e80591b83894",
        "created_at": "2026-12-07T10:00:00.000Z",
        "trigger": {"name": "order_completed_trigger"},
        "table": {"schema": "billing", "name": "orders"},
        "delivery_info": {"max_retries": 0, "current_retry": 0},
        "event": {
            "op": "UPDATE",
            "data": {"old": {"id": 7, "status": "paid"}, "new": {"id": 7, "status": "completed"}},
            "session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "42"},
            "trace_context": null
        }
    });
    let from_fraiseql = fraiseql_order("created", json!({"id": 8, "total": 10}), None);
    wasmhook
        .post_events(format!("{from_hasura}\n{from_fraiseql}"))
        .await;
    let mut handled: Vec<serde_json::Value> = Vec::new();
    for _ in 0..400 {
        handled = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if handled.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(handled.len(), 4, "{handled:#?}");
    let of = |trigger: &str| -> Vec<&serde_json::Value> {
        handled.iter().filter(|h| h["trigger"] == trigger).collect()
    };
    let hasura = of("order_completed_trigger");
    assert_eq!(hasura.len(), 2, "{handled:#?}");
    assert_eq!(hasura[0]["id"], "85558393-c75d-4d2f-9c15-e80591b83894");
    assert_eq!(hasura[0]["op"], "UPDATE");
    assert_eq!(hasura[0]["new"], json!({"id": 7, "status": "completed"}));
    assert_eq!(hasura[0]["old"], json!({"id": 7, "status": "paid"}));
    assert_eq!(hasura[0]["session"]["x-hasura-user-id"], "42");
    assert_eq!(
        hasura[0]["table"],
        json!({"schema": "billing", "name": "orders"})
    );
    assert_eq!(hasura[0]["created_at"], "2026-12-07T10:00:00.000Z");
    let retries: Vec<&serde_json::Value> = hasura.iter().map(|h| &h["delivery_info"]).collect();
    assert_eq!(
        retries,
        [
            &json!({"max_retries": 2, "current_retry": 0}),
            &json!({"max_retries": 2, "current_retry": 1})
        ]
    );
    // From FraiseQL: the observer names the trigger, the schema is public.
    let fraiseql = of("fraiseql_orders");
    assert_eq!(fraiseql.len(), 2, "{handled:#?}");
    assert_eq!(fraiseql[0]["op"], "INSERT");
    assert_eq!(fraiseql[0]["new"]["total"], 10);
    assert_eq!(fraiseql[0]["old"], serde_json::Value::Null);
    assert_eq!(
        fraiseql[0]["table"],
        json!({"schema": "public", "name": "Order"})
    );
    assert_eq!(fraiseql[1]["delivery_info"]["current_retry"], 1);
    wasmhook.stop().await;
}
