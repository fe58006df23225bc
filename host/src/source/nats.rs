//! Core NATS: subscribes to the configured subjects and feeds messages to
//! the pipeline in batches (whatever has arrived, up to [`BATCH`]), so one
//! disk flush covers many events.
//!
//! Core NATS is at-most-once: messages published while wasmhook is down or
//! disconnected are not redelivered. Use JetStream where that matters.

use futures::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Connected, Unanswered};
use crate::pipeline::{Message, Pipeline};

/// Messages per durable write.
const BATCH: usize = 512;

/// Why the NATS source stopped.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL or options were rejected.
    #[error("NATS connect to {url}: {message}")]
    Connect {
        /// Server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A subscription was refused.
    #[error("NATS subscribe to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        message: String,
    },
}

/// Connects to NATS. The client reconnects by itself, with backoff, for as
/// long as it lives; `retry_on_initial_connect` extends that to a server
/// that is not up yet. `connected` follows the connection for `/readyz`.
pub async fn connect(
    url: &str,
    connected: Option<Connected>,
) -> Result<async_nats::Client, NatsError> {
    async_nats::ConnectOptions::new()
        .name("wasmhook")
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let status = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        if let Some(status) = &status {
                            status.set(true);
                        }
                        info!("NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        if let Some(status) = &status {
                            status.set(false);
                        }
                        warn!("NATS disconnected; reconnecting");
                    }
                    other => info!(event = %other, "NATS"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// Runs until `shutdown` turns true.
pub async fn run(
    url: &str,
    subjects: &[String],
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let client = connect(url, Some(connected)).await?;
    let mut streams = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let subscriber =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| NatsError::Subscribe {
                    subject: subject.clone(),
                    message: e.to_string(),
                })?;
        streams.push(subscriber);
    }
    info!(url = %crate::config::redact(url), ?subjects, "NATS source subscribed");
    let mut messages = futures::stream::select_all(streams).ready_chunks(BATCH);
    let storing = Unanswered::new(pipeline, "NATS messages");
    loop {
        let batch = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            batch = messages.next() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        let batch: Vec<Message> = batch
            .into_iter()
            .map(|m| Message {
                source: format!("nats:{}", m.subject),
                payload: m.payload,
                key: None,
            })
            .collect();
        if !storing.store(&batch, &mut shutdown).await {
            break;
        }
    }
    storing.finish().await;
    Ok(())
}
