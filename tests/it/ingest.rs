//! Events in over HTTP: envelopes, routing by observer, bad input.

use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, InProcess, TestReceiver};

fn routing_config(receiver: &TestReceiver) -> String {
    format!(
        r#"
[[observer]]
name = "on_order_shipped"
entity = "Order"
event = "UPDATE"
condition = "status.changed() && status == 'shipped'"

  [[observer.webhook]]
  url = "{ship}"
  body = {{ order_id = "{{{{ id }}}}", total = "{{{{ total }}}}", at = "{{{{ _timestamp }}}}" }}

  [[observer.webhook]]
  url = "{eu}"
  condition = "country IN ('DE', 'FR', 'UK')"
  body_template = '''{{"data": {{{{_json}}}}, "changes": {{{{_changed}}}}, "event": "{{{{_entity}}}}.{{{{_event}}}}"}}'''

[[observer]]
name = "big_orders"
entity = "order"
event = ["INSERT", "UPDATE"]
condition = "total > 1000"

  [[observer.webhook]]
  url = "{big}"
  headers = {{ Idempotency-Key = "{{{{_entity}}}}-{{{{_id}}}}-{{{{_timestamp}}}}" }}

[[observer]]
name = "hasura_users"
entity = "users"

  [[observer.webhook]]
  url = "{users}"
  body = {{ op = "{{{{ _event }}}}", email = "{{{{ email }}}}", before = "{{{{ _old }}}}" }}
"#,
        ship = receiver.url("/ship"),
        eu = receiver.url("/eu"),
        big = receiver.url("/big"),
        users = receiver.url("/users"),
    )
}

#[tokio::test]
async fn events_reach_the_webhooks_their_observers_select() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&routing_config(&receiver)).await;

    // A case table: event -> the paths it must reach.
    let cases = [
        (
            fraiseql_order(
                "updated",
                json!({"id": "o1", "status": "shipped", "total": 50, "country": "DE"}),
                Some(json!({"id": "o1", "status": "paid", "total": 50, "country": "DE"})),
            ),
            vec!["/ship", "/eu"],
        ),
        (
            fraiseql_order(
                "updated",
                json!({"id": "o2", "status": "shipped", "total": 5000, "country": "US"}),
                Some(json!({"id": "o2", "status": "paid", "total": 5000, "country": "US"})),
            ),
            vec!["/ship", "/big"],
        ),
        (
            fraiseql_order(
                "updated",
                json!({"id": "o3", "status": "shipped", "total": 5, "country": "FR"}),
                Some(json!({"id": "o3", "status": "shipped", "total": 5, "country": "FR"})),
            ),
            vec![],
        ),
        (
            fraiseql_order(
                "created",
                json!({"id": "o4", "status": "new", "total": 1001}),
                None,
            ),
            vec!["/big"],
        ),
        (
            fraiseql_order("deleted", json!({"id": "o5", "total": 9999}), None),
            vec![],
        ),
    ];
    for (event, paths) in &cases {
        let (status, answer) = wasmhook.post_events(event.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        let deliveries = answer["events"][0]["deliveries"].as_array().unwrap();
        let urls: Vec<String> = deliveries
            .iter()
            .map(|d| d["url"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = paths.iter().map(|p| receiver.url(p)).collect();
        assert_eq!(urls, expected, "routing of {event}");
    }
    receiver
        .wait_until("5 deliveries", Duration::from_secs(10), |r| r.len() == 5)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests().len(), 5, "nothing else is delivered");

    let ship = receiver.on("/ship");
    let o1 = ship.iter().find(|r| r.json()["order_id"] == "o1").unwrap();
    // A body value that is exactly one placeholder keeps its JSON type.
    assert_eq!(
        o1.json(),
        json!({"order_id": "o1", "total": 50, "at": "2026-03-02T14:00:00Z"})
    );
    let eu = receiver.on("/eu")[0].json();
    assert_eq!(eu["event"], "Order.UPDATE");
    assert_eq!(
        eu["changes"],
        json!({"status": {"old": "paid", "new": "shipped"}})
    );
    assert_eq!(eu["data"]["country"], "DE");
    let big: Vec<String> = receiver
        .on("/big")
        .iter()
        .map(|r| r.header("idempotency-key").to_string())
        .collect();
    assert!(
        big.contains(&"Order-o2-2026-03-02T14:00:00Z".to_string()),
        "{big:?}"
    );
    // With no body configured the entity itself is sent.
    assert!(receiver
        .on("/big")
        .iter()
        .any(|r| r.json() == json!({"id": "o4", "status": "new", "total": 1001})));

    // Hasura and native envelopes, as one NDJSON request.
    let hasura = json!({
        "id": "85558393-c75d-4d2f-9c15-e80591b83894", "created_at": "2018-09-05T07:40:51.337101",
        "table": {"schema": "public", "name": "users"}, "trigger": {"name": "user_changed"},
        "event": {"op": "UPDATE", "data": {"old": {"id": 1, "email": "a@x"}, "new": {"id": 1, "email": "b@x"}}}
    });
    let native = json!({"entity": "users", "op": "INSERT", "data": {"id": 2, "email": "c@x"}});
    let (status, answer) = wasmhook.post_events(format!("{hasura}\n{native}\n")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let users = receiver
        .wait_until("2 user deliveries", Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.path == "/users").count() == 2
        })
        .await;
    let mut bodies: Vec<_> = users
        .iter()
        .filter(|r| r.path == "/users")
        .map(|r| r.json())
        .collect();
    bodies.sort_by_key(|b| b["email"].as_str().unwrap().to_string());
    assert_eq!(
        bodies[0],
        json!({"op": "UPDATE", "email": "b@x", "before": {"id": 1, "email": "a@x"}})
    );
    assert_eq!(
        bodies[1],
        json!({"op": "INSERT", "email": "c@x", "before": null})
    );
    wasmhook.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_nothing_is_stored() {
    let receiver = TestReceiver::start().await;
    let config = format!(
        "[server]\nmax_body_bytes = 2048\n{}",
        routing_config(&receiver)
    );
    let wasmhook = InProcess::start(&config).await;
    let good = fraiseql_order("created", json!({"id": "x", "total": 2000}), None);
    for (body, status, message) in [
        ("".to_string(), 400, "the body is empty"),
        (
            "{\"entity_type\": ".to_string(),
            400,
            "invalid JSON at line 1, column 16",
        ),
        (
            format!("{good}\n{{\"a\": 1}}"),
            400,
            "event 1: not a known envelope (keys: a)",
        ),
        (
            "[1]".to_string(),
            400,
            "event 0: an event must be a JSON object",
        ),
        (
            json!({"entity_type": "order", "operation": "created"}).to_string(),
            400,
            "\"entity\" is required for INSERT",
        ),
        (
            format!("[{}]", vec![good.to_string(); 20].join(",")),
            413,
            "",
        ),
    ] {
        let (got, answer) = wasmhook.post_events(body.clone()).await;
        assert_eq!(got, status, "{body:.60}: {answer}");
        if !message.is_empty() {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains(message), "{body:.60}: {error}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.requests().is_empty(),
        "a rejected request stores nothing: the good event in it is not sent either"
    );
    wasmhook.stop().await;
}

/// sled 0.34's `flush_async` deadlocks when called concurrently; the bench
/// harness hung wasmhook with 32 concurrent ingest requests. Every request
/// must be answered, and every event delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingest_requests_are_all_answered() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/in")
    ))
    .await;
    let url = wasmhook.url("/events");
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..32i64 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..20i64 {
                let body: Vec<String> = (0..10)
                    .map(|i| {
                        fraiseql_order(
                            "created",
                            json!({"id": worker * 1000 + round * 10 + i}),
                            None,
                        )
                        .to_string()
                    })
                    .collect();
                let status = client
                    .post(&url)
                    .body(body.join("\n"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 202);
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("every ingest request is answered (no storage deadlock)");
    receiver
        .wait_until("every event", Duration::from_secs(60), |r| r.len() == 6400)
        .await;
    wasmhook.stop().await;
}

/// `POST /events` with `ingest_tokens = [new, old]`: no token and a wrong
/// one are refused with 401 and nothing stored; either token of a rotation
/// is accepted and delivered.
#[tokio::test]
async fn ingest_tokens_guard_post_events_and_rotate() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[server]\ningest_tokens = [\"new-token\", \"old-token\"]\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/orders")
    ))
    .await;
    let send = |token: Option<&'static str>, id: i64| {
        let url = wasmhook.url("/events");
        async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .body(fraiseql_order("created", json!({"id": id}), None).to_string());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = send(None, 1).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ingest_token"), "{body}");
    assert!(!body.contains("new-token"), "the token is not echoed");
    assert_eq!(send(Some("wrong"), 2).await.0, 401);
    assert_eq!(send(Some("new-toke"), 3).await.0, 401);
    assert_eq!(send(Some("new-token"), 4).await.0, 202);
    assert_eq!(send(Some("old-token"), 5).await.0, 202);
    let got = receiver
        .wait_until("the two accepted events", Duration::from_secs(30), |r| {
            r.len() >= 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![4, 5], "refused events were not stored: {got:?}");
    wasmhook.stop().await;
}

