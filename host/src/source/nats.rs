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
    connect_reporting(url, connected, false).await
}

/// [`connect`]; with `caller_reports_first`, the first connection is left
/// for the caller to report, once it is of use. Disconnections and later
/// connections are always reported.
async fn connect_reporting(
    url: &str,
    status: Option<Connected>,
    caller_reports_first: bool,
) -> Result<async_nats::Client, NatsError> {
    let reports = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(!caller_reports_first));
    async_nats::ConnectOptions::new()
        .name("wasmhook")
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let status = status.clone();
            let reports = reports.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        if let Some(status) = &status {
                            if reports.swap(true, std::sync::atomic::Ordering::Relaxed) {
                                status.set(true);
                            }
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

/// Returns once the server has every subscription this client sent so
/// far: a message the client publishes to its own inbox comes back only
/// after the server read what came before it on the connection.
/// `Client::flush` only empties the client's socket, and core NATS drops a
/// message that arrives before the subscription it would match, so without
/// this `/readyz` said ready while the first events could still be lost.
async fn subscriptions_reached_server(
    client: &async_nats::Client,
) -> Result<(), async_nats::SubscribeError> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await?;
    // A publish that fails here has the client closed; the loop in `run`
    // stops on its own then.
    let _ = client.publish(inbox, bytes::Bytes::new()).await;
    echo.next().await;
    let _ = echo.unsubscribe().await;
    Ok(())
}

/// Runs until `shutdown` turns true.
pub async fn run(
    url: &str,
    subjects: &[String],
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NatsError> {
    // The first connection is reported once the subscriptions are in place.
    let client = connect_reporting(url, Some(connected.clone()), true).await?;
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
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        confirmed = subscriptions_reached_server(&client) => {
            confirmed.map_err(|e| NatsError::Subscribe {
                subject: subjects.join(", "),
                message: e.to_string(),
            })?;
        }
    }
    connected.set(true);
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
