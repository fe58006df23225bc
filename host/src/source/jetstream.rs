//! NATS JetStream: a durable pull consumer. A message is acknowledged only
//! after its events' deliveries are in the outbox, so a crash before that
//! means JetStream redelivers it (at least once). Several wasmhook
//! processes using the same consumer name share the stream's work.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::Connected;
use crate::pipeline::{Message, Pipeline};

/// Messages per durable write.
const BATCH: usize = 512;

/// Where to consume from.
#[derive(Debug, Clone, PartialEq)]
pub struct JetStreamConfig {
    /// Server URL.
    pub url: String,
    /// Stream name (created over `subjects` if it does not exist).
    pub stream: String,
    /// Durable consumer name, shared by every wasmhook process of a group.
    pub consumer: String,
    /// Subjects of the stream.
    pub subjects: Vec<String>,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
}

/// Why the JetStream source could not start.
#[derive(Debug, thiserror::Error)]
#[error("JetStream {what}: {message}")]
pub struct JetStreamError {
    what: String,
    message: String,
}

fn failed(what: &str, e: impl std::fmt::Display) -> JetStreamError {
    JetStreamError {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &JetStreamConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), JetStreamError> {
    let client = super::nats::connect(&config.url, Some(connected))
        .await
        .map_err(|e| failed("connect", e))?;
    let context = jetstream::new(client);
    let mut link = super::Link::new(None);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match consume(config, &context, &pipeline, &mut link, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let delay = link.down();
                // A lost server, a deleted stream: keep trying, the messages
                // wait in JetStream.
                error!(error = %e, retry_in = ?delay, "JetStream consumer failed; retrying");
                if super::pause(delay, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

async fn consume(
    config: &JetStreamConfig,
    context: &jetstream::Context,
    pipeline: &Pipeline,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), JetStreamError> {
    let stream = context
        .get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: config.subjects.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| failed(&format!("stream {}", config.stream), e))?;
    let mut consumer = stream
        .get_or_create_consumer(
            &config.consumer,
            pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&format!("consumer {}", config.consumer), e))?;
    let messages = consumer.messages().await.map_err(|e| failed("pull", e))?;
    link.up();
    info!(stream = %config.stream, consumer = %config.consumer, "JetStream source consuming");
    let mut batches = messages.ready_chunks(BATCH);
    let mut lag_tick = tokio::time::interval(super::LAG_INTERVAL);
    loop {
        let batch = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            _ = lag_tick.tick() => None,
            batch = batches.next() => match batch {
                Some(batch) => Some(batch),
                None => return Err(failed("pull", "the message stream ended")),
            },
        };
        let Some(batch) = batch else {
            match consumer.info().await {
                Ok(info) => pipeline.metrics().source_lag(info.num_pending),
                Err(e) => warn!(error = %e, "cannot read the JetStream consumer's pending count"),
            }
            continue;
        };
        let mut received = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(message) => received.push(message),
                Err(e) => warn!(error = %e, "JetStream message error"),
            }
        }
        let input: Vec<Message> = received
            .iter()
            .map(|m| Message {
                source: format!("jetstream:{}", m.subject),
                payload: m.payload.clone(),
                key: m
                    .info()
                    .ok()
                    .map(|info| format!("jetstream:{}:{}", info.stream, info.stream_sequence)),
            })
            .collect();
        match pipeline.ingest_messages(&input).await {
            Ok(_) => {
                for message in &received {
                    if let Err(e) = message.ack().await {
                        // Stored already: a redelivery is a duplicate, never a loss.
                        warn!(error = %e, "JetStream ack failed; the message may be delivered again");
                    }
                }
            }
            Err(e) => {
                error!(error = %e, messages = received.len(), "cannot store JetStream messages; asking for redelivery");
                for message in &received {
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }
    }
}
