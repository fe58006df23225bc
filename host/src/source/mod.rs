//! Sources: where events come from. Each bus is one file; all of them hand
//! raw messages to [`crate::pipeline::Pipeline`], which parses envelopes
//! (`envelope`) and stores the resulting deliveries before a source may
//! acknowledge anything.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use self::fraiseql_changelog::ChangelogConfig;
use self::jetstream::JetStreamConfig;
use self::postgres::ListenConfig;
use self::postgres_log::LogConfig;
use self::redis::PubSubConfig;
use self::redis_streams::StreamsConfig;
use crate::pipeline::{Message, Pipeline};

pub mod envelope;
pub mod fraiseql_changelog;
pub mod http;
pub mod jetstream;
pub mod nats;
pub mod nats_auth;
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
    /// next attempt (log it, then [`pause`]; [`reconnecting`] does both).
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

/// Where a source reads, logged beside a lost session's error (a field of
/// the log line, so logs can be filtered by it).
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    /// The bus alone says it.
    Bus,
    /// A PostgreSQL `LISTEN` channel.
    Channel(&'a str),
    /// A Redis stream.
    Stream(&'a str),
    /// A PostgreSQL table.
    Table(&'a (dyn fmt::Display + Sync)),
}

/// What a source logs when a session is lost.
pub(crate) struct Lost<'a, E> {
    /// The log message, e.g. "Redis subscription lost; reconnecting".
    pub(crate) message: &'static str,
    /// Where the source reads.
    pub(crate) at: At<'a>,
    /// Advice appended to the error text, e.g. which table is missing.
    pub(crate) hint: fn(&E) -> &'static str,
}

/// For sources whose errors need no advice.
pub(crate) fn no_hint<E>(_: &E) -> &'static str {
    ""
}

/// The reconnect loop every durable and pub/sub source runs: `session`
/// until it ends cleanly or shutdown is asked for. After each failed
/// session the link goes down, `lost` is logged with the error, and the next
/// session waits out the link's backoff.
///
/// The session gets what it reads with (`env`: its config, client,
/// pipeline) as an argument rather than capturing it, so that the boxed
/// future it returns may borrow both that and the link for as long as the
/// session runs: a closure's own captures cannot be lent to the future it
/// returns, and an async closure's future cannot be proven `Send` for the
/// spawn.
pub(crate) async fn reconnecting<C: Sync + ?Sized, E: fmt::Display>(
    mut link: Link,
    shutdown: &mut watch::Receiver<bool>,
    lost: Lost<'_, E>,
    env: &C,
    mut session: impl for<'s> FnMut(
        &'s C,
        &'s mut Link,
        &'s mut watch::Receiver<bool>,
    ) -> BoxFuture<'s, Result<(), E>>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Err(e) = session(env, &mut link, shutdown).await else {
            return;
        };
        let delay = link.down();
        let error = format!("{e}{}", (lost.hint)(&e));
        let message = lost.message;
        match lost.at {
            At::Bus => error!(error = %error, retry_in = ?delay, "{message}"),
            At::Channel(channel) => {
                error!(error = %error, retry_in = ?delay, channel = %channel, "{message}")
            }
            At::Stream(stream) => {
                error!(error = %error, retry_in = ?delay, stream = %stream, "{message}")
            }
            At::Table(table) => {
                error!(error = %error, retry_in = ?delay, table = %table, "{message}")
            }
        }
        if pause(delay, shutdown).await {
            return;
        }
    }
}

/// Messages from one source's bus that may wait for the disk at once (see
/// [`Unanswered`]). Counted in messages, not batches: at a low rate every
/// message is a batch of its own, and an `fsync` that takes 40 ms on a busy
/// disk is 40 batches at 1,000 messages/s.
const UNFLUSHED: u32 = 8192;

/// Stores the messages of a bus that is never answered and never sends a
/// message again: core NATS, Redis pub/sub, PostgreSQL `LISTEN`.
///
/// Nobody waits for an acknowledgement, so a batch's wait for the disk
/// overlaps the next batches (up to [`UNFLUSHED`] messages): a stalled
/// `fsync` (tens of milliseconds on a busy disk) then holds back neither the
/// next events nor their deliveries, which start before their flush (see
/// `Store::write`). Storage failures are retried with backoff, never
/// dropped: the messages exist nowhere else.
pub(crate) struct Unanswered {
    pipeline: Pipeline,
    /// The bus, for the logs ("NATS messages").
    what: &'static str,
    flushing: Arc<Semaphore>,
}

impl Unanswered {
    pub(crate) fn new(pipeline: Pipeline, what: &'static str) -> Unanswered {
        Unanswered {
            pipeline,
            what,
            flushing: Arc::new(Semaphore::new(UNFLUSHED as usize)),
        }
    }

