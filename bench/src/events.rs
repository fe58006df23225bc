//! The events a run publishes, and the publishers for each bus.
//!
//! Every event is a FraiseQL envelope for an order update (README "Events
//! in") whose entity is padded to the scenario's size and carries
//! `sent_ns`, the publish time, so the delivered request can bring it back
//! to the receiver (see [`crate::receiver::SENT_HEADER`]). The publish time is
//! taken just before the event is handed to the bus client, so latency
//! includes the bus.

use std::collections::VecDeque;
use std::ops::Range;
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

/// A connected publisher for one bus. Connecting happens before the clock
/// starts; [`Publisher::send`] publishes a range of event numbers, so a
/// warm-up and the measured run use distinct events.
pub enum Publisher {
    /// `POST /events`, one event per request, from 32 keep-alive
    /// connections at once, the way several application servers would.
    Http {
        client: reqwest::Client,
        url: String,
    },
    /// Core NATS: `publish` buffers, the client writes in the background,
    /// and a flush at the end makes sure everything reached the server.
    Nats {
        client: async_nats::Client,
        subject: String,
    },
    /// JetStream, with up to 1,000 publish acks outstanding, as a producer
    /// that cares about throughput does.
    JetStream {
        context: async_nats::jetstream::Context,
        subject: String,
    },
    /// `XADD key * payload <event>`, pipelined 100 at a time.
    RedisStreams {
        conn: redis::aio::MultiplexedConnection,
        key: String,
    },
    /// Inserts into the application table, 100 rows per statement (one
    /// transaction each), as a busy application's mutations reach the log.
    Postgres {
        client: tokio_postgres::Client,
        insert: tokio_postgres::Statement,
    },
}

impl Publisher {
    /// HTTP ingest at `url` (`http://ADDR/events`).
    pub fn http(url: String) -> Result<Publisher> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Publisher::Http { client, url })
    }

    /// Core NATS.
    pub async fn nats(url: &str, subject: String) -> Result<Publisher> {
        let client = nats_client(url).await?;
        Ok(Publisher::Nats { client, subject })
    }

    /// JetStream (the stream exists: wasmhook creates it before it is ready).
    pub async fn jetstream(url: &str, subject: String) -> Result<Publisher> {
        let context = async_nats::jetstream::new(nats_client(url).await?);
        Ok(Publisher::JetStream { context, subject })
    }

    /// A Redis stream.
    pub async fn redis_streams(url: &str, key: String) -> Result<Publisher> {
        let conn = redis::Client::open(url)
            .context("Redis URL")?
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis")?;
        Ok(Publisher::RedisStreams { conn, key })
    }

    /// The PostgreSQL table [`PG_TABLE`].
    pub async fn postgres(dsn: &str) -> Result<Publisher> {
        let client = pg_connect(dsn).await?;
        let insert = client
            .prepare(&format!(
                "INSERT INTO {PG_TABLE} (id, status, total, currency, customer_name, customer_email, sent_ns, pad)
                 SELECT id, 'shipped', total, 'EUR', 'Ada Lovelace', 'ada@example.com', $3, $4
                 FROM unnest($1::text[], $2::int[]) AS t(id, total)"
            ))
            .await
            .context("preparing the insert")?;
        Ok(Publisher::Postgres { client, insert })
    }

    /// Publishes events `range`, at full speed or one by one at `pace`.
    pub async fn send(&mut self, events: &Events, range: Range<u64>, pace: Pace) -> Result<()> {
        match pace {
            Pace::Flood => self.burst(events, range).await,
            Pace::PerSecond(rate) => {
                let start = tokio::time::Instant::now();
                let first = range.start;
                for i in range {
                    let offset = (i - first) as f64 / f64::from(rate.max(1));
                    tokio::time::sleep_until(start + Duration::from_secs_f64(offset)).await;
                    self.burst(events, i..i + 1).await?;
                }
                Ok(())
            }
        }
    }

    async fn burst(&mut self, events: &Events, range: Range<u64>) -> Result<()> {
        match self {
            Publisher::Http { client, url } => http(client, url, events, range).await,
            Publisher::Nats { client, subject } => {
                for i in range {
                    let payload = Bytes::from(events.envelope(i, now_ns()));
                    client
                        .publish(subject.clone(), payload)
                        .await
                        .context("publishing to NATS")?;
                }
                client.flush().await.context("flushing NATS")
            }
            Publisher::JetStream { context, subject } => {
                let mut pending = VecDeque::new();
                for i in range {
                    let payload = Bytes::from(events.envelope(i, now_ns()));
                    let ack = context
                        .publish(subject.clone(), payload)
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
            Publisher::RedisStreams { conn, key } => {
                for chunk in chunks(range, 100) {
                    let mut pipe = redis::pipe();
                    for i in chunk {
                        pipe.cmd("XADD")
                            .arg(&*key)
                            .arg("*")
                            .arg("payload")
                            .arg(events.envelope(i, now_ns()))
                            .ignore();
                    }
                    pipe.query_async::<()>(conn).await.context("XADD")?;
                }
                Ok(())
            }
            Publisher::Postgres { client, insert } => {
                for chunk in chunks(range, 100) {
                    let ids: Vec<String> = chunk.clone().map(|i| format!("ord-{i}")).collect();
                    let totals: Vec<i32> = chunk.map(|i| 1001 + (i % 9000) as i32).collect();
                    let sent = i64::try_from(now_ns()).unwrap_or(i64::MAX);
                    client
                        .execute(&*insert, &[&ids, &totals, &sent, &events.pad()])
                        .await
                        .context("inserting rows")?;
                }
                Ok(())
            }
        }
    }
}

/// `range` in consecutive pieces of at most `size`.
fn chunks(range: Range<u64>, size: u64) -> impl Iterator<Item = Range<u64>> {
    let end = range.end;
    range
        .step_by(size.max(1) as usize)
        .map(move |start| start..(start + size).min(end))
}

async fn http(
    client: &reqwest::Client,
    url: &str,
    events: &Events,
    range: Range<u64>,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(range.start));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, next, events, url) = (
            client.clone(),
            next.clone(),
            events.clone(),
            url.to_string(),
        );
        let end = range.end;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
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
                    bail!(
                        "POST /events answered {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
            }
        }));
    }
    // Dropping this future (the run gave up) must stop the workers too.
    let _abort = AbortOnDrop(tasks.iter().map(|t| t.abort_handle()).collect());
    for task in tasks {
        task.await.context("ingest task panicked")??;
    }
    Ok(())
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// A NATS connection.
pub async fn nats_client(url: &str) -> Result<async_nats::Client> {
    async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
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
            bail!(
                "POST /events answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range() {
        let all: Vec<_> = chunks(5..255, 100).collect();
        assert_eq!(all, vec![5..105, 105..205, 205..255]);
        assert_eq!(chunks(3..3, 10).count(), 0);
    }

    #[test]
    fn envelopes_are_json_of_the_requested_size() {
        for size in [1024, 65536] {
            let events = Events::new(size);
            let entity = events.entity(123, 456);
            let parsed: serde_json::Value = serde_json::from_str(&entity).unwrap();
            assert_eq!(parsed["sent_ns"], 456);
            assert!(parsed["total"].as_i64().unwrap() > 1000);
            assert!(
                (entity.len() as i64 - size as i64).abs() < 64,
                "{}",
                entity.len()
            );
            let envelope: serde_json::Value = serde_json::from_str(&events.envelope(1, 2)).unwrap();
            assert_eq!(envelope["entity_type"], "Order");
        }
    }
}
