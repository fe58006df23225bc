//! Core NATS: subscribes to the configured subjects and feeds messages to
//! the pipeline in batches (whatever has arrived, up to [`BATCH`]), so one
//! disk flush covers many events.
//!
//! Core NATS is at-most-once: messages published while wasmhook is down or
//! disconnected are not redelivered. Use JetStream where that matters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::nats_auth::NatsAuth;
use super::{Connected, Unanswered};
use crate::metrics::Metrics;
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
    auth: &NatsAuth,
    connected: Option<Connected>,
) -> Result<async_nats::Client, NatsError> {
    connect_reporting(
        url,
        auth,
        Events::new(connected, Readiness::OnConnect, None),
    )
    .await
}

/// [`connect`] for a source that reports itself ready once it is bound
/// (a JetStream consumer): the client's connection alone marks nothing
/// ready, while a lost connection marks `connected` down at once.
pub async fn connect_bound(
    url: &str,
    auth: &NatsAuth,
    connected: Connected,
) -> Result<async_nats::Client, NatsError> {
    connect_reporting(
        url,
        auth,
        Events::new(Some(connected), Readiness::Bound, None),
    )
    .await
}

/// The header FraiseQL's CDC sinks (and JetStream deduplication) name a
/// message by.
const MESSAGE_ID: &str = "Nats-Msg-Id";

/// The publisher's id of a message (`Nats-Msg-Id`), when it has one.
pub(crate) fn message_id(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    headers?
        .get(MESSAGE_ID)
        .map(|value| value.as_str().trim().to_string())
        .filter(|id| !id.is_empty())
}

/// [`connect`], with the client's events reported through `events`.
async fn connect_reporting(
    url: &str,
    auth: &NatsAuth,
    events: Events,
) -> Result<async_nats::Client, NatsError> {
    let events = Arc::new(events);
    let options = auth
        .apply(async_nats::ConnectOptions::new())
        .await
        .map_err(|e| NatsError::Connect {
            url: crate::source::redact(url),
            message: e.to_string(),
        })?;
    options
        .name("wasmhook")
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let events = events.clone();
            async move { events.on(event) }
        })
        .connect(url)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// When a connection counts as ready.
enum Readiness {
    /// As soon as the client announces it: nothing is lost by a server
    /// that has not read the rest yet (a publisher, a pull consumer).
    OnConnect,
    /// Once the source has seen the server hold its subscriptions: the
    /// client announces a connection, the first and every reconnection,
    /// before it has sent them, and core NATS drops what arrives before
    /// the subscription it would match. A connection wakes the source
    /// through this, and it reports ready itself.
    Confirmed(Arc<Notify>),
    /// Only by the source, once its consumer is bound; the client's
    /// events only mark it down.
    Bound,
}

/// What the client's events change: `/readyz`, the logs and the count of
/// dropped messages.
struct Events {
    status: Option<Connected>,
    readiness: Readiness,
    /// Counts messages the client dropped (`source_dropped`).
    metrics: Option<Metrics>,
    /// When the last warning about dropped messages was logged (ms since
    /// the epoch): a slow consumer reports every message it drops.
    warned_ms: AtomicU64,
}

/// At most one warning about dropped messages per this many ms.
const DROP_WARNING_EVERY_MS: u64 = 10_000;

impl Events {
    fn new(status: Option<Connected>, readiness: Readiness, metrics: Option<Metrics>) -> Events {
        Events {
            status,
            readiness,
            metrics,
            warned_ms: AtomicU64::new(0),
        }
    }

    fn on(&self, event: async_nats::Event) {
        match event {
            async_nats::Event::Connected => {
                match (&self.readiness, &self.status) {
                    (Readiness::Confirmed(connection), _) => connection.notify_one(),
                    (Readiness::OnConnect, Some(status)) => status.set(true),
                    (Readiness::OnConnect, None) | (Readiness::Bound, _) => {}
                }
                info!("NATS connected");
            }
            async_nats::Event::Disconnected => {
                if let Some(status) = &self.status {
                    status.set(false);
                }
                warn!("NATS disconnected; reconnecting");
            }
            async_nats::Event::SlowConsumer(_) => {
                if let Some(metrics) = &self.metrics {
                    metrics.source_dropped();
                }
                let now = crate::clock::now_ms();
                let last = self.warned_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= DROP_WARNING_EVERY_MS
                    && self
                        .warned_ms
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    warn!(
                        "NATS messages dropped: they arrive faster than wasmhook accepts them and \
                         its subscription buffer is full (a slow consumer); core NATS does not send \
                         them again. wasmhook_source_dropped_total counts them; publish to \
                         JetStream where every event matters"
                    );
                }
            }
            other => info!(event = %other, "NATS"),
        }
    }
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