    /// Stores one batch, retrying storage failures until they pass; false
    /// if shutdown came first (the batch is then lost, and logged so).
    pub(crate) async fn store(
        &self,
        batch: &[Message],
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        // A batch is never larger than a source's BATCH (512), far below.
        let size = u32::try_from(batch.len())
            .unwrap_or(UNFLUSHED)
            .min(UNFLUSHED);
        let Ok(permit) = self.flushing.clone().acquire_many_owned(size).await else {
            // Never closed.
            return false;
        };
        let what = self.what;
        let mut delay = Duration::from_millis(100);
        let staged = loop {
            match self.pipeline.stage_messages(batch).await {
                Ok(staged) => break staged,
                Err(e) => {
                    error!(error = %e, messages = batch.len(), "cannot store {what}; retrying");
                    if pause(delay, shutdown).await {
                        warn!(
                            messages = batch.len(),
                            "shutting down with {what} not stored; they are lost"
                        );
                        return false;
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if !staged.stored {
            // Events that matched nothing: no write to wait for.
            return true;
        }
        let store = self.pipeline.store().clone();
        tokio::spawn(async move {
            // sled fails a flush only when its log cannot be written; the
            // next batch's write then fails too and is retried above.
            if let Err(e) = store.flush().await {
                error!(error = %e, "cannot flush {what} to disk");
            }
            drop(permit);
        });
        true
    }

    /// Waits for the flushes still running (at shutdown).
    pub(crate) async fn finish(&self) {
        let _ = self.flushing.acquire_many(UNFLUSHED).await;
    }
}

/// Where events come from: the bus and its settings, as `[observers]`
/// resolves them (`config::source` reads and checks them).
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// `POST /events` on the server's listener (the default).
    Http,
    /// A core NATS subscription (at most once).
    Nats {
        /// Server URL, e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// Subjects to subscribe to (wildcards allowed).
        subjects: Vec<String>,
        /// Credentials and TLS.
        auth: nats_auth::NatsAuth,
    },
    /// A durable JetStream consumer.
    JetStream(JetStreamConfig),
    /// Redis pub/sub (at most once).
    Redis(PubSubConfig),
    /// A Redis Streams consumer group (durable).
    RedisStreams(StreamsConfig),
    /// PostgreSQL `LISTEN` (at most once).
    Postgres(ListenConfig),
    /// The trigger-fed PostgreSQL event log (durable).
    PostgresLog(LogConfig),
    /// FraiseQL's own change log in PostgreSQL (durable, read only).
    FraiseqlChangelog(ChangelogConfig),
}

impl SourceConfig {
    /// The `backend` name, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            SourceConfig::Http => "http",
            SourceConfig::Nats { .. } => "nats",
            SourceConfig::JetStream(_) => "jetstream",
            SourceConfig::Redis(_) => "redis",
            SourceConfig::RedisStreams(_) => "redis-streams",
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::PostgresLog(_) => "postgres-log",
            SourceConfig::FraiseqlChangelog(_) => "fraiseql-changelog",
        }
    }
}

/// One line for `wasmhook check`. Never prints credentials from URLs.
impl fmt::Display for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Http => write!(f, "http (POST /events)"),
            SourceConfig::Nats { url, subjects, .. } => {
                write!(f, "nats {} {}", redact(url), subjects.join(" "))
            }
            SourceConfig::JetStream(js) => write!(
                f,
                "jetstream {} stream {} consumer {} ({})",
                redact(&js.url),
                js.stream,
                js.consumer,
                js.subjects.join(" ")
            ),
            SourceConfig::Redis(r) => {
                write!(f, "redis {} {}", redact(&r.url), r.channels.join(" "))
            }
            SourceConfig::RedisStreams(r) => write!(
                f,
                "redis-streams {} stream {} group {} consumer {}",
                redact(&r.url),
                r.stream,
                r.group,
                r.consumer
            ),
            SourceConfig::Postgres(p) => {
                write!(f, "postgres {} channel {}", redact(&p.url), p.channel)
            }
            SourceConfig::PostgresLog(p) => {
                write!(f, "postgres-log {} table {}", redact(&p.url), p.table)
            }
            SourceConfig::FraiseqlChangelog(c) => write!(
                f,
                "fraiseql-changelog {} table {} channel {}",
                redact(&c.url),
                c.table,
                c.channel
            ),
        }
    }
}

/// `scheme://user:password@host/…` -> `scheme://user:***@host/…`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // libpq's `key=value` form.
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => pair,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
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
            SourceConfig::Nats {
                url,
                subjects,
                auth,
            } => nats::run(url, subjects, auth, pipeline, connected, stop)
                .await
                .map_err(|e| e.to_string()),
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
            SourceConfig::FraiseqlChangelog(c) => {
                fraiseql_changelog::run(c, pipeline, connected, stop)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = result {
            error!(backend, error = %e, "source stopped");
        }
    };
    (backend != "http").then(|| tokio::spawn(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("host=db user=app"), "host=db user=app");
        assert_eq!(
            redact("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
    }

    #[tokio::test]
    async fn reconnecting_runs_sessions_until_one_ends_or_shutdown() {
        use std::sync::atomic::AtomicU32;

        let (stop, mut shutdown) = watch::channel(false);
        let connected = Connected::new(true);
        let sessions = AtomicU32::new(0);
        let lost = || Lost {
            message: "test bus lost; reconnecting",
            at: At::Bus,
            hint: no_hint,
        };
        // Two failed sessions (200 ms, then 400 ms of backoff), then one that
        // ends cleanly.
        reconnecting(
            Link::new(Some(connected.clone())),
            &mut shutdown,
            lost(),
            &sessions,
            |sessions, _, _| {
                Box::pin(async move {
                    match sessions.fetch_add(1, Ordering::Relaxed) {
                        0 | 1 => Err("refused"),
                        _ => Ok(()),
                    }
                })
            },
        )
        .await;
        assert_eq!(sessions.load(Ordering::Relaxed), 3);
        assert!(!connected.get(), "a failed session marks the link down");

        // Once shutdown is asked for, no session starts.
        stop.send_replace(true);
        reconnecting(
            Link::new(None),
            &mut shutdown,
            lost(),
            &sessions,
            |sessions, _, _| {
                Box::pin(async move {
                    sessions.fetch_add(1, Ordering::Relaxed);
                    Err("refused")
                })
            },
        )
        .await;
        assert_eq!(sessions.load(Ordering::Relaxed), 3);
    }
}
