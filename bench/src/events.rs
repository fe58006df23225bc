//! The events a run publishes, and the publishers for each bus.
//!
//! Every event is a FraiseQL envelope for an order update (README "Events
//! in") whose entity is padded to the scenario's size and carries
//! `sent_ns`, the publish time, so the delivered request can bring it back
//! to the receiver (see [`crate::receiver::SENT_HEADER`]). The publish time is
//! taken just before the event is handed to the bus client, so latency
//! includes the bus.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use crate::receiver::now_ns;

/// The table the postgres-log scenario writes to (its rows are the events).
pub const PG_TABLE: &str = "bench_orders";

/// Builds entities of roughly `entity_bytes` bytes of JSON.
#[derive(Clone)]
pub struct Events {
    pad: Arc<str>,
}

impl Events {
    /// The fixed fields take about 190 bytes; `pad` makes up the rest.
    pub fn new(entity_bytes: usize) -> Events {
        let pad = "x".repeat(entity_bytes.saturating_sub(190));
        Events { pad: pad.into() }
    }

    /// The entity (the row) of order `i`. `total` is always over 1,000, so
    /// the scenarios' conditions (`total > 1000`, or the high-value-order
    /// plugin with its default threshold) select every event.
    pub fn entity(&self, i: u64, sent_ns: u64) -> String {
        format!(
            r#"{{"id":"ord-{i}","status":"shipped","total":{total},"currency":"EUR","customer_name":"Ada Lovelace","customer_email":"ada@example.com","sent_ns":{sent_ns},"pad":"{pad}"}}"#,
            total = 1001 + i % 9000,
            pad = self.pad
        )
    }

    /// The FraiseQL envelope of order `i`.
    pub fn envelope(&self, i: u64, sent_ns: u64) -> String {
        format!(
            r#"{{"event":"fraiseql.order.updated","entity_type":"Order","operation":"updated","entity_id":"ord-{i}","timestamp":"2026-03-02T14:00:00Z","entity":{}}}"#,
            self.entity(i, sent_ns)
        )
    }

    /// The padding, for the PostgreSQL rows.
    pub fn pad(&self) -> &str {
        &self.pad
    }
}

/// When events go out: as fast as the bus takes them, or at a fixed rate.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Full speed.
    Flood,
    /// This many events per second, each at its own scheduled time.
    PerSecond(u32),
}

/// Core NATS: `publish` buffers and the client writes in the background;
/// the final flush makes sure everything reached the server.
pub async fn nats(
    client: &async_nats::Client,
    subject: &str,
    events: &Events,
    n: u64,
    pace: Pace,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    for i in 0..n {
        if let Pace::PerSecond(rate) = pace {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due).await;
        }
        let payload = Bytes::from(events.envelope(i, now_ns()));
        client
            .publish(subject.to_string(), payload)
            .await
            .context("publishing to NATS")?;
        if matches!(pace, Pace::PerSecond(_)) {
            // Without this a paced event could sit in the client's buffer.
            client.flush().await.context("flushing NATS")?;
        }
    }
    client.flush().await.context("flushing NATS")?;
    Ok(())
}

/// JetStream: publishes without waiting for each ack, keeping up to 1,000
/// acks outstanding, as a producer that cares about throughput does.
pub async fn jetstream(
    client: &async_nats::Client,
    subject: &str,
    events: &Events,
    n: u64,
) -> Result<()> {
    let js = async_nats::jetstream::new(client.clone());
    let mut pending = VecDeque::new();
    for i in 0..n {
        let payload = Bytes::from(events.envelope(i, now_ns()));
        let ack = js
            .publish(subject.to_string(), payload)
            .await
            .context("publishing to JetStream")?;
        pending.push_back(ack);
        if pending.len() >= 1000 {
            if let Some(ack) = pending.pop_front() {
                ack.await.context("JetStream publish ack")?;
            }
        }
    }
    for ack in pending {
        ack.await.context("JetStream publish ack")?;
    }
    Ok(())
}

