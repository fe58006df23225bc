//! Core NATS in: a private nats-server, real publishes.

use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, free_port, readyz, InProcess, NatsServer, TestReceiver};

/// A config with one observer of orders from `nats`, delivering to
/// `receiver`'s `/orders`.
fn orders_from(nats: &NatsServer, receiver: &TestReceiver) -> String {
    format!(
        "[observers]\nbackend = \"nats\"\nnats_url = \"{}\"\n\n[[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        nats.url(),
        receiver.url("/orders")
    )
}

/// Publishes an order event with each id on the subject wasmhook reads.
async fn publish_orders(client: &async_nats::Client, ids: std::ops::Range<i64>) {
    for i in ids {
        let event = fraiseql_order("created", json!({"id": i}), None);
        client
            .publish("fraiseql.order.created", event.to_string().into())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn nats_events_are_delivered_and_bad_messages_go_to_the_dlq() {
    let nats = NatsServer::start().await.unwrap();
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&orders_from(&nats, &receiver)).await;
    let client = async_nats::connect(nats.url()).await.unwrap();

    // Core NATS drops what is published before the subscription exists:
    // ready means the server has wasmhook's subscriptions, so every event
    // published from here on must arrive.
    readyz(&wasmhook.url("/readyz"), 200).await;

    publish_orders(&client, 0..200).await;
    // Not our subject: ignored.
    client
        .publish(
            "other.order.created",
            fraiseql_order("created", json!({"id": "x"}), None)
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    // Not an event: to the DLQ, with the reason.
    client
        .publish("fraiseql.order.created", "{\"hello\": 1}".into())
        .await
        .unwrap();
    client
        .publish("fraiseql.order.created", "not json".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let got = receiver
        .wait_until("200 deliveries", Duration::from_secs(20), |r| {
            r.len() >= 200
        })
        .await;
    let mut ids: Vec<i64> = got.iter().filter_map(|r| r.json()["id"].as_i64()).collect();
    ids.sort();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());

    let mut dlq = serde_json::Value::Null;
    for _ in 0..100 {
        dlq = wasmhook.get_json("/admin/dlq").await;
        if dlq.as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reasons: Vec<&str> = dlq
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{dlq}");
    assert!(
        reasons[0].contains("not a known envelope (keys: hello)"),
        "{reasons:?}"
    );
    assert!(reasons[1].starts_with("not JSON"), "{reasons:?}");
    let shown = wasmhook
        .get_json(&format!("/admin/dlq/{}", dlq[1]["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["failure"]["raw"], "not json");
    assert_eq!(shown["failure"]["source"], "nats:fraiseql.order.created");
    wasmhook.stop().await;
}

/// A restart of the server is seen in `/readyz` (503, then 200 again),
/// and what is published once it is ready arrives. Ready waits until the
/// server has the subscriptions back; the race that guards against (the
/// client announces a reconnection before it sends them) lasts
/// microseconds, so `source::nats::tests::a_source_reports_its_connections_itself`
/// checks it, not this test.
#[tokio::test]
async fn a_nats_restart_is_reported_and_delivery_resumes() {
    let port = free_port();
    let nats = NatsServer::start_on(port).await.unwrap();
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&orders_from(&nats, &receiver)).await;
    readyz(&wasmhook.url("/readyz"), 200).await;

    drop(nats);
    readyz(&wasmhook.url("/readyz"), 503).await;
    let nats = NatsServer::start_on(port).await.unwrap();
    readyz(&wasmhook.url("/readyz"), 200).await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    publish_orders(&client, 0..50).await;
    client.flush().await.unwrap();
    let got = receiver
        .wait_until("50 deliveries", Duration::from_secs(20), |r| r.len() >= 50)
        .await;
    let mut ids: Vec<i64> = got.iter().filter_map(|r| r.json()["id"].as_i64()).collect();
    ids.sort();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
}
