//! What the delivery controls cost the unthrottled path: the whole pipeline
//! (HTTP ingest -> outbox -> dispatcher -> HTTP to a loopback receiver),
//! once with no controls configured and once with a rate limit that never
//! binds and batching on another webhook, alternating in the same run.
//!
//! `cargo bench --bench controls` prints a table; the target (issue 5) is
//! at most 5% slower with the controls on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::sync::{oneshot, Notify};

const EVENTS: usize = 5_000;
const ROUNDS: usize = 5;

struct Receiver {
    url: String,
    count: Arc<AtomicUsize>,
    reached: Arc<Notify>,
}

async fn receiver() -> Receiver {
    let count = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(Notify::new());
    let (c, r) = (count.clone(), reached.clone());
    let app = Router::new().fallback(move || {
        let (c, r) = (c.clone(), r.clone());
        async move {
            if c.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
                r.notify_one();
            }
            ""
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        count,
        reached,
    }
}

/// Deliveries per second for one run of `controls` (extra TOML).
async fn run_once(controls: &str) -> f64 {
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[storage]\npath = {:?}\n[webhooks]\nmax_concurrent = 32\nallowed_networks = [\"127.0.0.0/8\"]\n{controls}\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nbody = {{ id = \"{{{{ id }}}}\", total = \"{{{{ total }}}}\" }}\n",
        dir.path().join("db").display().to_string(),
        receiver.url
    );
    let config =
        wasmhook::config::Config::from_toml(&text, std::path::Path::new("bench.toml"), &|_| None)
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest = format!("http://{}/events", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(wasmhook::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let body: String = (0..EVENTS)
        .map(|i| {
            format!(
                "{{\"entity_type\":\"order\",\"operation\":\"created\",\"entity\":{{\"id\":{i},\"total\":{i}}}}}\n"
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let waiting = receiver.reached.notified();
    let response = client.post(&ingest).body(body).send().await.unwrap();
    assert_eq!(response.status(), 202);
    tokio::time::timeout(Duration::from_secs(120), waiting)
        .await
        .expect("every delivery arrives");
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    assert_eq!(receiver.count.load(Ordering::Relaxed), EVENTS);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    rate
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A limit that never binds, a breaker that never opens, batching on a
    // webhook these events do not reach: the machinery runs, nothing waits.
    let on = "[webhooks.rate_limiting]\nmax_per_second = 1000000\nburst = 1000000\n\
              [webhooks.circuit_breaker]\nfailure_threshold = 5\n\
              [[observer]]\nname = \"batched\"\nentity = \"invoice\"\n\
              [[observer.webhook]]\nurl = \"http://127.0.0.1:9/\"\nbatch = { size = 50, timeout = \"1s\" }";
    let (mut off_rates, mut on_rates) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        run_once("").await; // warm-up
        for _ in 0..ROUNDS {
            off_rates.push(run_once("").await);
            on_rates.push(run_once(on).await);
        }
    });
    let (off, on) = (median(off_rates), median(on_rates));
    let cost = (off - on) / off * 100.0;
    println!("| path | deliveries/s (median of {ROUNDS}) |");
    println!("| --- | --- |");
    println!("| no controls | {off:.0} |");
    println!("| rate limit + breaker + batching configured, not binding | {on:.0} |");
    println!(
        "cost of the controls: {cost:.1}% (target <= 5%: {})",
        if cost <= 5.0 { "met" } else { "missed" }
    );
}