/// HTTP ingest: one event per `POST /events`, from 32 keep-alive
/// connections at once, the way many application servers would call it.
pub async fn http(url: &str, events: &Events, n: u64) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, next, events, url) = (client.clone(), next.clone(), events.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(events.envelope(i, now_ns()))
                    .send()
                    .await
                    .context("POST /events")?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    let status = response.status();
                    bail!("POST /events answered {status}: {}", response.text().await.unwrap_or_default());
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("ingest task panicked")??;
    }
    Ok(())
}

/// HTTP ingest in batches (JSON arrays of `batch` events): the quickest way
/// to fill the outbox for the memory scenario.
pub async fn http_batches(url: &str, events: &Events, n: u64, batch: u64) -> Result<()> {
    let client = reqwest::Client::new();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let body = format!(
            "[{}]",
            (i..end)
                .map(|j| events.envelope(j, now_ns()))
                .collect::<Vec<_>>()
                .join(",")
        );
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("POST /events")?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            let status = response.status();
            bail!("POST /events answered {status}: {}", response.text().await.unwrap_or_default());
        }
        i = end;
    }
    Ok(())
}

/// Redis Streams: `XADD key * payload <event>`, pipelined 100 at a time.
pub async fn redis_streams(url: &str, key: &str, events: &Events, n: u64) -> Result<()> {
    let client = redis::Client::open(url).context("Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let mut i = 0;
    while i < n {
        let end = (i + 100).min(n);
        let mut pipe = redis::pipe();
        for j in i..end {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("payload")
                .arg(events.envelope(j, now_ns()))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.context("XADD")?;
        i = end;
    }
    Ok(())
}

/// Connects to PostgreSQL; the connection task runs in the background.
pub async fn pg_connect(dsn: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("wasmhook-bench: PostgreSQL connection: {error}");
        }
    });
    Ok(client)
}

/// The application table whose inserts the postgres-log source turns into
/// events (after `wasmhook pg install --table bench_orders`).
pub async fn pg_create_table(client: &tokio_postgres::Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {PG_TABLE} CASCADE;
             CREATE TABLE {PG_TABLE} (
                 id text PRIMARY KEY, status text NOT NULL, total integer NOT NULL,
                 currency text NOT NULL, customer_name text, customer_email text,
                 sent_ns bigint NOT NULL, pad text NOT NULL)"
        ))
        .await
        .context("creating the bench table")
}

/// PostgreSQL: inserts of 100 rows per statement (one transaction each), as
/// a busy application's mutations would arrive at the log in groups.
pub async fn postgres(client: &tokio_postgres::Client, events: &Events, n: u64) -> Result<()> {
    let statement = client
        .prepare(&format!(
            "INSERT INTO {PG_TABLE} (id, status, total, currency, customer_name, customer_email, sent_ns, pad)
             SELECT id, 'shipped', total, 'EUR', 'Ada Lovelace', 'ada@example.com', $3, $4
             FROM unnest($1::text[], $2::int[]) AS t(id, total)"
        ))
        .await
        .context("preparing the insert")?;
    let mut i = 0;
    while i < n {
        let end = (i + 100).min(n);
        let ids: Vec<String> = (i..end).map(|j| format!("ord-{j}")).collect();
        let totals: Vec<i32> = (i..end).map(|j| 1001 + (j % 9000) as i32).collect();
        let sent = i64::try_from(now_ns()).unwrap_or(i64::MAX);
        client
            .execute(&statement, &[&ids, &totals, &sent, &events.pad()])
            .await
            .context("inserting rows")?;
        i = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_json_of_the_requested_size() {
        for size in [1024, 65536] {
            let events = Events::new(size);
            let entity = events.entity(123, 456);
            let parsed: serde_json::Value = serde_json::from_str(&entity).unwrap();
            assert_eq!(parsed["sent_ns"], 456);
            assert!(parsed["total"].as_i64().unwrap() > 1000);
            assert!((entity.len() as i64 - size as i64).abs() < 64, "{}", entity.len());
            let envelope: serde_json::Value =
                serde_json::from_str(&events.envelope(1, 2)).unwrap();
            assert_eq!(envelope["entity_type"], "Order");
        }
    }
}
