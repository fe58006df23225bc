//! Redis Streams: a consumer group. Entries are read with `XREADGROUP` and
//! acknowledged with `XACK` only after their deliveries are in the outbox,
//! so a crash before that leaves them pending. On start a consumer first
//! re-reads its own pending entries; entries left pending by a consumer
//! that died are claimed (`XAUTOCLAIM`) once idle for `claim_idle`. Several
//! wasmhook processes in one group share the stream's work.
//!
//! A new group starts at the beginning of the stream, as a JetStream
//! consumer does: events written before wasmhook first ran are delivered.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::Connected;
use crate::pipeline::{Message, Pipeline};

/// How long one `XREADGROUP` waits for new entries; also how often the
/// loop looks at shutdown and at entries to claim.
const BLOCK: Duration = Duration::from_millis(1000);

/// `[observers] backend = "redis-streams"`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamsConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// Stream key.
    pub stream: String,
    /// Consumer group, shared by every wasmhook process of a deployment.
    pub group: String,
    /// This process's name in the group: stable across its restarts, so it
    /// picks up its own pending entries at once.
    pub consumer: String,
    /// The entry field holding the event JSON.
    pub field: String,
    /// How long an entry stays pending before another consumer claims it.
    pub claim_idle: Duration,
    /// Entries per read, and so per durable write.
    pub batch_size: usize,
    /// `[observers] tls`: a private CA and a client certificate.
    pub tls: crate::tls::TlsFiles,
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &StreamsConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), super::redis::RedisError> {
    let client = super::redis::client(&config.url, &config.tls)?;
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "Redis Streams consumer failed; reconnecting",
            at: super::At::Stream(&config.stream),
            hint: super::no_hint,
        },
        &(config, &client, &pipeline),
        |&(config, client, pipeline), link, shutdown| {
            Box::pin(consume(config, client, pipeline, link, shutdown))
        },
    )
    .await;
    Ok(())
}

async fn consume(
    config: &StreamsConfig,
    client: &redis::Client,
    pipeline: &Pipeline,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), redis::RedisError> {
    let options = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(BLOCK + Duration::from_secs(10));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&options)
        .await?;
    create_group(&mut conn, config).await?;
    link.up();
    info!(stream = %config.stream, group = %config.group, consumer = %config.consumer, "Redis Streams source consuming");

    // Our own pending entries first: they were read before a restart and
    // never acknowledged.
    loop {
        let entries = read(&mut conn, config, "0", None).await?;
        if entries.is_empty() {
            break;
        }
        store_and_ack(&mut conn, config, pipeline, entries, shutdown).await?;
    }
    let mut last_claim = Instant::now();
    let mut last_lag: Option<Instant> = None;
    let mut claim_from = "0-0".to_string();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if last_lag.is_none_or(|at| at.elapsed() >= super::LAG_INTERVAL) {
            last_lag = Some(Instant::now());
            report_lag(&mut conn, config, pipeline).await?;
        }
        if last_claim.elapsed() >= config.claim_idle / 2 {
            last_claim = Instant::now();
            let (next, claimed) = claim(&mut conn, config, &claim_from).await?;
            claim_from = next;
            if !claimed.is_empty() {
                info!(entries = claimed.len(), stream = %config.stream, "claimed entries left pending by another consumer");
                store_and_ack(&mut conn, config, pipeline, claimed, shutdown).await?;
            }
        }
        let entries = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            entries = read(&mut conn, config, ">", Some(BLOCK)) => entries?,
        };
        if !entries.is_empty() {
            store_and_ack(&mut conn, config, pipeline, entries, shutdown).await?;
        }
    }
}

/// `XINFO GROUPS`: the group's lag (Redis 7), for the metric.
async fn report_lag(
    conn: &mut MultiplexedConnection,
    config: &StreamsConfig,
    pipeline: &Pipeline,
) -> Result<(), redis::RedisError> {
    let info: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(&config.stream).await?;
    if let Some(lag) = info
        .groups
        .iter()
        .find(|g| g.name == config.group)
        .and_then(|g| g.lag)
    {
        pipeline.metrics().source_lag(lag as u64);
    }
    Ok(())
}

