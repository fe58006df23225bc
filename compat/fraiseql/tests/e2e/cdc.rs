//! CDC: `ChangeEvent`s published by fraiseql-cdc-sinks' `NatsJetStreamSink`
//! (subject `fraiseql.{tenant_id}.{table}`, header `Nats-Msg-Id:
//! {object_type}:{seq}`) reach wasmhook's `backend = "jetstream"` bound to
//! the sink's stream.

use std::collections::HashMap;
use std::time::Duration;

use fraiseql_cdc_sinks::{
    CdcSink, CdcSinkConfig, ChangeEvent, ChangeOp, NatsJetStreamSink, PublishOutcome,
};
use fraiseql_observers::chrono::Utc;
use fraiseql_observers::uuid::Uuid;
use serde_json::{json, Value};
use wasmhook_testkit::{free_port, NatsServer};

use crate::receiver::Receiver;
use crate::wasmhook::Wasmhook;
use crate::{fraiseql_dev_env, observer, webhooks_section, SECRET};

const WAIT: Duration = Duration::from_secs(60);
const STREAM: &str = "fraiseql_cdc";
const SUBJECTS: &str = "fraiseql.*.*";

fn change(seq: i64, op: ChangeOp, id: Uuid) -> ChangeEvent {
    let mut event = ChangeEvent::new(seq, "Order", op).with_object_id(id);
    event.commit_time = Some(Utc::now());
    event
}

#[tokio::test]
async fn cdc_change_events_arrive_with_object_type_seq_as_event_id() {
    fraiseql_dev_env();
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), store.path())
        .await
        .unwrap();
    let sink = NatsJetStreamSink::connect(
        &nats.url(),
        CdcSinkConfig::new("compat", "fraiseql.{tenant_id}.{table}"),
    )
    .await
    .unwrap_or_else(|e| panic!("NatsJetStreamSink::connect: {e}"));
    sink.ensure_stream(STREAM, vec![SUBJECTS.to_string()])
        .await
        .unwrap();

    let receiver = Receiver::start().await;
    let config = format!(
        "[observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\nstream = \"{STREAM}\"\nsubjects = [\"{SUBJECTS}\"]\n\n{}\n{}\n{}",
        nats.url(),
        webhooks_section(),
        observer("all", "", &receiver.url("/all")),
        observer(
            "shipped",
            "event = \"UPDATE\"\ncondition = \"status.changed() && status == 'shipped'\"",
            &receiver.url("/shipped"),
        ),
    );
    let _wasmhook = Wasmhook::start(&config).await;

    let id = Uuid::new_v4();
    let tenant = Uuid::new_v4();
    let paid = json!({"id": id, "total": 1500, "status": "paid"});
    let shipped = json!({"id": id, "total": 1500, "status": "shipped"});
    let events = [
        change(1, ChangeOp::Insert, id)
            .with_tenant(tenant)
            .with_after(paid.clone()),
        change(2, ChangeOp::Update, id)
            .with_before(paid.clone())
            .with_after(shipped.clone()),
        // A trigger-captured DELETE: no after-image.
        change(3, ChangeOp::Delete, id).with_before(shipped.clone()),
        change(4, ChangeOp::Custom, id).with_after(json!({"id": id, "note": "audit"})),
    ];
    for event in &events {
        assert_eq!(sink.publish(event).await, PublishOutcome::Published);
    }
    // A retried publish of the same change: JetStream drops it by its
    // Nats-Msg-Id, so nothing reaches wasmhook twice.
    assert_eq!(sink.publish(&events[0]).await, PublishOutcome::Published);

    let all = receiver.wait_for("/all", events.len(), WAIT).await;
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
    let got = |seq: i64| -> Value {
        by_id
            .get(&format!("Order:{seq}"))
            .unwrap_or_else(|| panic!("no delivery with event id Order:{seq}: {by_id:#?}"))
            .clone()
    };

    let insert = got(1);
    assert_eq!(insert["op"], "INSERT");
    assert_eq!(insert["entity"], "Order");
    assert_eq!(insert["data"], paid);
    assert_eq!(insert["tenant"], tenant.to_string());
    assert_eq!(insert["old"], Value::Null);

    let update = got(2);
    assert_eq!(update["op"], "UPDATE");
    assert_eq!(update["data"], shipped);
    assert_eq!(update["old"], paid, "_old is the CDC before-image");
    assert_eq!(
        update["changed"],
        json!({"status": {"old": "paid", "new": "shipped"}})
    );
    assert_eq!(update["tenant"], Value::Null);

    let delete = got(3);
    assert_eq!(delete["op"], "DELETE");
    assert_eq!(
        delete["data"], shipped,
        "a DELETE's row is the before-image"
    );

    assert_eq!(got(4)["op"], "CUSTOM");

    receiver.wait_for("/shipped", 1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.on("/all").len(),
        events.len(),
        "no duplicate delivery"
    );
    let fired = receiver.on("/shipped");
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(fired[0].event_id(), "Order:2");
}
