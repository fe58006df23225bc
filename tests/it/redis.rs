//! Redis in: pub/sub fed by redis-py, and a Streams consumer group under
//! kill -9, a dead consumer's pending entries, two processes sharing the
//! group, and the Redis server restarted mid-stream. Every test starts its
//! own redis-server so it can stop it.

use std::time::Duration;

use serde_json::json;

use crate::utils::{
    delivered, fraiseql_order, free_port, kill_on_progress, metric_sum, python, readyz, InProcess,
    RedisServer, Running, TestReceiver,
};

const WEBHOOK_RETRY: &str = "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 8\n[webhooks.retry]\ninitial_delay = \"10ms\"\nmax_attempts = 50\nmax_delay = \"100ms\"\n";

#[tokio::test]
async fn pub_sub_messages_from_redis_py_become_webhooks() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(free_port(), tmp.path()).await.unwrap();
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[observers]\nbackend = \"redis\"\nredis_url = \"{}\"\nchannels = [\"fraiseql.order.*\", \"fraiseql.user.created\"]\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        redis.url(),
        receiver.url("/orders")
    ))
    .await;
    readyz(&wasmhook.url("/readyz"), 200).await;

    // Published the way a FraiseQL user's Python service would.
    let event = fraiseql_order("created", json!({"id": 7, "total": 10}), None).to_string();
    let receivers = python(
        "import redis, sys\n\
         r = redis.Redis.from_url(sys.argv[1])\n\
         n = r.publish('fraiseql.order.created', sys.argv[2])\n\
         r.publish('fraiseql.other.created', sys.argv[2])\n\
         r.publish('fraiseql.order.updated', b'not json')\n\
         print(n)",
        &[&redis.url(), &event],
    );
    assert_eq!(receivers.trim(), "1", "wasmhook is the one subscriber");
    let got = receiver
        .wait_until("the order webhook", Duration::from_secs(20), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(got[0].json()["id"], 7);
    assert_eq!(got[0].json()["total"], 10);

    // Bad input is never silently dropped: it is in the DLQ with the reason.
    let dlq = wait_for_dlq(&wasmhook).await;
    let reason = dlq[0]["reason"].as_str().unwrap();
    assert!(reason.contains("not JSON"), "{reason}");
    assert_eq!(
        receiver.requests().len(),
        1,
        "the unmatched channel sent nothing"
    );
    wasmhook.stop().await;
}

async fn wait_for_dlq(wasmhook: &InProcess) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let listing = wasmhook.get_json("/admin/dlq").await;
        let entries = listing.as_array().cloned().unwrap_or_default();
        if !entries.is_empty() {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing reached the DLQ");
}

/// Polls a Prometheus gauge until `done` holds; returns its value.
async fn wait_for_metric(url: &str, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    for _ in 0..1000 {
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        last = metric_sum(&text, name);
        if let Some(value) = last.filter(|v| done(*v)) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached the expected value (last {last:?})");
}

fn streams_config(redis: &RedisServer, port: u16, receiver: &TestReceiver, name: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{name}\"\n\
         [observers]\nbackend = \"redis-streams\"\nredis_url = \"{}\"\nstream = \"orders\"\n\
         group = \"wasmhook\"\nconsumer = \"{name}\"\nclaim_idle = \"1s\"\nbatch_size = 200\n\
         {WEBHOOK_RETRY}\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\nheaders = {{ X-Instance = \"{name}\" }}\n",
        redis.url(),
        receiver.url("/orders")
    )
}

/// `XADD orders * payload <FraiseQL event>` for each id, pipelined.
async fn xadd(redis: &RedisServer, ids: std::ops::Range<i64>) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let event = fraiseql_order("created", json!({"id": id}), None).to_string();
            pipe.cmd("XADD")
                .arg("orders")
                .arg("*")
                .arg("payload")
                .arg(event)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
    }
}

#[tokio::test]
async fn streams_survive_kill_9_claim_a_dead_consumers_entries_and_share_the_group() {
    let (kills, events) = crate::utils::kill_scale(3000);
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(free_port(), &tmp.path().join("redis"))
        .await
        .unwrap();
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    xadd(&redis, 0..events).await;

    let port_a = free_port();
    let path_a = tmp.path().join("a.toml");
    std::fs::write(&path_a, streams_config(&redis, port_a, &receiver, "a")).unwrap();
    kill_on_progress(
        "redis-streams",
        &path_a,
        tmp.path(),
        port_a,
        &receiver,
        events,
        kills,
    )
    .await;

    // A consumer that read entries and died before acknowledging them: its
    // entries must be claimed by a live one once idle.
    xadd(&redis, events..events + 100).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let taken: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP", "wasmhook", "ghost", "COUNT", "100", "STREAMS", "orders", ">",
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let ghost: usize = taken.keys.iter().map(|k| k.ids.len()).sum();
    assert!(ghost > 0, "the ghost consumer holds pending entries");

    // b alone first (a stays dead), then both, with more events coming.
    let port_b = free_port();
    let path_b = tmp.path().join("b.toml");
    std::fs::write(&path_b, streams_config(&redis, port_b, &receiver, "b")).unwrap();
    let before = receiver.requests().len();
    xadd(&redis, events + 100..events + 1100).await;
    let running_b = Running::start(&path_b, tmp.path(), port_b).await;
    // Its first look at the group, before it reads, sees the backlog.
    let lag = wait_for_metric(&running_b.url("/metrics"), "wasmhook_source_lag", |v| {
        v > 0.0
    })
    .await;
    assert!(lag <= 1100.0, "lag {lag}");
    let _a = Running::start(&path_a, tmp.path(), port_a).await;
    xadd(&redis, events + 1100..events + 2000).await;
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
    eprintln!(
        "redis-streams: {} events, kill -9 x{kills}, {ghost} claimed from a dead consumer, all delivered, \
         {duplicates} duplicates; shared work a={a} b={b}",
        events + 2000
    );
    assert!(a > 0 && b > 0, "both processes took part: a={a} b={b}");
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg("orders")
        .arg("wasmhook")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.count(), 0, "everything was acknowledged");
    wait_for_metric(&running_b.url("/metrics"), "wasmhook_source_lag", |v| {
        v == 0.0
    })
    .await;
}

#[tokio::test]
async fn streams_lose_nothing_when_redis_restarts_mid_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(free_port(), &tmp.path().join("redis"))
        .await
        .unwrap();
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(&path, streams_config(&redis, port, &receiver, "a")).unwrap();
    let running = Running::start(&path, tmp.path(), port).await;
    readyz(&running.url("/readyz"), 200).await;

    // Twice: stopped mid-stream, restarted, more events, again.
    for round in 0..2i64 {
        xadd(&redis, round * 1000..round * 1000 + 1000).await;
        let target = round as usize * 1000 + 100;
        receiver
            .wait_until("progress", Duration::from_secs(60), |r| {
                delivered(r).len() >= target
            })
            .await;
        redis.stop();
        // wasmhook notices and says so, without exiting.
        readyz(&running.url("/readyz"), 503).await;
        redis.restart().await.unwrap();
        readyz(&running.url("/readyz"), 200).await;
    }
    xadd(&redis, 2000..3000).await;
    let got = receiver
        .wait_until("every event", Duration::from_secs(120), |r| {
            delivered(r).len() == 3000
        })
        .await;
    let duplicates: usize = delivered(&got).values().map(|n| n - 1).sum();
    eprintln!("redis-streams: Redis restarted twice mid-stream, 3000 events delivered, {duplicates} duplicates");
}
