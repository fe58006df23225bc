//! Incoming webhooks over real HTTP: each scheme signed independently (Python's
//! hmac), replays, filters, limits, and a verifier plugin.

use std::time::Duration;

use serde_json::json;

use crate::utils::{InProcess, TestReceiver};

/// HMAC with Python's standard library: (algorithm, key as text, message) -> hex, base64.
fn python_hmac(algorithm: &str, key: &[u8], message: &[u8]) -> (String, String) {
    use base64::Engine;
    let script = "import base64,hashlib,hmac,sys\nk=base64.b64decode(sys.argv[2]);m=base64.b64decode(sys.argv[3])\nd=hmac.new(k,m,getattr(hashlib,sys.argv[1])).digest()\nprint(d.hex());print(base64.b64encode(d).decode())";
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let out = std::process::Command::new("python3")
        .args(["-c", script, algorithm, &b64(key), &b64(message)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_string(),
        lines.next().unwrap().to_string(),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn send(url: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new().post(url).body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn verified_webhooks_become_events_and_everything_else_is_refused() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    std::fs::copy(
        dist.join("shopify-hmac.wasm"),
        plugins.join("shopify-hmac.wasm"),
    )
    .expect("run plugins/build.sh first");
    let standard_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let config = format!(
        r#"
[plugins]
dir = {plugins:?}

[webhooks.incoming.github]
path = "/webhooks/github"
scheme = "github"
secret = "It's a Secret to Everybody"
events = ["push", "pull_request"]
max_payload_bytes = 4096

[webhooks.incoming.stripe]
path = "/webhooks/stripe"
scheme = "stripe"
secrets = ["whsec_new", "whsec_old"]

[webhooks.incoming.standard]
path = "/webhooks/standard"
scheme = "standard-webhooks"
secret = "{standard_secret}"

[webhooks.incoming.custom]
path = "/webhooks/custom"
scheme = "hmac"
secret = "custom-secret"
signature_header = "X-Signature"
signature_format = "sha256={{signature}}"
timestamp_header = "X-Timestamp"

[webhooks.incoming.shopify]
path = "/webhooks/shopify"
scheme = "plugin:shopify-hmac"
secret = "shpss_secret"

[[observer]]
name = "github_pushes"
entity = "github"
event = "push"
  [[observer.webhook]]
  url = "{github}"
  body = {{ repo = "{{{{ repository.full_name }}}}", kind = "{{{{ _event }}}}" }}

[[observer]]
name = "everything_else"
entity = "stripe"
  [[observer.webhook]]
  url = "{stripe}"
[[observer]]
name = "standard"
entity = "standard"
  [[observer.webhook]]
  url = "{standard}"
[[observer]]
name = "custom"
entity = "custom"
  [[observer.webhook]]
  url = "{custom}"
[[observer]]
name = "shopify"
entity = "shopify"
  [[observer.webhook]]
  url = "{shopify}"
"#,
        plugins = plugins.display().to_string(),
        github = receiver.url("/out/github"),
        stripe = receiver.url("/out/stripe"),
        standard = receiver.url("/out/standard"),
        custom = receiver.url("/out/custom"),
        shopify = receiver.url("/out/shopify"),
    );
    let wasmhook = InProcess::start(&config).await;

    // GitHub.
    let push =
        json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}).to_string();
    let (hex, _) = python_hmac("sha256", b"It's a Secret to Everybody", push.as_bytes());
    let github = |sig: String, event: &str, id: &str| {
        vec![
            ("X-Hub-Signature-256", sig),
            ("X-GitHub-Event", event.to_string()),
            ("X-GitHub-Delivery", id.to_string()),
        ]
    };
    let url = wasmhook.url("/webhooks/github");
    assert_eq!(
        send(&url, &github(format!("sha256={hex}"), "push", "d-1"), &push)
            .await
            .0,
        202
    );
    let replay = send(&url, &github(format!("sha256={hex}"), "push", "d-1"), &push).await;
    assert_eq!(
        replay.0, 200,
        "a replayed delivery id is answered 200: {}",
        replay.1
    );
    assert!(replay.1.contains("duplicate"));
    let (hex_issue, _) = python_hmac("sha256", b"It's a Secret to Everybody", b"{}");
    assert_eq!(
        send(
            &url,
            &github(format!("sha256={hex_issue}"), "issues", "d-2"),
            "{}"
        )
        .await
        .0,
        200,
        "filtered event type"
    );
    let refused = send(
        &url,
        &github(format!("sha256={hex}"), "push", "d-3"),
        &format!("{push} "),
    )
    .await;
    assert_eq!(refused.0, 401, "tampered body");
    assert_eq!(
        refused.1, r#"{"error":"invalid or missing signature"}"#,
        "no hint which part failed"
    );
    assert_eq!(
        send(&url, &[("X-GitHub-Event", "push".to_string())], &push)
            .await
            .0,
        401,
        "no signature"
    );
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(5000));
    assert_eq!(
        send(&url, &github("sha256=00".into(), "push", "d-4"), &big)
            .await
            .0,
        413
    );
    assert_eq!(
        send(&wasmhook.url("/webhooks/nope"), &[], "{}").await.0,
        404
    );

    // Stripe, signed with the old secret during rotation.
    let charge =
        json!({"id": "evt_1", "type": "charge.succeeded", "data": {"object": {"amount": 100}}})
            .to_string();
    let t = now();
    let (v1, _) = python_hmac("sha256", b"whsec_old", format!("{t}.{charge}").as_bytes());
    let url = wasmhook.url("/webhooks/stripe");
    let header = format!("t={t},v1={},v1={v1},v0=ignored", "0".repeat(64));
    assert_eq!(
        send(&url, &[("Stripe-Signature", header.clone())], &charge)
            .await
            .0,
        202
    );
    assert_eq!(
        send(&url, &[("Stripe-Signature", header)], &charge).await.0,
        200,
        "same event id: replay"
    );
    let stale = t - 301;
    let (v1, _) = python_hmac(
        "sha256",
        b"whsec_new",
        format!("{stale}.{charge}").as_bytes(),
    );
    assert_eq!(
        send(
            &url,
            &[("Stripe-Signature", format!("t={stale},v1={v1}"))],
            &charge
        )
        .await
        .0,
        401,
        "stale timestamp"
    );

    // Standard Webhooks.
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
        .unwrap();
    let body = r#"{"type":"user.created","email":"test@example.com"}"#;
    let (_, b64) = python_hmac("sha256", &key, format!("msg_1.{t}.{body}").as_bytes());
    let headers = vec![
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", format!("v1a,xxx v1,{b64}")),
    ];
    assert_eq!(
        send(&wasmhook.url("/webhooks/standard"), &headers, body)
            .await
            .0,
        202
    );

    // Generic HMAC in the FraiseQL docs' format.
    let order = json!({"id": 7, "total": 10}).to_string();
    let (hex, _) = python_hmac(
        "sha256",
        b"custom-secret",
        format!("{t}.{order}").as_bytes(),
    );
    let headers = vec![
        ("X-Signature", format!("sha256={hex}")),
        ("X-Timestamp", t.to_string()),
    ];
    assert_eq!(
        send(&wasmhook.url("/webhooks/custom"), &headers, &order)
            .await
            .0,
        202
    );
    let headers = vec![("X-Signature", hex.clone()), ("X-Timestamp", t.to_string())];
    assert_eq!(
        send(&wasmhook.url("/webhooks/custom"), &headers, &order)
            .await
            .0,
        401,
        "format without the prefix"
    );

    // A verifier plugin (Shopify's scheme).
    let product = json!({"id": 820982911946154508i64}).to_string();
    let (_, b64) = python_hmac("sha256", b"shpss_secret", product.as_bytes());
    assert_eq!(
        send(
            &wasmhook.url("/webhooks/shopify"),
            &[("X-Shopify-Hmac-Sha256", b64)],
            &product
        )
        .await
        .0,
        202
    );
    assert_eq!(
        send(
            &wasmhook.url("/webhooks/shopify"),
            &[("X-Shopify-Hmac-Sha256", "AAAA".into())],
            &product
        )
        .await
        .0,
        401
    );

    let got = receiver
        .wait_until("5 deliveries", Duration::from_secs(20), |r| r.len() == 5)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.requests().len(),
        5,
        "replays, refusals and filtered events produce nothing"
    );
    let github = got.iter().find(|r| r.path == "/out/github").unwrap().json();
    assert_eq!(github, json!({"repo": "acme/api", "kind": "PUSH"}));
    let stripe = got.iter().find(|r| r.path == "/out/stripe").unwrap().json();
    assert_eq!(stripe["data"]["object"]["amount"], 100);
    wasmhook.stop().await;
}

