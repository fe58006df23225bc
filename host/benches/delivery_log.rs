//! What the web console and `deliveries list` cost with a full delivery
//! log: 100,000 finished deliveries (1 KB entities, 10 observers, one in
//! ten dead) in a sled store, then each kind of page the console asks for,
//! timed over several runs.
//!
//! `cargo bench --bench delivery_log` prints a table; the target is under
//! a second for any page.

use std::time::{Duration, Instant};

use serde_json::json;
use wasmhook::event::{Envelope, Event, Operation};
use wasmhook::store::{
    Attempt, BackendSettings, Delivery, DeliveryStatus, Payload, Query, Settings, Store,
};

const DELIVERIES: usize = 100_000;
const RUNS: usize = 5;

fn delivery(i: usize) -> Delivery {
    let row = json!({"id": i, "status": "shipped", "note": "x".repeat(900)});
    let event = Event {
        id: format!("evt-{i}"),
        entity: "Order".into(),
        operation: Operation::Update,
        entity_id: Some(i.to_string()),
        timestamp: "2026-12-07T10:00:00Z".into(),
        envelope: Envelope::Native,
        source: "bench".into(),
        data: row.clone(),
        old: None,
        meta: serde_json::Map::new(),
    };
    Delivery {
        id: wasmhook::clock::new_id(),
        observer: format!("observer-{}", i % 10),
        webhook: 0,
        event: event.into(),
        payload: Some(Payload {
            method: "POST".into(),
            url: "http://127.0.0.1:9/hook".into(),
            headers: Vec::new(),
            content_type: None,
            body: row.to_string().into_bytes(),
        }),
        attempts: vec![Attempt {
            at_ms: wasmhook::clock::now_ms(),
            status: Some(if i % 10 == 0 { 400 } else { 200 }),
            error: None,
            response: Some("ok".into()),
            duration_ms: 2,
        }],
        earlier_attempts: Vec::new(),
        due_ms: 0,
        accepted_ms: wasmhook::clock::now_ms(),
        after: None,
        next: None,
        held: false,
    }
}

/// This process's CPU time (user and system, every thread), from
/// `/proc/self/stat`, in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// A sled store in `dir` with a cache of `cache_bytes`.
fn sled_settings(dir: &std::path::Path, cache_bytes: u64, delivery_log: bool) -> Settings {
    Settings {
        path: dir.to_path_buf(),
        backend: BackendSettings::Sled {
            cache_capacity_bytes: cache_bytes,
            min_free_bytes: 0,
        },
        delivery_log,
    }
}

/// CPU time per delivery that storing and completing costs (sled flushes
/// included), with the delivery log on or off.
async fn completion_cost(logging: bool, deliveries: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sled_settings(dir.path(), 64 << 20, logging))
        .await
        .unwrap();
    let batches: Vec<Vec<Delivery>> = (0..deliveries)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| chunk.iter().map(|&i| delivery(i)).collect())
        .collect();
    let started = cpu_time();
    for batch in batches {
        let keys = store.write(batch.clone(), Vec::new()).await.unwrap();
        store.flush().await.unwrap();
        for (key, d) in keys.iter().zip(&batch) {
            store.complete(*key, d).await.unwrap();
        }
    }
    store.flush().await.unwrap();
    let spent = cpu_time() - started;
    drop(store);
    spent.as_secs_f64() * 1e6 / deliveries as f64
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Alternated runs, as the machine's speed drifts.
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            off.push(completion_cost(false, 20_000).await);
            on.push(completion_cost(true, 20_000).await);
        }
        off.sort_by(f64::total_cmp);
        on.sort_by(f64::total_cmp);
        println!(
            "store and complete, CPU per delivery (median of 3): log off {:.1} µs, log on {:.1} µs (+{:.1} µs)\n",
            off[1],
            on[1],
            on[1] - off[1]
        );
        let dir = tempfile::tempdir().unwrap();
        let settings = sled_settings(dir.path(), 16 << 20, true);
        let store = Store::open(&settings).await.unwrap();
        let filling = Instant::now();
        let mut middle = String::new();
        for chunk in (0..DELIVERIES).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<Delivery> = chunk.iter().map(|&i| delivery(i)).collect();
            let keys = store.write(batch.clone(), Vec::new()).await.unwrap();
            for ((key, d), &i) in keys.iter().zip(&batch).zip(chunk) {
                if i % 10 == 0 {
                    store
                        .bury(*key, d.clone(), "HTTP 400".into())
                        .await
                        .unwrap();
                } else {
                    store.complete(*key, d).await.unwrap();
                }
                if i == DELIVERIES / 2 {
                    middle = d.id.clone();
                }
            }
        }
        store.flush().await.unwrap();
        println!(
            "filled {DELIVERIES} deliveries in {:.1} s\n",
            filling.elapsed().as_secs_f64()
        );
        let first = store.deliveries(&Query::default()).await.unwrap();
        let before = first.last().map(|l| l.delivery.id.clone());
        let pages: Vec<(&str, Query)> = vec![
            ("first page (50)", Query::default()),
            (
                "next page (before)",
                Query {
                    before: before.clone(),
                    ..Query::default()
                },
            ),
            (
                "by observer",
                Query {
                    observer: Some("observer-3".into()),
                    ..Query::default()
                },
            ),
            (
                "dead only",
                Query {
                    status: Some(DeliveryStatus::Dead),
                    ..Query::default()
                },
            ),
            (
                "by event id (oldest event: whole log scanned)",
                Query {
                    event: Some("evt-1".into()),
                    ..Query::default()
                },
            ),
            (
                "since 1h, one observer",
                Query {
                    observer: Some("observer-7".into()),
                    since_ms: Some(wasmhook::clock::now_ms() - 3_600_000),
                    ..Query::default()
                },
            ),
        ];
        println!("| page | found | median | max |\n| --- | ---: | ---: | ---: |");
        for (name, query) in pages {
            let mut took = Vec::new();
            let mut found = 0;
            for _ in 0..RUNS {
                let started = Instant::now();
                found = store.deliveries(&query).await.unwrap().len();
                took.push(started.elapsed());
            }
            took.sort();
            println!(
                "| {name} | {found} | {} | {} |",
                ms(took[RUNS / 2]),
                ms(took[RUNS - 1])
            );
        }
        let mut took = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            store.delivery(&middle).await.unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        println!(
            "| one delivery (show) | 1 | {} | {} |",
            ms(took[RUNS / 2]),
            ms(took[RUNS - 1])
        );
        // Opening reads every log segment's frames to rebuild the index.
        drop(store);
        let opening = Instant::now();
        let store = Store::open(&settings).await.unwrap();
        println!(
            "\nreopened with {DELIVERIES} deliveries in the log in {}",
            ms(opening.elapsed())
        );
        drop(store);
    });
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