/// Hasura payloads in full: the same table name in two schemas, told
/// apart by `entity = "schema.table"`; who made the change (session
/// variables) and the trigger's name reach conditions and templates.
#[tokio::test]
async fn hasura_schema_session_and_trigger_drive_observers_and_templates() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        r#"
[[observer]]
name = "billing_orders"
entity = "billing.orders"
condition = "_session.x-hasura-role == 'user'"

  [[observer.webhook]]
  url = "{}"
  body = {{ user = "{{{{ _session.x-hasura-user-id }}}}", trigger = "{{{{ _trigger }}}}", schema = "{{{{ _schema }}}}", id = "{{{{ id }}}}" }}
"#,
        receiver.url("/billing")
    ))
    .await;
    let hasura = |schema: &str, role: &str, id: i64| {
        json!({
            "id": format!("evt-{schema}-{id}"), "created_at": "2026-03-02T14:00:00Z",
            "table": {"schema": schema, "name": "orders"}, "trigger": {"name": "orders_changed"},
            "delivery_info": {"max_retries": 0, "current_retry": 0},
            "event": {"op": "INSERT", "data": {"old": null, "new": {"id": id}},
                "session_variables": {"x-hasura-role": role, "x-hasura-user-id": "u-42"}}
        })
        .to_string()
    };
    for body in [
        hasura("public", "user", 1),
        hasura("billing", "admin", 2),
        hasura("billing", "user", 3),
    ] {
        assert_eq!(wasmhook.post_events(body).await.0, 202);
    }
    let got = receiver
        .wait_until("the billing order", Duration::from_secs(30), |r| {
            !r.is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "only billing.orders by a user"
    );
    assert_eq!(
        got[0].json(),
        json!({"user": "u-42", "trigger": "orders_changed", "schema": "billing", "id": 3})
    );
    wasmhook.stop().await;
}
