//! Sources: where events come from. Each bus is one file; all of them hand
//! raw messages to [`crate::pipeline::Pipeline`], which parses envelopes
//! (`envelope`) and stores the resulting deliveries before a source may
//! acknowledge anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

use crate::config::SourceConfig;
use crate::pipeline::Pipeline;

pub mod envelope;
pub mod http;
pub mod jetstream;
pub mod nats;
pub mod postgres;
pub mod postgres_log;
pub mod redis;
pub mod redis_streams;

/// Whether the source is connected to its bus, for `/readyz`. The embedded
/// HTTP source is always connected.
#[derive(Clone, Debug)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    /// Starts as `initially`.
    pub fn new(initially: bool) -> Connected {
        Connected(Arc::new(AtomicBool::new(initially)))
    }

    /// Records a connection change.
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }

    /// The last state recorded.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How often durable sources ask their bus how far behind they are.
pub(crate) const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// A bus connection as every source tracks it: whether it is up (for
/// `/readyz`) and how long to wait before the next reconnect (doubling from
/// 200 ms to 5 s, back to the start once a connection works again).
#[derive(Debug)]
pub(crate) struct Link {
    connected: Option<Connected>,
    next: Duration,
}

impl Link {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);

    /// `connected` is `None` where the client reports its state itself.
    pub(crate) fn new(connected: Option<Connected>) -> Link {
        Link {
            connected,
            next: Self::FIRST,
        }
    }

    /// A session is connected and consuming.
    pub(crate) fn up(&mut self) {
        if let Some(connected) = &self.connected {
            connected.set(true);
        }
        self.next = Self::FIRST;
    }

    /// A session failed: marks the link down; returns the delay before the
    /// next attempt (log it, then [`pause`]).
    pub(crate) fn down(&mut self) -> Duration {
        if let Some(connected) = &self.connected {
            connected.set(false);
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }
}

/// Sleeps `delay`; true if shutdown was asked for meanwhile.
pub(crate) async fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Starts the configured source; `None` for the embedded HTTP endpoint,
/// which the server carries. A source never ends the process: it logs and
/// reconnects, and only a configuration it cannot use stops it.
pub fn spawn(
    config: &SourceConfig,
    pipeline: Pipeline,
    connected: Connected,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let config = config.clone();
    let backend = config.backend();
    let task = async move {
        let result = match &config {
            SourceConfig::Http => return,
            SourceConfig::Nats { url, subjects } => {
                nats::run(url, subjects, pipeline, connected, stop)
                    .await
                    .map_err(|e| e.to_string())
            }
            SourceConfig::JetStream(c) => jetstream::run(c, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
            SourceConfig::Redis(c) => redis::run(c, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
            SourceConfig::RedisStreams(c) => redis_streams::run(c, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
            SourceConfig::Postgres(c) => postgres::run(c, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
            SourceConfig::PostgresLog(c) => postgres_log::run(c, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            error!(backend, error = %e, "source stopped");
        }
    };
    (backend != "http").then(|| tokio::spawn(task))
}
