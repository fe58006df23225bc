//! `wasmhook dry-run` against what `wasmhook run` then delivers: the same
//! body bytes, the same headers but for those made per attempt (delivery
//! id, signature), signatures that verify; the dry run itself sends
//! nothing and creates no storage.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::utils::{
    fraiseql_order, free_port, plugin_dist, post, python_standard_verify, python_verify, wasmhook,
    wasmhook_stdin, Running, TestReceiver,
};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Headers the HTTP client adds as it sends, which the dry run does not
/// show.
const TRANSPORT: [&str; 4] = ["host", "content-length", "accept", "accept-encoding"];

fn body_bytes(request: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(request["body_base64"].as_str().unwrap())
        .unwrap()
}

fn header<'a>(request: &'a Value, name: &str) -> &'a str {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
        .unwrap_or_else(|| panic!("no {name} header in {request:#}"))
}

#[tokio::test]
async fn dry_run_shows_what_a_real_run_then_delivers() {
    let plugins = plugin_dist();
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("plugins")).unwrap();
    for file in ["slack-message.wasm", "slack-message.toml"] {
        std::fs::copy(plugins.join(file), dir.join("plugins").join(file)).unwrap();
    }
    let port = free_port();
    let config = dir.join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
[storage]
path = "db"
[plugins]
dir = "plugins"
cache_dir = "cache"
[webhooks]
allowed_networks = ["127.0.0.0/8"]
[webhooks.signing]
secret = "s3cret"

[[observer]]
name = "shipped"
entity = "Order"
event = "UPDATE"
condition = "status.changed() && status == 'shipped'"

  [[observer.webhook]]
  name = "ship"
  url = "{ship}/{{{{ id }}}}"
  query = {{ source = "wasmhook", note = "{{{{ note }}}}" }}
  headers = {{ Authorization = "Bearer t0ken", X-Order = "order-{{{{ id }}}}" }}
  body_template = '''{{"order": {{{{ id }}}}, "total": {{{{ total }}}}, "note": "{{{{ note }}}}", "changes": {{{{ _changed }}}}}}'''

  [[observer.webhook]]
  name = "slack"
  url = "{slack}"
  transform = "plugin:slack-message"
  headers = {{ X-Channel = "orders" }}
  signing = {{ scheme = "standard-webhooks", secret = "{WHSEC}" }}

  [[observer.webhook]]
  name = "eu"
  url = "{eu}"
  condition = "country == 'DE'"

[[observer]]
name = "customers"
entity = "Customer"
  [[observer.webhook]]
  url = "{customers}"

[[observer]]
name = "big"
entity = "Order"
condition = "total > 1000"
  [[observer.webhook]]
  url = "{big}"
