//! The raw ceiling: the receiver hit by the harness itself with pre-built,
//! pre-signed bodies over keep-alive connections, at wasmhook's
//! `max_concurrent`. No bus, no pipeline, no disk: what this machine's
//! loopback HTTP can do, and so the yardstick for every other row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::config::{MAX_CONCURRENT, SECRET};
use crate::events::Events;
use crate::receiver::{now_ns, sign, SENT_HEADER};

/// A body as wasmhook's template scenario renders it, signed.
struct Prepared {
    body: Bytes,
    signature: String,
    timestamp: String,
}

/// What [`crate::config::BODY_TEMPLATE`] renders for order `i`, built by hand: the same
/// fields, the same size.
fn body(events: &Events, i: u64) -> String {
    let sent_ns = now_ns();
    format!(
        r#"{{"event": "Order.UPDATE", "order_id": "ord-{i}", "total": {}, "status": "shipped", "sent_ns": {sent_ns}, "data": {}}}"#,
        1001 + i % 9000,
        events.entity(i, sent_ns)
    )
}

/// The harness's own client: keep-alive connections and a pool of 256
/// bodies built and signed before the clock starts.
pub struct RawClient {
    client: reqwest::Client,
    prepared: Arc<Vec<Prepared>>,
    url: String,
}

impl RawClient {
    /// Prepares bodies for entities like `events`'.
    pub fn new(url: &str, events: &Events) -> Result<RawClient> {
        let timestamp = (now_ns() / 1_000_000_000).to_string();
        let prepared = (0..256)
            .map(|i| {
                let body = body(events, i);
                Prepared {
                    signature: sign(SECRET.as_bytes(), &timestamp, body.as_bytes()),
                    timestamp: timestamp.clone(),
                    body: Bytes::from(body),
                }
            })
            .collect();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(MAX_CONCURRENT)
            .build()
            .context("building the HTTP client")?;
        Ok(RawClient {
            client,
            prepared: Arc::new(prepared),
            url: url.to_string(),
        })
    }

    /// Sends `n` requests from [`MAX_CONCURRENT`] tasks; only the
    /// publish-time header is set per request.
    pub async fn send(&self, n: u64) -> Result<()> {
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(MAX_CONCURRENT);
        for _ in 0..MAX_CONCURRENT {
            let (client, next, prepared, url) = (
                self.client.clone(),
                next.clone(),
                self.prepared.clone(),
                self.url.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let p = &prepared[(i % prepared.len() as u64) as usize];
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-wasmhook-signature", &p.signature)
                        .header("x-wasmhook-timestamp", &p.timestamp)
                        .header(SENT_HEADER, now_ns().to_string())
                        .body(p.body.clone())
                        .send()
                        .await
                        .context("raw POST")?;
                    if !response.status().is_success() {
                        bail!("the receiver answered {}", response.status());
                    }
                }
            }));
        }
        for task in tasks {
            task.await.context("raw client task panicked")??;
        }
        Ok(())
    }
}
