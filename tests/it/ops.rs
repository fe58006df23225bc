//! The operations surface: metrics after a known workload, readiness,
//! the admin token, DLQ filters, and Standard Webhooks signed by the
//! official Python package.

use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, free_port, InProcess, NatsServer, TestReceiver};

fn metric(text: &str, name: &str) -> f64 {
    crate::utils::metric_sum(text, name).unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[tokio::test]
async fn metrics_add_up_after_a_known_workload() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[500]);
    let config = format!(
        "[observability.prometheus]\nnamespace = \"hooks\"\n[webhooks.retry]\ninitial_delay = \"20ms\"\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nname = \"ship\"\nurl = \"{}\"\n\
         [[observer]]\nname = \"users\"\nentity = \"user\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/orders"),
        receiver.url("/users")
    );
    let wasmhook = InProcess::start(&config).await;
    let events: Vec<String> = (0..3)
        .map(|i| fraiseql_order("created", json!({"id": i}), None).to_string())
        .collect();
    wasmhook.post_events(events.join("\n")).await;
    receiver
        .wait_until("3 orders delivered", Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.status == 200).count() == 3
        })
        .await;
    receiver.set_status(400);
    wasmhook
        .post_events(json!({"entity": "user", "op": "INSERT", "data": {"id": 1}}).to_string())
        .await;
    let mut text = String::new();
    for _ in 0..100 {
        text = wasmhook.metrics().await;
        if text.contains("hooks_dlq_size 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let orders = r#"{observer="orders",webhook="ship"}"#;
    let users = r#"{observer="users",webhook="0"}"#;
    assert_eq!(
        metric(&text, &format!("hooks_webhook_requests_total{orders}")),
        4.0
    );
    assert_eq!(
        metric(&text, &format!("hooks_webhook_success_total{orders}")),
        3.0
    );
    assert_eq!(
        metric(&text, &format!("hooks_webhook_retry_total{orders}")),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"hooks_webhook_failure_total{observer="orders",webhook="ship",reason="http_500"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("hooks_webhook_requests_total{users}")),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"hooks_webhook_failure_total{observer="users",webhook="0",reason="http_400"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("hooks_webhook_latency_ms_count{orders}")),
        4.0
    );
    assert_eq!(metric(&text, "hooks_dlq_size"), 1.0);
    assert_eq!(metric(&text, "hooks_outbox_size"), 0.0);
    assert!(!text.contains("127.0.0.1"), "no URLs in labels");
    wasmhook.stop().await;
}

#[tokio::test]
async fn readyz_follows_the_bus_connection() {
    let port = free_port();
    let config = format!(
        "[observers]\nbackend = \"nats\"\nnats_url = \"nats://127.0.0.1:{port}\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://127.0.0.1:1/\"\n"
    );
    let wasmhook = InProcess::start(&config).await;
    let ready = || async {
        reqwest::get(wasmhook.url("/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        reqwest::get(wasmhook.url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(ready().await, 503, "no NATS server yet");
    let _nats = NatsServer::start_on(port).await.unwrap();
    let mut status = 0;
    for _ in 0..200 {
        status = ready().await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "connected by itself once the server is up");
    wasmhook.stop().await;
}

#[tokio::test]
async fn the_admin_api_wants_its_token_and_filters_the_dlq() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(422);
    let config = format!(
        "[server]\nadmin_token = \"s3cret-admin\"\n[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/x")
    );
    let wasmhook = InProcess::start(&config).await;
    let client = reqwest::Client::new();
    let get = |token: Option<&'static str>, path: String| {
        let mut request = client.get(wasmhook.url(&path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    assert_eq!(get(None, "/admin/dlq".into()).await.status(), 401);
    assert_eq!(get(Some("wrong"), "/admin/dlq".into()).await.status(), 401);
    assert_eq!(
        get(Some("s3cret-admin"), "/admin/plugins".into())
            .await
            .status(),
        200
    );
    let (status, _) = crate::utils::post(&wasmhook.url("/admin/dlq/purge"), "").await;
    assert_eq!(status, 401, "writes too");

    for i in 0..3 {
        wasmhook
            .post_events(fraiseql_order("created", json!({"id": i}), None).to_string())
            .await;
    }
    let mut entries = json!([]);
    for _ in 0..100 {
        entries = get(Some("s3cret-admin"), "/admin/dlq".into())
            .await
            .json()
            .await
            .unwrap();
        if entries.as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(entries.as_array().unwrap().len(), 3);
    let future = wasmhook::clock::now_ms() + 60_000;
    let later: serde_json::Value = get(
        Some("s3cret-admin"),
        format!("/admin/dlq?since_ms={future}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(later, json!([]));
    let earlier: serde_json::Value = get(
        Some("s3cret-admin"),
        format!("/admin/dlq?until_ms={future}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(earlier.as_array().unwrap().len(), 3);
    // A page at a time: `limit`, then `after` the last id of a page.
    let ids: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let page = |query: String| get(Some("s3cret-admin"), format!("/admin/dlq?{query}"));
    let first: serde_json::Value = page("limit=2".into()).await.json().await.unwrap();
    let first: Vec<&str> = first
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, ids[..2]);
    let rest: serde_json::Value = page(format!("limit=2&after={}", ids[1]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["id"], ids[2]);
    let bad = page("limit=0".into()).await;
    assert_eq!(bad.status(), 400);
    let message = bad.text().await.unwrap();
    assert!(message.contains("limit"), "{message}");

    // retry-all with a delay spreads the replays.
    receiver.set_status(200);
    let response = client
        .post(wasmhook.url("/admin/dlq/retry-all?delay_ms=150"))
        .bearer_auth("s3cret-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let got = receiver
        .wait_until("3 replays", Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.status == 200).count() == 3
        })
        .await;
    let ok: Vec<_> = got.iter().filter(|r| r.status == 200).collect();
    assert!(
        ok[2].at - ok[0].at >= Duration::from_millis(280),
        "{:?}",
        ok[2].at - ok[0].at
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn standard_webhooks_signed_by_the_official_python_package_are_accepted() {
    let receiver = TestReceiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = format!(
        "[webhooks.incoming.billing]\npath = \"/in/billing\"\nscheme = \"standard-webhooks\"\nsecret = \"{secret}\"\n\
         [[observer]]\nname = \"billing\"\nentity = \"billing\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/billing")
    );
    let wasmhook = InProcess::start(&config).await;
    let body = r#"{"type":"invoice.paid","id":"inv_1","amount":1200}"#;
    let script = r#"
import sys, datetime, json
from standardwebhooks.webhooks import Webhook
wh = Webhook(sys.argv[1])
now = datetime.datetime.now(tz=datetime.timezone.utc)
print(json.dumps({"id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "ts": str(int(now.timestamp())),
                  "sig": wh.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, sys.argv[2])}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install standardwebhooks (see .ci/run): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let send = |sig: String| {
        let request = reqwest::Client::new()
            .post(wasmhook.url("/in/billing"))
            .header("webhook-id", signed["id"].as_str().unwrap())
            .header("webhook-timestamp", signed["ts"].as_str().unwrap())
            .header("webhook-signature", sig)
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let sig = signed["sig"].as_str().unwrap().to_string();
    assert_eq!(send(sig.clone()).await, 202);
    assert_eq!(send(sig.clone()).await, 200, "replayed webhook-id");
    assert_eq!(send(sig.replace("v1,", "v1,AAAA")).await, 401);
    let got = receiver
        .wait_until("the event", Duration::from_secs(10), |r| r.len() == 1)
        .await;
    assert_eq!(got[0].json()["amount"], 1200);
    let text = wasmhook.metrics().await;
    assert_eq!(
        metric(
            &text,
            r#"wasmhook_incoming_total{receiver="billing",result="accepted"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"wasmhook_incoming_total{receiver="billing",result="duplicate"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"wasmhook_incoming_total{receiver="billing",result="refused"}"#
        ),
        1.0
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_disabled_webhook_keeps_its_deliveries_until_enabled() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "[[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/a"),
        receiver.url("/b")
    );
    let wasmhook = InProcess::start(&config).await;
    let (status, _) =
        crate::utils::post(&wasmhook.url("/admin/webhooks/orders/1/disable"), "").await;
    assert_eq!(status, 200);
    let (status, answer) =
        crate::utils::post(&wasmhook.url("/admin/webhooks/orders/7/disable"), "").await;
    assert_eq!(status, 404, "{answer}");
    for i in 0..4 {
        wasmhook
            .post_events(fraiseql_order("created", json!({"id": i}), None).to_string())
            .await;
    }
    receiver
        .wait_until("the enabled webhook", Duration::from_secs(10), |r| {
            r.len() == 4
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.on("/b").is_empty(),
        "nothing to the disabled webhook"
    );
    let listed = wasmhook.get_json("/admin/webhooks").await;
    assert_eq!(
        listed["disabled"],
        json!([{"observer": "orders", "webhook": 1, "parked": 4}])
    );
    let text = wasmhook.metrics().await;
    assert_eq!(
        metric(&text, "wasmhook_outbox_size"),
        4.0,
        "they wait in the outbox"
    );

    let (status, answer) =
        crate::utils::post(&wasmhook.url("/admin/webhooks/orders/1/enable"), "").await;
    assert_eq!((status, answer["resumed"].as_u64()), (200, Some(4)));
    receiver
        .wait_until("the parked deliveries", Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.path == "/b").count() == 4
        })
        .await;
    wasmhook.stop().await;
}

#[tokio::test]
async fn verified_incoming_events_are_also_published_to_nats() {
    use futures::StreamExt;
    use hmac::Mac;
    let nats = NatsServer::start().await.unwrap();
    let config = format!(
        "[observers]\nnats_url = \"{}\"\n[webhooks.incoming.github]\npath = \"/gh\"\nscheme = \"github\"\nsecret = \"k\"\npublish_subject = \"incoming.github\"\n",
        nats.url()
    );
    let wasmhook = InProcess::start(&config).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut subscription = client.subscribe("incoming.github").await.unwrap();
    // `flush` only empties this client's socket; the server may still be
    // reading the SUB when wasmhook's PUB arrives on its own connection, and
    // core NATS drops a message nobody is subscribed to yet. A probe through
    // the server on this connection comes back only after the SUB took hold.
    client
        .publish("incoming.github", "probe".into())
        .await
        .unwrap();
    let probe = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&probe.payload[..], b"probe");
    let body = r#"{"zen":"Keep it logically awesome."}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let status = reqwest::Client::new()
        .post(wasmhook.url("/gh"))
        .header("X-Hub-Signature-256", signature)
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "72d3162e")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .unwrap()
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["entity"], "github");
    assert_eq!(event["operation"], "PING");
    assert_eq!(event["id"], "72d3162e");
    assert_eq!(event["data"]["zen"], "Keep it logically awesome.");
    wasmhook.stop().await;
}
