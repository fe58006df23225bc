//! Delivery controls against real receivers: rate limits, batching,
//! per-destination queues, the circuit breaker, 410 Gone, entity ordering.
//! Timing is checked with generous tolerances; nothing may be lost.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, metric_sum, InProcess, TestReceiver};

fn orders(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| fraiseql_order("created", json!({"id": i}), None).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids(requests: &[crate::utils::Received]) -> HashSet<i64> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json()["id"].as_i64())
        .collect()
}

async fn metric(wasmhook: &InProcess, name: &str) -> f64 {
    let text = wasmhook.metrics().await;
    metric_sum(&text, name).unwrap_or(0.0)
}

#[tokio::test]
async fn a_50_per_second_limit_holds_and_loses_nothing() {
    const EVENTS: i64 = 200;
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[webhooks.rate_limiting]\nmax_per_second = 50\nburst = 5\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/limited")
    ))
    .await;
    wasmhook.post_events(orders(0..EVENTS)).await;
    let got = receiver
        .wait_until("every event", Duration::from_secs(30), |r| {
            r.len() as i64 == EVENTS
        })
        .await;
    assert_eq!(ids(&got).len() as i64, EVENTS);
    // After the burst, 195 requests at 50/s take about 3.9 s.
    let first = got[5].at;
    let last = got[got.len() - 1].at;
    let rate = (got.len() - 6) as f64 / (last - first).as_secs_f64();
    eprintln!(
        "rate limit 50/s: observed {rate:.1}/s over {:?}",
        last - first
    );
    assert!((40.0..=60.0).contains(&rate), "observed {rate:.1}/s");
    wasmhook.stop().await;
}

#[tokio::test]
async fn batches_of_ten_and_the_timeout_flush_keep_every_event() {
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nbatch = {{ size = 10, timeout = \"1s\" }}\n\
         [[observer.webhook]]\nurl = \"{}\"\nbatch = {{ size = 10, timeout = \"1s\" }}\n\
         body = {{ orders = [ {{ id = \"{{{{ id }}}}\" }} ], batch_timestamp = \"{{{{ _timestamp }}}}\" }}\n",
        receiver.url("/array"),
        receiver.url("/template")
    ))
    .await;
    wasmhook.post_events(orders(0..25)).await;
    let got = receiver
        .wait_until("three batches each", Duration::from_secs(20), |r| {
            r.len() == 6
        })
        .await;
    let plain = receiver.on("/array");
    let sizes: Vec<usize> = plain
        .iter()
        .map(|r| r.json().as_array().unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        [10, 10, 5],
        "full batches first, then the timeout flush"
    );
    let mut seen: Vec<i64> = plain
        .iter()
        .flat_map(|r| r.json().as_array().unwrap().clone())
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    // The partial batch waited for its timeout.
    assert!(plain[2].at - plain[1].at >= Duration::from_millis(800));

    // The FraiseQL batch example: the template's array element, repeated.
    let templated = receiver.on("/template");
    let body = templated[0].json();
    assert_eq!(body["orders"].as_array().unwrap().len(), 10, "{body}");
    assert!(body["batch_timestamp"].is_string());
    // One request id per batch, not per event.
    assert!(got
        .iter()
        .all(|r| r.header("x-wasmhook-delivery").starts_with("batch_")));
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_failed_batch_is_retried_whole_and_dies_whole_into_the_dlq() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[503]);
    let wasmhook = InProcess::start(&format!(
        "[webhooks.retry]\nmax_attempts = 2\ninitial_delay = \"50ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nbatch = {{ size = 4, timeout = \"200ms\" }}\n",
        receiver.url("/b")
    ))
    .await;
    wasmhook.post_events(orders(0..4)).await;
    let got = receiver
        .wait_until("the retried batch", Duration::from_secs(20), |r| {
            r.len() == 2
        })
        .await;
    assert_eq!((got[0].status, got[1].status), (503, 200));
    assert_eq!(got[0].body, got[1].body, "the same batch, resent");
    assert_eq!(got[1].json().as_array().unwrap().len(), 4);

    receiver.set_status(400);
    wasmhook.post_events(orders(10..13)).await;
    let mut dlq = serde_json::Value::Null;
    for _ in 0..200 {
        dlq = wasmhook.get_json("/admin/dlq").await;
        if dlq.as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries = dlq.as_array().unwrap();
    assert_eq!(entries.len(), 3, "every event of the batch is kept: {dlq}");
    assert!(entries
        .iter()
        .all(|e| e["reason"].as_str().unwrap().contains("in a batch of 3")));
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_slow_destination_does_not_hold_up_the_others() {
    let slow = TestReceiver::start().await;
    slow.set_delay(Duration::from_secs(2));
    let fast = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[webhooks]\nmax_concurrent = 6\nmax_concurrent_per_destination = 2\n\
         [[observer]]\nname = \"slow\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n\
         [[observer]]\nname = \"fast\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        slow.url("/slow"),
        fast.url("/fast")
    ))
    .await;
    wasmhook.post_events(orders(0..30)).await;
    fast.wait_until("every fast delivery", Duration::from_secs(20), |r| {
        r.len() == 30
    })
    .await;
    // Meanwhile the slow one has had at most a few answered.
    assert!(slow.requests().len() <= 4, "{}", slow.requests().len());
    wasmhook.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_on_a_failing_destination_then_probes_and_closes() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(500);
    let wasmhook = InProcess::start(&format!(
        "[webhooks.circuit_breaker]\nfailure_threshold = 3\ncooldown = \"700ms\"\n\
         [webhooks.retry]\nmax_attempts = 100\ninitial_delay = \"10ms\"\nmax_delay = \"20ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/flaky")
    ))
    .await;
    wasmhook.post_events(orders(0..5)).await;
    receiver
        .wait_until("the breaker's failures", Duration::from_secs(10), |r| {
            r.len() >= 3
        })
        .await;
    // Opened: retries due every 10-20 ms wait instead of hammering.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during_pause = receiver.requests().len();
    assert!(during_pause <= 5, "{during_pause} requests while open");
    assert!(metric(&wasmhook, "wasmhook_circuit_breaker_total").await >= 1.0);
    receiver.set_status(200);
    let got = receiver
        .wait_until("everything after the probe", Duration::from_secs(20), |r| {
            ids(r).len() == 5
        })
        .await;
    // Failed probes double the pause; whatever happened, the gaps show pauses.
    let longest = got.windows(2).map(|w| w[1].at - w[0].at).max().unwrap();
    assert!(
        longest >= Duration::from_millis(600),
        "longest gap {longest:?}"
    );
    let text = wasmhook.metrics().await;
    assert!(text.contains("state=\"open\""), "{text}");
    assert!(text.contains("state=\"closed\""), "{text}");
    wasmhook.stop().await;
}

