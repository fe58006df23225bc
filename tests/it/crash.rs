//! kill -9 during delivery, then restart: every accepted event arrives.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, free_port, post, Running, TestReceiver};

#[tokio::test]
async fn kill_9_during_delivery_then_restart_delivers_every_accepted_event() {
    let (kills, events) = crate::utils::kill_scale(600);
    let (kills, events) = (kills as usize, events as usize);
    let receiver = TestReceiver::start().await;
    // Slow enough that the kill lands while deliveries are in flight.
    receiver.set_delay(Duration::from_millis(20));
    receiver.script(&[500; 50]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db\"\n[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 4\n\
             [webhooks.retry]\nmax_attempts = 50\ninitial_delay = \"10ms\"\nmax_delay = \"100ms\"\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            receiver.url("/orders")
        ),
    )
    .unwrap();

    let mut accepted = 0;
    for round in 0..kills {
        let mut running = Running::start(&config, Path::new(dir.path()), port).await;
        // Post a share of the events, in batches, each answered 202 before the next.
        for batch in 0..(events / kills / 50) {
            let body: Vec<String> = (0..50)
                .map(|i| {
                    fraiseql_order(
                        "created",
                        json!({"id": round * 10_000 + batch * 50 + i}),
                        None,
                    )
                    .to_string()
                })
                .collect();
            let (status, _) = post(&running.url("/events"), body.join("\n")).await;
            assert_eq!(status, 202);
            accepted += 50;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        running.kill9();
        let delivered = receiver
            .requests()
            .iter()
            .filter(|r| r.status == 200)
            .count();
        assert!(
            delivered < accepted,
            "round {round}: the kill must land mid-delivery ({delivered} of {accepted} done)"
        );
    }
    let _running = Running::start(&config, Path::new(dir.path()), port).await;
    let got = receiver
        // The receiver takes 20 ms a request, four at a time.
        .wait_until(
            "every accepted event",
            Duration::from_secs(60 + events as u64 / 100),
            |r| {
                let mut seen = std::collections::HashSet::new();
                r.iter().filter(|r| r.status == 200).for_each(|r| {
                    seen.insert(r.json()["id"].as_i64());
                });
                seen.len() == events
            },
        )
        .await;
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        *counts.entry(r.json()["id"].as_i64().unwrap()).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 x{kills}: {events} events accepted, all delivered, {duplicates} duplicate deliveries"
    );
    assert_eq!(counts.len(), accepted);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_up_to_the_deadline_exits_0_and_the_rest_resumes() {
    const EVENTS: usize = 40;
    let receiver = TestReceiver::start().await;
    // Each request takes longer than the shutdown deadline allows for all.
    receiver.set_delay(Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout = \"1s\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 2\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            receiver.url("/orders")
        ),
    )
    .unwrap();
    let mut running = Running::start(&config, dir.path(), port).await;
    let body: Vec<String> = (0..EVENTS)
        .map(|i| fraiseql_order("created", json!({"id": i}), None).to_string())
        .collect();
    let (status, _) = post(&running.url("/events"), body.join("\n")).await;
    assert_eq!(status, 202);
    receiver
        .wait_until("deliveries in flight", Duration::from_secs(20), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(running.terminate(), 0, "a clean exit on SIGTERM");
    let done = receiver.requests().len();
    assert!(
        done < EVENTS,
        "the deadline cut the backlog short ({done} of {EVENTS})"
    );
    // Nothing new is taken once stopping: the port is closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    receiver.set_delay(Duration::from_millis(0));
    let _running = Running::start(&config, dir.path(), port).await;
    let got = receiver
        .wait_until("the rest after restart", Duration::from_secs(60), |r| {
            let ids: std::collections::HashSet<i64> =
                r.iter().filter_map(|r| r.json()["id"].as_i64()).collect();
            ids.len() == EVENTS
        })
        .await;
    eprintln!(
        "SIGTERM: {done} of {EVENTS} delivered before exit, the rest after restart ({} requests in all)",
        got.len()
    );
}
