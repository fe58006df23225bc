//! JetStream: wasmhook binds to the stream FraiseQL created
//! (`fraiseql_events` over `fraiseql.mutation.>`) with a durable consumer of
//! its own, next to FraiseQL's running observer worker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fraiseql_observers::event::EventKind;
use fraiseql_observers::transport::{EventFilter, EventTransport};
use fraiseql_observers::uuid::Uuid;
use futures::StreamExt;
use serde_json::json;
use wasmhook_testkit::{free_port, NatsServer};

use crate::nats::{fraiseql_transport, order_event};
use crate::receiver::Receiver;
use crate::wasmhook::Wasmhook;
use crate::{fraiseql_dev_env, observer, webhooks_section, SECRET};

const WAIT: Duration = Duration::from_secs(60);

/// What fraiseql-server uses.
const STREAM: &str = "fraiseql_events";
const PREFIX: &str = "fraiseql.mutation";
const FRAISEQL_CONSUMER: &str = "fraiseql_observer_worker";

/// `backend = "jetstream"` with every source setting at its default.
fn default_jetstream_config(nats: &NatsServer, receiver: &Receiver) -> String {
    format!(
        "[observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\n\n{}\n{}",
        nats.url(),
        webhooks_section(),
        observer("all", "", &receiver.url("/all")),
    )
}

async fn jetstream_context(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

async fn names<S, E>(names: S) -> BTreeSet<String>
where
    S: futures::Stream<Item = Result<String, E>>,
    E: std::fmt::Debug,
{
    names.map(|n| n.unwrap()).collect().await
}

#[tokio::test]
async fn wasmhook_binds_to_fraiseqls_stream_without_touching_its_consumer() {
    fraiseql_dev_env();
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), store.path())
        .await
        .unwrap();

    // FraiseQL first: its transport creates the stream, and its observer
    // worker (a durable consumer) runs and acks as fraiseql-server's does.
    let fraiseql = fraiseql_transport(&nats, PREFIX, STREAM, FRAISEQL_CONSUMER).await;
    let mut worker = fraiseql
        .subscribe_with_ack(EventFilter::all_tenants())
        .await
        .unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = worker.next().await {
            if let Ok((event, acker)) = item {
                acker.ack().await.unwrap();
                let _ = seen_tx.send(event.id);
            }
        }
    });

    let js = jetstream_context(&nats).await;
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let stream_config = format!("{:?}", stream.info().await.unwrap().config);
    let consumer_config = format!(
        "{:?}",
        stream
            .consumer_info(FRAISEQL_CONSUMER)
            .await
            .unwrap()
            .config
    );

    let receiver = Receiver::start().await;
    let _wasmhook = Wasmhook::start(&default_jetstream_config(&nats, &receiver)).await;

    // Bound to FraiseQL's stream: no stream of its own, its own consumer.
    assert_eq!(
        names(js.stream_names()).await,
        BTreeSet::from([STREAM.to_string()]),
        "wasmhook uses the stream that covers fraiseql.mutation.>"
    );
    assert_eq!(
        names(stream.consumer_names()).await,
        BTreeSet::from([FRAISEQL_CONSUMER.to_string(), "wasmhook".to_string()]),
    );

    let events: Vec<_> = (0..20)
        .map(|i| {
            let id = Uuid::new_v4();
            order_event(EventKind::Created, id, json!({"id": id, "n": i}))
        })
        .collect();
    for event in &events {
        fraiseql.publish(event.clone()).await.unwrap();
    }
    let published: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();

    let got = receiver
        .wait_until("/all", "every event", WAIT, |r| {
            r.iter()
                .map(|r| r.event_id().to_string())
                .collect::<BTreeSet<_>>()
                == published
        })
        .await;
    for request in &got {
        request.assert_signed(SECRET);
        assert_eq!(request.json()["op"], "INSERT");
    }

    // FraiseQL's worker got and acked every event too: wasmhook took none
    // of its messages and changed nothing of its consumer or the stream.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen != published {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, seen_rx.recv()).await {
            Ok(Some(id)) => {
                seen.insert(id.to_string());
            }
            _ => panic!(
                "FraiseQL's worker saw {} of {}",
                seen.len(),
                published.len()
            ),
        }
    }
    let ours = wait_acked(&stream, FRAISEQL_CONSUMER, events.len() as u64).await;
    assert_eq!(format!("{:?}", ours.config), consumer_config);
    assert_eq!(
        format!("{:?}", stream.info().await.unwrap().config),
        stream_config
    );
    let theirs = wait_acked(&stream, "wasmhook", events.len() as u64).await;
    assert_eq!(theirs.config.durable_name.as_deref(), Some("wasmhook"));
}

/// Waits until consumer `name` has acked stream sequence `n`.
async fn wait_acked(
    stream: &jetstream::stream::Stream,
    name: &str,
    n: u64,
) -> jetstream::consumer::Info {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = stream.consumer_info(name).await.unwrap();
        if info.ack_floor.stream_sequence >= n {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "consumer {name} acked up to {} of {n}",
            info.ack_floor.stream_sequence
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_until_the_stream_can_be_bound() {
    fraiseql_dev_env();
    // A server without JetStream: nothing to bind to.
    let port = free_port();
    let plain = NatsServer::start_on(port).await.unwrap();
    let receiver = Receiver::start().await;
    let config = format!(
        "[observers]\nbackend = \"jetstream\"\nnats_url = \"nats://127.0.0.1:{port}\"\n\n{}\n{}",
        webhooks_section(),
        observer("all", "", &receiver.url("/all")),
    );
    let mut wasmhook = Wasmhook::spawn(&config).await;
    let mut answers = BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(status) = wasmhook.readyz().await {
            answers.insert(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answers,
        BTreeSet::from([503]),
        "/readyz while JetStream is unavailable"
    );

    // The same port with JetStream, and FraiseQL's stream on it.
    drop(plain);
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(port, store.path())
        .await
        .unwrap();
    let fraiseql = fraiseql_transport(&nats, PREFIX, STREAM, FRAISEQL_CONSUMER).await;
    wasmhook.wait_ready().await;
    let id = Uuid::new_v4();
    let event = order_event(EventKind::Created, id, json!({"id": id}));
    fraiseql.publish(event.clone()).await.unwrap();
    let got = receiver.wait_for("/all", 1, WAIT).await;
    assert_eq!(got[0].event_id(), event.id.to_string());
}
