//! NATS JetStream: a durable pull consumer. A message is acknowledged only
//! after its events' deliveries are in the outbox, so a crash before that
//! means JetStream redelivers it (at least once). Several wasmhook
//! processes using the same consumer name share the stream's work.
//!
//! The stream is found before it is made: the configured one if it exists,
//! else the one that already holds the configured subjects (FraiseQL creates
//! `fraiseql_events` over `fraiseql.mutation.>`, and JetStream refuses a
//! second stream over overlapping subjects), else wasmhook creates it. The
//! consumer is always wasmhook's own, so FraiseQL's workers keep theirs.

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
    /// Whether `subjects` were configured (rather than defaults): only then
    /// does the consumer filter a stream it binds to by them.
    pub subjects_configured: bool,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Credentials and TLS.
    pub auth: super::nats_auth::NatsAuth,
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
    // Ready only once the stream and the consumer are bound (`Link::up`),
    // not when the connection is: a stream that cannot be bound consumes
    // nothing. A lost connection still marks it down at once.
    let client = super::nats::connect_bound(&config.url, &config.auth, connected.clone())
        .await
        .map_err(|e| failed("connect", e))?;
    let context = jetstream::new(client);
    // A lost server, a deleted stream: keep trying, the messages wait in
    // JetStream.
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "JetStream consumer failed; retrying",
            at: super::At::Bus,
            hint: super::no_hint,
        },
        &(config, &context, &pipeline),
        |&(config, context, pipeline), link, shutdown| {
            Box::pin(consume(config, context, pipeline, link, shutdown))
        },
    )
    .await;
    Ok(())
}

async fn consume(
    config: &JetStreamConfig,
    context: &jetstream::Context,
    pipeline: &Pipeline,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), JetStreamError> {
    let stream = bind_stream(config, context).await?;
    let name = stream.cached_info().config.name.clone();
    let held = stream.cached_info().config.subjects.clone();
    // A stream bound by its subjects may hold more than wasmhook was asked
    // for; the consumer then takes only the configured subjects.
    let filter_subjects = if config.subjects_configured && held != config.subjects {
        config.subjects.clone()
    } else {
        Vec::new()
    };
    let mut consumer = stream
        .get_or_create_consumer(
            &config.consumer,
            pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: 10_000,
                filter_subjects,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&format!("consumer {} on stream {name}", config.consumer), e))?;
    let messages = consumer.messages().await.map_err(|e| failed("pull", e))?;
    link.up();
    info!(stream = %name, subjects = ?held, consumer = %config.consumer, "JetStream source consuming");
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
                Ok(info) => {
                    pipeline.metrics().source_lag(info.num_pending);
                    // After a reconnection the consumer answering again is
                    // what makes the source ready.
                    link.up();
                }
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
                // The publisher's id (FraiseQL's CDC sinks send
                // `object_type:seq`) names the message across republishing;
                // else its place in the stream does.
                key: super::nats::message_id(m.headers.as_ref()).or_else(|| {
                    m.info()
                        .ok()
                        .map(|info| format!("jetstream:{}:{}", info.stream, info.stream_sequence))
                }),
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

/// The stream to consume: the configured one if it exists, else the one
/// that already holds the configured subjects, else a new one.
async fn bind_stream(
    config: &JetStreamConfig,
    context: &jetstream::Context,
) -> Result<jetstream::stream::Stream, JetStreamError> {
    if let Ok(stream) = context.get_stream(&config.stream).await {
        return Ok(stream);
    }
    let mut holders: Vec<(&str, Option<String>)> = Vec::new();
    for subject in &config.subjects {
        let holder = context.stream_by_subject(subject.as_str()).await.ok();
        holders.push((subject, holder));
    }
    let mut names: Vec<&str> = holders.iter().filter_map(|(_, h)| h.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let unheld: Vec<&str> = holders
        .iter()
        .filter(|(_, h)| h.is_none())
        .map(|(subject, _)| *subject)
        .collect();
    match (names.as_slice(), unheld.is_empty()) {
        ([], _) => context
            .create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: config.subjects.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&format!("create stream {}", config.stream), e)),
        ([name], true) => {
            info!(stream = %name, subjects = ?config.subjects, "binding to the stream that already holds the subjects");
            context
                .get_stream(name)
                .await
                .map_err(|e| failed(&format!("stream {name}"), e))
        }
        (held_by, _) => Err(failed(
            "stream",
            format!(
                "stream {} does not exist and cannot be created: JetStream refuses streams over \
                 overlapping subjects, and stream(s) {} already hold some of {:?}{}; set \
                 observers.stream to the stream to read and observers.subjects to what it holds",
                config.stream,
                held_by.join(", "),
                config.subjects,
                if unheld.is_empty() {
                    String::new()
                } else {
                    format!(" (none holds {})", unheld.join(", "))
                }
            ),
        )),
    }
}