#[tokio::test]
async fn a_410_disables_the_webhook_until_it_is_enabled_again() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[410]);
    let wasmhook = InProcess::start(&format!(
        "[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/gone")
    ))
    .await;
    wasmhook.post_events(orders(0..1)).await;
    receiver
        .wait_until("the 410", Duration::from_secs(10), |r| r.len() == 1)
        .await;
    wasmhook.post_events(orders(1..3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1, "nothing sent while disabled");
    let listed = wasmhook.get_json("/admin/webhooks").await;
    assert_eq!(
        listed["disabled"][0],
        json!({"observer": "o", "webhook": 0, "parked": 3}),
        "{listed}"
    );
    let (status, _) = crate::utils::post(&wasmhook.url("/admin/webhooks/o/0/enable"), "").await;
    assert_eq!(status, 200);
    let got = receiver
        .wait_until("all three after enabling", Duration::from_secs(10), |r| {
            ids(r).len() == 3
        })
        .await;
    assert_eq!(ids(&got), HashSet::from([0, 1, 2]));
    wasmhook.stop().await;
}

#[tokio::test]
async fn entity_lanes_stay_in_order_while_another_entity_fails() {
    let receiver = TestReceiver::start().await;
    // Entity B's requests fail until switched back.
    receiver.answer_when(Some(("\"entity\":\"B\"", 500)));
    let wasmhook = InProcess::start(&format!(
        "[webhooks]\nmax_concurrent = 8\n\
         [webhooks.retry]\nmax_attempts = 100\ninitial_delay = \"20ms\"\nmax_delay = \"50ms\"\n\
         [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n\
         ordering = \"entity\"\nbody = {{ entity = \"{{{{ id }}}}\", seq = \"{{{{ seq }}}}\" }}\n",
        receiver.url("/ordered")
    ))
    .await;
    let events: Vec<String> = (0..40)
        .map(|i| {
            let entity = ["A", "B", "C"][i % 3];
            json!({"entity": "order", "op": "UPDATE", "entity_id": entity,
                   "data": {"id": entity, "seq": i}})
            .to_string()
        })
        .collect();
    wasmhook.post_events(events.join("\n")).await;
    receiver
        .wait_until(
            "A and C through while B fails",
            Duration::from_secs(20),
            |r| r.iter().filter(|r| r.status == 200).count() == 27,
        )
        .await;
    // B's lane retried only its first event; its later ones waited.
    let b_seqs: HashSet<i64> = receiver
        .requests()
        .iter()
        .filter(|r| r.json()["entity"] == "B")
        .map(|r| r.json()["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(b_seqs, HashSet::from([1]), "only B's head was tried");
    receiver.answer_when(None);
    let got = receiver
        .wait_until("all 40", Duration::from_secs(20), |r| {
            r.iter().filter(|r| r.status == 200).count() == 40
        })
        .await;
    let mut lanes: HashMap<String, Vec<i64>> = HashMap::new();
    for r in got.iter().filter(|r| r.status == 200) {
        let body = r.json();
        lanes
            .entry(body["entity"].as_str().unwrap().to_string())
            .or_default()
            .push(body["seq"].as_i64().unwrap());
    }
    for (entity, seqs) in &lanes {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, &sorted, "entity {entity} out of order");
    }
    assert_eq!(lanes["B"].len(), 13);
    wasmhook.stop().await;
}
