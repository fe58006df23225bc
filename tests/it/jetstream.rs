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
         [observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\nstream = \"ORDERS\"\nsubjects = [\"fraiseql.>\"]\nconsumer = \"wasmhook\"\nack_wait_ms = 2000\n\
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
    let nats = NatsServer::start_jetstream(free_port(), &tmp.path().join("js"))
        .await
        .unwrap();
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
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js"))
        .await
        .unwrap();
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
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js"))
        .await
        .unwrap();
    readyz(&running.url("/readyz"), 200).await;
    publish(&nats, 500..1000).await;
    receiver
        .wait_until("progress", Duration::from_secs(60), |r| {
            delivered(r).len() >= 600
        })
        .await;
    drop(nats);
    readyz(&running.url("/readyz"), 503).await;
    let nats = NatsServer::start_jetstream(port, &tmp.path().join("js"))
        .await
        .unwrap();
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

/// wasmhook with the default stream settings, beside a stream someone else
/// made over the same subjects (as fraiseql-server makes `fraiseql_events`,
/// with its own consumer): it binds to that stream instead of failing on the
/// overlap, keeps its own consumer, and delivers what is published there.
#[tokio::test]
async fn the_default_stream_binds_to_one_that_already_holds_the_subjects() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), &tmp.path().join("js"))
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "theirs".into(),
            subjects: vec!["fraiseql.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("fraiseql_observer_worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let receiver = TestReceiver::start().await;
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db\"\n\
             [observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            nats.url(),
            receiver.url("/orders")
        ),
    )
    .unwrap();
    let running = Running::start(&path, tmp.path(), port).await;
    readyz(&running.url("/readyz"), 200).await;
    for id in 0..3 {
        let event = fraiseql_order("created", json!({"id": id}), None).to_string();
        js.publish("fraiseql.mutation.Order.INSERT", event.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    receiver
        .wait_until("three events", Duration::from_secs(30), |r| {
            delivered(r).len() == 3
        })
        .await;
    let mut names: Vec<String> = futures::TryStreamExt::try_collect(js.stream_names())
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, vec!["theirs".to_string()], "no second stream");
    let stream = js.get_stream("theirs").await.unwrap();
    let mut consumers: Vec<String> = futures::TryStreamExt::try_collect(stream.consumer_names())
        .await
        .unwrap();
    consumers.sort();
    assert_eq!(consumers, vec!["fraiseql_observer_worker", "wasmhook"]);
    let theirs = stream
        .consumer_info("fraiseql_observer_worker")
        .await
        .unwrap();
    assert_eq!(
        theirs.num_pending, 3,
        "FraiseQL's consumer still has its events"
    );
}

/// A stream that cannot be bound consumes nothing, so `/readyz` must not
/// say ready: the subjects are split over two streams here.
#[tokio::test]
async fn readyz_stays_503_while_no_stream_can_be_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_jetstream(free_port(), &tmp.path().join("js"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for (name, subject) in [("a", "a.>"), ("b", "b.>")] {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db\"\n\
             [observers]\nbackend = \"jetstream\"\nnats_url = \"{}\"\nstream = \"both\"\nsubjects = [\"a.>\", \"b.>\"]\n",
            nats.url()
        ),
    )
    .unwrap();
    let running = Running::start(&path, tmp.path(), port).await;
    for _ in 0..20 {
        let status = reqwest::get(running.url("/readyz")).await.unwrap().status();
        assert_eq!(status.as_u16(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Half of the subjects held is no better: still not ready.
    js.delete_stream("b").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = reqwest::get(running.url("/readyz")).await.unwrap().status();
    assert_eq!(status.as_u16(), 503);
    // Once nothing else holds the subjects, wasmhook makes its stream.
    js.delete_stream("a").await.unwrap();
    readyz(&running.url("/readyz"), 200).await;
    assert!(js.get_stream("both").await.is_ok());
}
