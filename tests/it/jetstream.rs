//! JetStream in: a private nats-server with JetStream, real publishes with
//! acks, kill -9 of wasmhook mid-stream, two processes on one consumer.

use std::time::Duration;

use serde_json::json;

use crate::utils::{
    delivered, fraiseql_order, free_port, kill_on_progress, python, readyz, NatsServer, Running,
    TestReceiver,
};

fn config(nats: &NatsServer, port: u16, receiver: &TestReceiver, instance: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{instance}\"\n\
         [observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\nstream = \"ORDERS\"\nconsumer = \"wasmhook\"\nack_wait_ms = 2000\n\
         [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 8\n[webhooks.retry]\ninitial_delay = \"10ms\"\nmax_attempts = 50\nmax_delay = \"100ms\"\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\nheaders = {{ X-Instance = \"{instance}\" }}\n",
        nats.url(),
        receiver.url("/orders")
    )
}

async fn publish(nats: &NatsServer, ids: std::ops::Range<i64>) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // The stream may not exist until wasmhook first starts; make sure it does.
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["fraiseql.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for id in ids {
        let event = fraiseql_order("created", json!({"id": id}), None).to_string();
        js.publish("fraiseql.order.created", event.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn kill_9_mid_stream_loses_nothing_and_two_processes_share_the_consumer() {
    let (kills, events) = crate::utils::kill_scale(3000);
    let tmp = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), &tmp.path().join("js")).await;
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    publish(&nats, 0..events).await;

    // One process, killed three times while it works through the stream.
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(&path, config(&nats, port, &receiver, "a")).unwrap();
    kill_on_progress(
        "jetstream",
        &path,
        tmp.path(),
        port,
        &receiver,
        events,
        kills,
    )
    .await;

    // Two processes on the same durable consumer finish the job and share it.
    let port_b = free_port();
    let path_b = tmp.path().join("b.toml");
    std::fs::write(&path_b, config(&nats, port_b, &receiver, "b")).unwrap();
    let before = receiver.requests().len();
    let _a = Running::start(&path, tmp.path(), port).await;
    let _b = Running::start(&path_b, tmp.path(), port_b).await;
    publish(&nats, events..events + 2000).await;
    let got = receiver
        .wait_until("every event", Duration::from_secs(120), |r| {
            delivered(r).len() as i64 == events + 2000
        })
        .await;
    let counts = delivered(&got);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    let by_instance = |name: &str| {
        got[before..]
            .iter()
            .filter(|r| r.header("x-instance") == name && r.status == 200)
            .count()
    };
    let (a, b) = (by_instance("a"), by_instance("b"));
    eprintln!("jetstream: {} events, kill -9 x{kills}, all delivered, {duplicates} duplicates; shared work a={a} b={b}", events + 2000);
    assert!(a > 0 && b > 0, "both processes took part: a={a} b={b}");
}

#[tokio::test]
async fn nats_restarting_mid_stream_loses_nothing_and_nats_py_events_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js")).await;
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    let wasmhook_port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(&path, config(&nats, wasmhook_port, &receiver, "a")).unwrap();
    let running = Running::start(&path, tmp.path(), wasmhook_port).await;
    readyz(&running.url("/readyz"), 200).await;
    publish(&nats, 0..500).await;
    receiver
        .wait_until("progress", Duration::from_secs(60), |r| {
            delivered(r).len() >= 100
        })
        .await;
    // Killed and restarted twice mid-stream.
    drop(nats);
    readyz(&running.url("/readyz"), 503).await;
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js")).await;
    readyz(&running.url("/readyz"), 200).await;
    publish(&nats, 500..1000).await;
    receiver
        .wait_until("progress", Duration::from_secs(60), |r| {
            delivered(r).len() >= 600
        })
        .await;
    drop(nats);
    readyz(&running.url("/readyz"), 503).await;
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js")).await;
    readyz(&running.url("/readyz"), 200).await;
    // The rest is published the way a FraiseQL user's Python service does.
    python(
        "import asyncio, json, sys, nats\n\
         async def main():\n\
         \x20   nc = await nats.connect(sys.argv[1])\n\
         \x20   js = nc.jetstream()\n\
         \x20   for i in range(1000, 2000):\n\
         \x20       event = {'event': 'fraiseql.order.created', 'entity_type': 'Order', 'operation': 'created',\n\
         \x20                'entity_id': i, 'entity': {'id': i}, 'timestamp': '2026-03-02T14:00:00Z'}\n\
         \x20       await js.publish('fraiseql.order.created', json.dumps(event).encode())\n\
         \x20   await nc.close()\n\
         asyncio.run(main())",
        &[&nats.url()],
    );
    let got = receiver
        .wait_until("every event", Duration::from_secs(120), |r| {
            delivered(r).len() == 2000
        })
        .await;
    let duplicates: usize = delivered(&got).values().map(|n| n - 1).sum();
    eprintln!("jetstream: nats-server killed and restarted twice mid-stream, 2000 events delivered, {duplicates} duplicates");
}