/// How long one confirmation waits for its echo before it looks again at
/// whether the client is still connected.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Reports the source ready once the server has its subscriptions back
/// after a reconnection. Gives up while the client is not connected: its
/// next connection starts another.
async fn confirm_resubscribed(client: async_nats::Client, connected: Connected) {
    use async_nats::connection::State;
    loop {
        match tokio::time::timeout(CONFIRM_TIMEOUT, subscriptions_reached_server(&client)).await {
            Ok(Ok(())) if client.connection_state() == State::Connected => {
                connected.set(true);
                info!("NATS source subscribed again");
                return;
            }
            Ok(_) => return,
            Err(_) if client.connection_state() != State::Connected => return,
            Err(_) => continue,
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(
    url: &str,
    subjects: &[String],
    auth: &NatsAuth,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NatsError> {
    // The first connection is reported once the subscriptions are in
    // place, and so is every reconnection.
    let connection = Arc::new(Notify::new());
    let events = Events::new(
        Some(connected.clone()),
        Readiness::Confirmed(connection.clone()),
        Some(pipeline.metrics().clone()),
    );
    let client = connect_reporting(url, auth, events).await?;
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
    info!(url = %super::redact(url), ?subjects, "NATS source subscribed");
    let mut messages = futures::stream::select_all(streams).ready_chunks(BATCH);
    let storing = Unanswered::new(pipeline, "NATS messages");
    loop {
        let batch = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            // Also woken by the first connection, already confirmed above:
            // a second confirmation costs one round trip.
            _ = connection.notified() => {
                tokio::spawn(confirm_resubscribed(client.clone(), connected.clone()));
                continue;
            }
            batch = messages.next() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        let batch: Vec<Message> = batch
            .into_iter()
            .map(|m| Message {
                source: format!("nats:{}", m.subject),
                key: message_id(m.headers.as_ref()),
                payload: m.payload,
            })
            .collect();
        if !storing.store(&batch, &mut shutdown).await {
            break;
        }
    }
    storing.finish().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dropped_message_is_counted() {
        let metrics = Metrics::new("wh");
        let events = Events::new(None, Readiness::OnConnect, Some(metrics.clone()));
        for _ in 0..3 {
            events.on(async_nats::Event::SlowConsumer(1));
        }
        let text = metrics.encode(0, 0);
        assert!(
            text.lines().any(|l| l == "wh_source_dropped_total 3"),
            "{text}"
        );
        // One warning for the burst, not one per message.
        assert!(events.warned_ms.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_source_reports_its_connections_itself() {
        let status = Connected::new(false);
        let connection = Arc::new(Notify::new());
        let events = Events::new(
            Some(status.clone()),
            Readiness::Confirmed(connection.clone()),
            None,
        );
        events.on(async_nats::Event::Connected);
        assert!(!status.get(), "ready before the subscriptions were seen");
        status.set(true);
        events.on(async_nats::Event::Disconnected);
        assert!(!status.get());
        events.on(async_nats::Event::Connected);
        assert!(
            !status.get(),
            "ready again before the subscriptions were sent"
        );
        // The source is woken to confirm them (a permit is stored).
        let woken = futures::FutureExt::now_or_never(connection.notified());
        assert!(woken.is_some());
    }

    #[test]
    fn a_bound_source_is_not_ready_by_connecting() {
        let status = Connected::new(false);
        let events = Events::new(Some(status.clone()), Readiness::Bound, None);
        events.on(async_nats::Event::Connected);
        assert!(!status.get(), "ready before the consumer was bound");
        status.set(true);
        events.on(async_nats::Event::Disconnected);
        assert!(!status.get());
    }

    #[test]
    fn the_publishers_message_id_names_a_message() {
        let mut headers = async_nats::HeaderMap::new();
        assert_eq!(message_id(Some(&headers)), None);
        headers.insert("Nats-Msg-Id", "Order:2");
        assert_eq!(message_id(Some(&headers)).as_deref(), Some("Order:2"));
        assert_eq!(message_id(None), None);
    }

    #[test]
    fn a_publisher_is_ready_when_connected() {
        let status = Connected::new(false);
        let events = Events::new(Some(status.clone()), Readiness::OnConnect, None);
        events.on(async_nats::Event::Connected);
        assert!(status.get());
        events.on(async_nats::Event::Disconnected);
        assert!(!status.get());
    }
}
