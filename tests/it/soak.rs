//! Soak: a steady stream through a flapping receiver for a while, sampling
//! wasmhook's RSS, open file descriptors and database size; every event
//! must arrive and none of the three may keep growing after warm-up.
//!
//! CI runs 60 s at 500 events/s on the test build. The recorded run
//! (docs/RELIABILITY.md) is
//! `SOAK_SECS=1800 SOAK_RATE=2000 WASMHOOK_BIN=target/release/wasmhook cargo test -p wasmhook --test it soak -- --nocapture`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::utils::{free_port, wait_for_port};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Keeps only the ids it saw (a long run sends millions of requests).
#[derive(Clone, Default)]
struct Counter {
    ids: Arc<Mutex<HashSet<u64>>>,
    up: Arc<AtomicBool>,
}

async fn counting_receiver() -> (String, Counter) {
    let counter = Counter::default();
    counter.up.store(true, Ordering::SeqCst);
    let state = counter.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let state = state.clone();
        async move {
            if !state.up.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
                if let Some(id) = value["id"].as_u64() {
                    state.ids.lock().unwrap().insert(id);
                }
            }
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/soak", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, counter)
}

struct Sample {
    at: Duration,
    rss_kb: u64,
    fds: usize,
    db_bytes: u64,
    delivered: usize,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_steady_stream_through_a_flapping_receiver_stays_flat() {
    let secs = env_u64("SOAK_SECS", 60);
    let rate = env_u64("SOAK_RATE", 500);
    let binary = std::env::var("WASMHOOK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::utils::binary());
    let (url, counter) = counting_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db\"\nmin_free_mb = 16\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 32\n\
             [webhooks.retry]\nmax_attempts = 1000\ninitial_delay = \"200ms\"\nmax_delay = \"1s\"\n\
             [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{url}\"\n\
             body = {{ id = \"{{{{ id }}}}\", total = \"{{{{ total }}}}\" }}\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_port(port, Duration::from_secs(15)).await.unwrap();
    let ingest = format!("http://127.0.0.1:{port}/events");
    let client = reqwest::Client::new();

    // Batches every 50 ms; the receiver is down 2 s of every 7.
    let started = Instant::now();
    let per_batch = (rate / 20).max(1);
    let mut next_id = 0u64;
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let phase = started.elapsed().as_millis() % 7000;
        counter.up.store(phase < 5000, Ordering::SeqCst);
        let body: String = (next_id..next_id + per_batch)
            .map(|id| {
                format!("{{\"entity\":\"order\",\"op\":\"INSERT\",\"data\":{{\"id\":{id},\"total\":{id}}}}}\n")
            })
            .collect();
        let status = client
            .post(&ingest)
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202, "ingest refused a batch");
        next_id += per_batch;
        if last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            samples.push(Sample {
                at: started.elapsed(),
                rss_kb: rss_kb(pid),
                fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
                db_bytes: dir_bytes(&dir.path().join("db")),
                delivered: counter.ids.lock().unwrap().len(),
            });
        }
    }
    counter.up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (counter.ids.lock().unwrap().len() as u64) < next_id {
        assert!(
            Instant::now() < deadline,
            "{} of {next_id} delivered",
            counter.ids.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    eprintln!("soak: {secs} s at {rate}/s, {next_id} events, all delivered");
    eprintln!("| t (s) | RSS MB | fds | db MB | delivered |");
    for s in &samples {
        eprintln!(
            "| {} | {:.1} | {} | {:.1} | {} |",
            s.at.as_secs(),
            s.rss_kb as f64 / 1024.0,
            s.fds,
            s.db_bytes as f64 / 1e6,
            s.delivered
        );
    }
    // Flat after warm-up: the last third against the first third after the
    // first 10 s, with room for the receiver's flapping backlog.
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= Duration::from_secs(10))
        .collect();
    assert!(warm.len() >= 3, "too short to judge");
    let third = warm.len() / 3;
    let early = &warm[..third.max(1)];
    let late = &warm[warm.len() - third.max(1)..];
    let max = |v: &[&Sample], f: fn(&Sample) -> u64| v.iter().map(|s| f(s)).max().unwrap_or(0);
    let rss_early = max(early, |s| s.rss_kb);
    let rss_late = max(late, |s| s.rss_kb);
    assert!(
        rss_late <= rss_early + rss_early / 2 + 32 * 1024,
        "RSS grew: {rss_early} kB -> {rss_late} kB"
    );
    let fds_early = max(early, |s| s.fds as u64);
    let fds_late = max(late, |s| s.fds as u64);
    assert!(
        fds_late <= fds_early + 16,
        "fds grew: {fds_early} -> {fds_late}"
    );
    let db_early = max(early, |s| s.db_bytes);
    let db_late = max(late, |s| s.db_bytes);
    assert!(
        db_late <= db_early * 3 + 64 * 1024 * 1024,
        "database grew: {db_early} -> {db_late} bytes"
    );
}