/// FraiseQL 2.19's observer webhooks, signed as its `actions.rs` signs
/// them (here by Python's hmac): `t=<unix>,v1=<hex>` over `"<t>.<body>"`
/// in `X-FraiseQL-Signature-256`, with `X-FraiseQL-Event-Id`; a tampered
/// body and a missing header are refused, and nothing of them is stored.
#[tokio::test]
async fn fraiseql_v2_webhooks_are_verified_as_fraiseql_signs_them() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[webhooks.incoming.fraiseql]\npath = \"/webhooks/fraiseql\"\nscheme = \"fraiseql-v2\"\nsecret = \"fq-secret\"\n\
         [[observer]]\nname = \"from_fraiseql\"\nentity = \"fraiseql\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/out")
    ))
    .await;
    let url = wasmhook.url("/webhooks/fraiseql");
    let body = json!({"id": "ord-1", "status": "shipped"}).to_string();
    let t = now();
    let (hex, _) = python_hmac("sha256", b"fq-secret", format!("{t}.{body}").as_bytes());
    let headers = vec![
        ("X-FraiseQL-Signature-256", format!("t={t},v1={hex}")),
        (
            "X-FraiseQL-Event-Id",
            "0195f3a2-0000-7000-8000-00000000000c".to_string(),
        ),
    ];
    let (status, answer) = send(&url, &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = send(&url, &headers, "{\"id\": \"ord-2\"}").await;
    assert_eq!(status, 401, "a tampered body");
    let (status, _) = send(&url, &headers[1..], &body).await;
    assert_eq!(status, 401, "no signature");
    let got = receiver
        .wait_until("the verified webhook", Duration::from_secs(20), |r| {
            !r.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(got[0].json()["id"], "ord-1");
    wasmhook.stop().await;
}
