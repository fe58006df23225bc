//! Core NATS: `EntityEvent`s published by FraiseQL's `NatsTransport` (on
//! the server's `fraiseql.mutation` prefix and the library's default
//! `entity.change`) reach wasmhook's `backend = "nats"` with their
//! operation, old row, changed fields and a FraiseQL v2 signature.

use std::collections::HashMap;
use std::time::Duration;

use fraiseql_observers::event::{EntityEvent, EventKind, FieldChanges};
use fraiseql_observers::transport::{EventTransport, NatsConfig, NatsTransport};
use fraiseql_observers::uuid::Uuid;
use serde_json::{json, Value};
use wasmhook_testkit::{free_port, NatsServer};

use crate::receiver::Receiver;
use crate::wasmhook::Wasmhook;
use crate::{fraiseql_dev_env, observer, webhooks_section, SECRET};

const WAIT: Duration = Duration::from_secs(60);

/// FraiseQL's transport on `prefix`. It always publishes through
/// JetStream (and creates its stream), so the server has JetStream on;
/// wasmhook reads the same subjects with a plain core-NATS subscription.
pub async fn fraiseql_transport(
    nats: &NatsServer,
    prefix: &str,
    stream: &str,
    consumer: &str,
) -> NatsTransport {
    NatsTransport::new(NatsConfig {
        url: nats.url(),
        stream_name: stream.to_string(),
        consumer_name: consumer.to_string(),
        subject_prefix: prefix.to_string(),
        ..NatsConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("FraiseQL's NatsTransport::new: {e}"))
}

/// An `Order` event as FraiseQL's executor builds it.
pub fn order_event(kind: EventKind, id: Uuid, data: Value) -> EntityEvent {
    EntityEvent::new(kind, "Order".to_string(), id, data)
}

/// `{field: {old, new}}` as FraiseQL carries an UPDATE's pre-image.
pub fn changes(fields: &[(&str, Value, Value)]) -> HashMap<String, FieldChanges> {
    fields
        .iter()
        .map(|(name, old, new)| {
            (
                name.to_string(),
                FieldChanges {
                    old: old.clone(),
                    new: new.clone(),
                },
            )
        })
        .collect()
}

fn core_nats_config(nats: &NatsServer, receiver: &Receiver) -> String {
    format!(
        "[observers]\nbackend = \"nats\"\nnats_url = \"{}\"\n\n{}\n{}\n{}\n{}\n",
        nats.url(),
        webhooks_section(),
        observer("all", "", &receiver.url("/all")),
        observer(
            "shipped",
            "event = \"UPDATE\"\ncondition = \"status.changed() && status == 'shipped'\"",
            &receiver.url("/shipped"),
        ),
        observer("custom", "event = \"CUSTOM\"", &receiver.url("/custom")),
    ) + &format!(
        // The body a FraiseQL handler already parses, whatever the source.
        "[[observer]]\nname = \"passthrough\"\nentity = \"Order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nbody_format = \"fraiseql\"\n",
        receiver.url("/passthrough")
    )
}

/// Publishes INSERT, a status UPDATE, a total-only UPDATE, DELETE and
/// CUSTOM with FraiseQL's transport on `prefix`, and checks each delivery.
async fn fraiseql_events_on(prefix: &str, stream: &str) {
    fraiseql_dev_env();
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), store.path())
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let _wasmhook = Wasmhook::start(&core_nats_config(&nats, &receiver)).await;
    let fraiseql = fraiseql_transport(&nats, prefix, stream, "compat_unused").await;

    let id = Uuid::new_v4();
    let paid = json!({"id": id, "total": 1500, "status": "paid"});
    let shipped = json!({"id": id, "total": 1500, "status": "shipped"});
    let repriced = json!({"id": id, "total": 1600, "status": "shipped"});
    let events = [
        order_event(EventKind::Created, id, paid.clone()),
        order_event(EventKind::Updated, id, shipped.clone()).with_changes(changes(&[(
            "status",
            json!("paid"),
            json!("shipped"),
        )])),
        order_event(EventKind::Updated, id, repriced.clone()).with_changes(changes(&[(
            "total",
            json!(1500),
            json!(1600),
        )])),
        order_event(EventKind::Deleted, id, repriced.clone()),
        order_event(
            EventKind::Custom,
            id,
            json!({"id": id, "note": "refund requested"}),
        ),
    ];
    for event in &events {
        fraiseql
            .publish(event.clone())
            .await
            .unwrap_or_else(|e| panic!("FraiseQL's publish: {e}"));
    }

    let all = receiver.wait_for("/all", events.len(), WAIT).await;
    assert_eq!(all.len(), events.len(), "one delivery per event");
    let by_id: HashMap<String, Value> = all
        .iter()
        .map(|r| {
            r.assert_signed(SECRET);
            let body = r.json();
            assert_eq!(
                r.event_id(),
                body["id"],
                "X-FraiseQL-Event-Id is the event id"
            );
            (r.event_id().to_string(), body)
        })
        .collect();
    let got = |event: &EntityEvent| -> Value {
        by_id
            .get(&event.id.to_string())
            .unwrap_or_else(|| panic!("no delivery with event id {}: {by_id:#?}", event.id))
            .clone()
    };

    let insert = got(&events[0]);
    assert_eq!(insert["op"], "INSERT");
    assert_eq!(insert["entity"], "Order");
    assert_eq!(insert["data"], paid);
    assert_eq!(insert["status"], "paid");
    assert_eq!(insert["old"], Value::Null, "an INSERT has no old row");
    assert_eq!(insert["changed"], json!({}));

    let update = got(&events[1]);
    assert_eq!(update["op"], "UPDATE");
    assert_eq!(update["data"], shipped);
    assert_eq!(
        update["old"]["status"], "paid",
        "_old is rebuilt from changes"
    );
    assert_eq!(update["old"]["total"], 1500);
    assert_eq!(
        update["changed"],
        json!({"status": {"old": "paid", "new": "shipped"}})
    );

    let repricing = got(&events[2]);
    assert_eq!(repricing["op"], "UPDATE");
    assert_eq!(
        repricing["old"], shipped,
        "old row: the new one with total's old value"
    );
    assert_eq!(
        repricing["changed"],
        json!({"total": {"old": 1500, "new": 1600}})
    );

    let delete = got(&events[3]);
    assert_eq!(delete["op"], "DELETE");
    assert_eq!(
        delete["data"], repriced,
        "a DELETE's row is FraiseQL's pre-image"
    );

    let custom = got(&events[4]);
    assert_eq!(custom["op"], "CUSTOM");
    assert_eq!(custom["data"]["note"], "refund requested");

    // `body_format = "fraiseql"`: FraiseQL's own type reads every body
    // back as the event it published.
    let passed = receiver.wait_for("/passthrough", events.len(), WAIT).await;
    for request in &passed {
        let decoded: EntityEvent = serde_json::from_slice(&request.body)
            .unwrap_or_else(|e| panic!("EntityEvent cannot read {}: {e}", request.json()));
        let sent = events
            .iter()
            .find(|e| e.id == decoded.id)
            .unwrap_or_else(|| panic!("no event {}", decoded.id));
        assert_eq!(decoded.event_type, sent.event_type);
        assert_eq!(decoded.entity_type, sent.entity_type);
        assert_eq!(decoded.entity_id, sent.entity_id);
        assert_eq!(decoded.data, sent.data);
    }

    let custom = receiver.wait_for("/custom", 1, WAIT).await;
    assert_eq!(custom[0].event_id(), events[4].id.to_string());
    receiver.wait_for("/shipped", 1, WAIT).await;
    // Every event's deliveries are stored together; give a wrong match on
    // the total-only UPDATE time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fired = receiver.on("/shipped");
    assert_eq!(
        fired.len(),
        1,
        "status.changed() fires on the status UPDATE only: {fired:#?}"
    );
    assert_eq!(fired[0].event_id(), events[1].id.to_string());
    assert_eq!(
        receiver.on("/custom").len(),
        1,
        "CUSTOM selects the custom event only"
    );
}