/// `XGROUP CREATE … 0 MKSTREAM`, accepting a group that already exists.
async fn create_group(
    conn: &mut MultiplexedConnection,
    config: &StreamsConfig,
) -> Result<(), redis::RedisError> {
    let created: Result<(), redis::RedisError> = conn
        .xgroup_create_mkstream(&config.stream, &config.group, "0")
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

async fn read(
    conn: &mut MultiplexedConnection,
    config: &StreamsConfig,
    from: &str,
    block: Option<Duration>,
) -> Result<Vec<StreamId>, redis::RedisError> {
    let mut options = StreamReadOptions::default()
        .group(&config.group, &config.consumer)
        .count(config.batch_size);
    if let Some(block) = block {
        options = options.block(block.as_millis() as usize);
    }
    let reply: Option<StreamReadReply> = conn
        .xread_options(&[&config.stream], &[from], &options)
        .await?;
    Ok(reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
        .unwrap_or_default())
}

/// One `XAUTOCLAIM` step; returns where the next one starts.
async fn claim(
    conn: &mut MultiplexedConnection,
    config: &StreamsConfig,
    from: &str,
) -> Result<(String, Vec<StreamId>), redis::RedisError> {
    let reply: redis::streams::StreamAutoClaimReply = conn
        .xautoclaim_options(
            &config.stream,
            &config.group,
            &config.consumer,
            config.claim_idle.as_millis() as u64,
            from,
            StreamAutoClaimOptions::default().count(config.batch_size),
        )
        .await?;
    if !reply.deleted_ids.is_empty() {
        // Trimmed away while pending: nothing left to deliver; stop them
        // coming back.
        warn!(entries = reply.deleted_ids.len(), stream = %config.stream, "pending entries were deleted from the stream before delivery");
        let _: usize = conn
            .xack(&config.stream, &config.group, &reply.deleted_ids)
            .await?;
    }
    Ok((reply.next_stream_id, reply.claimed))
}

/// The event JSON of an entry: its `field`; an entry without it becomes a
/// DLQ entry naming the fields it has.
fn message(config: &StreamsConfig, entry: &StreamId) -> Message {
    let source = format!("redis-streams:{}", config.stream);
    let key = Some(format!("{source}:{}", entry.id));
    let payload = match entry.map.get(&config.field) {
        Some(redis::Value::BulkString(bytes)) => bytes::Bytes::copy_from_slice(bytes),
        Some(redis::Value::SimpleString(text)) => bytes::Bytes::copy_from_slice(text.as_bytes()),
        _ => {
            let mut fields: Vec<&str> = entry.map.keys().map(String::as_str).collect();
            fields.sort_unstable();
            // Not JSON, so the pipeline moves it to the DLQ with this text
            // in the reason.
            bytes::Bytes::from(format!(
                "stream entry {} has no field {:?} (fields: {})",
                entry.id,
                config.field,
                fields.join(", ")
            ))
        }
    };
    Message {
        source,
        payload,
        key,
    }
}

/// Stores the entries' deliveries, then acknowledges them. Storage failures
/// leave them pending and are retried here: Redis will not hand them to us
/// again unless claimed.
async fn store_and_ack(
    conn: &mut MultiplexedConnection,
    config: &StreamsConfig,
    pipeline: &Pipeline,
    entries: Vec<StreamId>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), redis::RedisError> {
    let messages: Vec<Message> = entries.iter().map(|e| message(config, e)).collect();
    let mut delay = Duration::from_millis(100);
    while let Err(e) = pipeline.ingest_messages(&messages).await {
        error!(error = %e, entries = messages.len(), "cannot store Redis Streams entries; retrying");
        if *shutdown.borrow() {
            // Left pending: this consumer re-reads them on its next start.
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let _: usize = conn.xack(&config.stream, &config.group, &ids).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StreamsConfig {
        StreamsConfig {
            url: "redis://127.0.0.1:6379".into(),
            stream: "events".into(),
            group: "wasmhook".into(),
            consumer: "c1".into(),
            field: "payload".into(),
            claim_idle: Duration::from_secs(30),
            batch_size: 10,
            tls: Default::default(),
        }
    }

    #[test]
    fn the_entry_id_keys_the_message() {
        let entry = StreamId {
            id: "1700000000000-3".into(),
            map: [(
                "payload".to_string(),
                redis::Value::BulkString(b"{\"a\":1}".to_vec()),
            )]
            .into(),
        };
        let m = message(&config(), &entry);
        assert_eq!(m.payload.as_ref(), b"{\"a\":1}");
        assert_eq!(
            m.key.as_deref(),
            Some("redis-streams:events:1700000000000-3")
        );
    }

    #[test]
    fn an_entry_without_the_field_names_what_it_has() {
        let entry = StreamId {
            id: "1-0".into(),
            map: [("data".to_string(), redis::Value::BulkString(b"{}".to_vec()))].into(),
        };
        let m = message(&config(), &entry);
        let text = String::from_utf8(m.payload.to_vec()).unwrap();
        assert!(
            text.contains("no field \"payload\" (fields: data)"),
            "{text}"
        );
    }
}