"#,
            ship = receiver.url("/ship"),
            slack = receiver.url("/slack"),
            eu = receiver.url("/eu"),
            customers = receiver.url("/customers"),
            big = receiver.url("/big"),
        ),
    )
    .unwrap();
    let mut event = fraiseql_order(
        "updated",
        json!({"id": 42, "total": 99.5, "status": "shipped", "country": "US",
               "note": "say \"hi\" & {{ no }}", "customer_email": "a@x"}),
        Some(
            json!({"id": 42, "total": 99.5, "status": "paid", "country": "US",
                    "note": "say \"hi\" & {{ no }}", "customer_email": "a@x"}),
        ),
    );
    event["id"] = json!("evt-42");
    std::fs::write(dir.join("event.json"), event.to_string()).unwrap();

    let config_arg = config.to_str().unwrap();
    let (code, out, err) = wasmhook(
        &[
            "dry-run",
            "--config",
            config_arg,
            "--event",
            "event.json",
            "--json",
            "--show-secrets",
        ],
        dir,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["event"]["id"], "evt-42", "{report:#}");
    let requests = report["requests"].as_array().unwrap();
    let names: Vec<&str> = requests
        .iter()
        .map(|r| r["webhook"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ship", "slack"], "{report:#}");
    assert_eq!(report["dead"], json!([]));
    let skipped: Vec<(&str, &str)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["observer"].as_str().unwrap(),
                s["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("shipped", "webhook-condition"),
            ("customers", "entity"),
            ("big", "condition"),
        ],
        "{report:#}"
    );
    assert!(!dir.join("db").exists(), "the dry run opened the storage");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.requests().is_empty(), "the dry run sent a request");

    // The signatures verify with the secrets, by independent code.
    let (ship, slack) = (&requests[0], &requests[1]);
    assert_eq!(
        python_verify(
            "s3cret",
            &[(
                header(ship, "x-wasmhook-signature").to_string(),
                header(ship, "x-wasmhook-timestamp").to_string(),
                body_bytes(ship).into(),
            )]
        ),
        [true]
    );
    assert_eq!(
        python_standard_verify(
            WHSEC,
            &[(
                header(slack, "webhook-id").to_string(),
                header(slack, "webhook-timestamp").to_string(),
                header(slack, "webhook-signature").to_string(),
                body_bytes(slack).into(),
            )]
        ),
        [true]
    );

    // For people, from stdin: credentials hidden.
    let (code, text, err) = wasmhook_stdin(
        &["dry-run", "--config", config_arg, "--event", "-"],
        dir,
        event.to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{text}\n{err}");
    for expected in [
        "shipped / webhook ship: would send",
        "authorization: ***",
        "x-order: order-42",
        "shipped / webhook slack: would send",
        "customers: the event is about Order, not customer",
        "big: condition false: total > 1000",
        "shipped / webhook eu: webhook condition false: country == 'DE'",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains("t0ken"), "{text}");

    // The real run delivers the same requests.
    let mut running = Running::start(&config, dir, port).await;
    let (status, answer) = post(&running.url("/events"), event.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver
        .wait_until("2 deliveries", Duration::from_secs(30), |r| r.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests().len(),
        2,
        "only the two matched webhooks"
    );
    running.terminate();
    for request in requests {
        let url = reqwest::Url::parse(request["url"].as_str().unwrap()).unwrap();
        let received = got
            .iter()
            .find(|r| r.path == url.path())
            .unwrap_or_else(|| panic!("nothing delivered to {url}"));
        assert_eq!(received.query, url.query().unwrap_or_default(), "{url}");
        assert_eq!(
            received.body.as_ref(),
            body_bytes(request).as_slice(),
            "{url}: the body differs"
        );
        let per_attempt: BTreeSet<&str> = request["per_attempt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let shown: BTreeSet<(String, String)> = request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap(), pair[1].as_str().unwrap()))
            .filter(|(name, _)| !per_attempt.contains(name))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let sent: BTreeSet<(String, String)> = received
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .filter(|(name, _)| !per_attempt.contains(name) && !TRANSPORT.contains(name))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(shown, sent, "{url}: the headers differ");
        for name in &per_attempt {
            assert!(received.headers.contains_key(*name), "{url}: no {name}");
        }
    }
}

#[tokio::test]
async fn dry_run_names_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("wasmhook.toml"),
        "[storage]\npath = \"db\"\n[webhooks]\nmax_payload_bytes = 20\n\
         [[observer]]\nname = \"orders\"\nentity = \"Order\"\n\
         [[observer.webhook]]\nurl = \"http://127.0.0.1:9/orders\"\n",
    )
    .unwrap();
    let dry_run = |event: &str| {
        wasmhook(
            &["dry-run", "-c", "wasmhook.toml", "--event", event, "--json"],
            dir,
        )
    };

    let (code, _, err) = dry_run("missing.json");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot read the event file missing.json"),
        "{err}"
    );

    let cases = [
        (
            "broken.json",
            "{\"entity\": ",
            "broken.json: invalid JSON at line 1",
        ),
        (
            "two.json",
            "[{}, {}]",
            "two.json: holds 2 events; dry-run takes one",
        ),
        (
            "unknown.json",
            "{\"foo\": 1}",
            "unknown.json: not a known envelope",
        ),
    ];
    for (file, text, expected) in cases {
        std::fs::write(dir.join(file), text).unwrap();
        let (code, _, err) = dry_run(file);
        assert_eq!(code, 1, "{file}: {err}");
        assert!(err.contains(expected), "{file}: {err}");
    }

    // Nothing matches: said so, exit 0.
    let customer = json!({"entity": "Customer", "op": "INSERT", "data": {"id": 1}});
    std::fs::write(dir.join("customer.json"), customer.to_string()).unwrap();
    let (code, out, err) = wasmhook(
        &["dry-run", "-c", "wasmhook.toml", "--event", "customer.json"],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no observer matches this event"), "{out}");
    assert!(
        out.contains("orders: the event is about Customer, not order"),
        "{out}"
    );

    // A delivery that would go to the DLQ: the reason, exit 2.
    let order = json!({"entity": "Order", "op": "INSERT", "data": {"id": 1, "note": "longer than twenty bytes"}});
    std::fs::write(dir.join("order.json"), order.to_string()).unwrap();
    let (code, out, err) = dry_run("order.json");
    assert_eq!(code, 2, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let reason = report["dead"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("over max_payload_bytes (20)"), "{reason}");

    assert!(!dir.join("db").exists(), "a dry run opened the storage");
}