#[tokio::test]
async fn a_real_fraiseql_update_fires_status_changed_on_fraiseql_mutation_subjects() {
    // fraiseql-server's prefix and stream.
    fraiseql_events_on("fraiseql.mutation", "fraiseql_events").await;
}

#[tokio::test]
async fn a_real_fraiseql_update_fires_status_changed_on_entity_change_subjects() {
    // The library's own defaults.
    let defaults = NatsConfig::default();
    assert_eq!(defaults.subject_prefix, "entity.change");
    fraiseql_events_on(&defaults.subject_prefix, &defaults.stream_name).await;
}

#[tokio::test]
async fn fraiseql_tenant_user_and_actor_reach_templates_and_conditions() {
    fraiseql_dev_env();
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), store.path())
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let config = format!(
        "[observers]\nbackend = \"nats\"\nnats_url = \"{}\"\n\n{}\n\
         [[observer]]\nname = \"tenant_a\"\nentity = \"Order\"\ncondition = \"_tenant_id == 'tenant-a'\"\n\
         [[observer.webhook]]\nurl = \"{}\"\n\
         body_template = '''{{\"tenant\": {{{{_tenant_id}}}}, \"user\": {{{{_user_id}}}}, \"actor\": {{{{_actor_type}}}}, \"event\": \"{{{{_event}}}}\"}}'''\n",
        nats.url(),
        webhooks_section(),
        receiver.url("/tenant"),
    );
    let _wasmhook = Wasmhook::start(&config).await;
    let fraiseql = fraiseql_transport(
        &nats,
        "fraiseql.mutation",
        "fraiseql_events",
        "compat_unused",
    )
    .await;

    let a = order_event(EventKind::Created, Uuid::new_v4(), json!({"status": "new"}))
        .with_tenant_id("tenant-a")
        .with_user_id("user-7".to_string())
        .with_actor_type("human_user");
    let b = order_event(EventKind::Created, Uuid::new_v4(), json!({"status": "new"}))
        .with_tenant_id("tenant-b");
    let c = order_event(EventKind::Updated, Uuid::new_v4(), json!({"status": "x"}))
        .with_tenant_id("tenant-a");
    for event in [&a, &b, &c] {
        fraiseql.publish(event.clone()).await.unwrap();
    }
    receiver.wait_for("/tenant", 2, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got: HashMap<String, Value> = receiver
        .on("/tenant")
        .iter()
        .map(|r| (r.event_id().to_string(), r.json()))
        .collect();
    assert_eq!(got.len(), 2, "only tenant-a's events: {got:#?}");
    assert_eq!(
        got[&a.id.to_string()],
        json!({"tenant": "tenant-a", "user": "user-7", "actor": "human_user", "event": "INSERT"})
    );
    assert_eq!(
        got[&c.id.to_string()],
        json!({"tenant": "tenant-a", "user": null, "actor": null, "event": "UPDATE"})
    );
}
