//! PostgreSQL `LISTEN`: payloads of `NOTIFY` on a channel (default
//! `fraiseql_events`), as the FraiseQL docs describe. Notifications that
//! have arrived together go to the pipeline as one batch, so one disk flush
//! covers many events. Also home of what both PostgreSQL sources share:
//! connecting, driving the connection, and describing its errors.
//!
//! At most once: PostgreSQL keeps no notification for a listener that is
//! not connected, so a `NOTIFY` sent while wasmhook is down or reconnecting
//! is gone, and so are notifications received but not yet stored when the
//! process dies. Payloads are limited to 8000 bytes by PostgreSQL itself
//! (`pg_notify` refuses longer ones). Use `postgres-log` where either
//! matters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Notification};

use crate::tls::postgres::{PgTarget, PgTargetError};
use crate::tls::TlsFiles;
use tracing::{debug, info, warn};

use super::{Connected, Unanswered};
use crate::pipeline::{Message, Pipeline};

/// Notifications per durable write.
const BATCH: usize = 512;

/// Notifications held between the connection and the pipeline; when full,
/// the connection is not read and PostgreSQL queues them on its side.
const QUEUE: usize = 4 * BATCH;

/// `[observers] backend = "postgres"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    /// Connection string (URL or `key=value` form).
    pub url: String,
    /// Channel to `LISTEN` on.
    pub channel: String,
    /// `[observers] tls`: a private CA and a client certificate.
    pub tls: TlsFiles,
}

/// Why the PostgreSQL source stopped: only a connection string it cannot
/// use, since everything else is retried.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL LISTEN: {0}")]
pub struct ListenError(String);

/// Why a connection to PostgreSQL ended; the sources log it and reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A statement failed or the connection broke.
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The server closed the connection without saying why.
    #[error("the server closed the connection")]
    Closed,
    /// TLS could not be set up (an unreadable CA or key file).
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// `tokio_postgres::Error` displays a server error as only "db error"; the
/// server's message (and detail, hint) is what an operator needs.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string().replace('\n', "; ");
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Quotes a name for splicing into SQL. Names reaching here were validated
/// as plain identifiers; quoting keeps them exactly as written.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Parses the connection string (with libpq's TLS parameters; `tls`'s files
/// apply where it names none) and fills in what a long-lived connection
/// needs and the user did not set: a connect timeout, keepalives that notice
/// a silently dead peer in about a minute rather than two hours, and an
/// application name that shows up in `pg_stat_activity`.
pub(crate) fn client_config(url: &str, tls: &TlsFiles) -> Result<PgTarget, PgTargetError> {
    let mut target = PgTarget::parse(url, tls)?;
    let config = &mut target.config;
    if config.get_application_name().is_none() {
        config.application_name("wasmhook");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    Ok(target)
}

/// Where a connection goes, for messages: user, hosts, ports and database
/// only, so a password never reaches a log or a terminal, whether it was in
/// the URL, in a query parameter or in `key=value` form.
pub(crate) fn target(config: &tokio_postgres::Config) -> String {
    crate::tls::postgres::shown(config)
}

/// [`target`] of a connection string that may not parse.
pub(crate) fn display_dsn(dsn: &str) -> String {
    match PgTarget::parse(dsn, &TlsFiles::default()) {
        Ok(parsed) => target(&parsed.config),
        Err(_) => "the connection string given".to_string(),
    }
}

/// Where a connection's notifications go.
pub(crate) enum Notifications {
    /// Every notification, in order; the connection waits while the queue
    /// is full.
    Queue(mpsc::Sender<Notification>),
    /// Only "something happened": a wake-up that never blocks the
    /// connection, for a client that also runs queries on it.
    Wake(Arc<Notify>),
}

/// A client and the task that drives its connection. Dropping it closes the
/// connection, which also rolls back an open transaction.
pub(crate) struct Session {
    /// For statements.
    pub(crate) client: Client,
    driver: JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Session {
    /// Connects (over TLS unless `sslmode=disable`) and starts driving the
    /// connection with `poll_message`, the one way to see notifications.
    pub(crate) async fn connect(
        target: &PgTarget,
        notifications: Notifications,
    ) -> Result<Session, SessionError> {
        let (client, driver) = match target.connector()? {
            Some(tls) => {
                let (client, connection) = target.config.connect(tls).await?;
                (client, drive(connection, notifications))
            }
            None => {
                let (client, connection) = target.config.connect(tokio_postgres::NoTls).await?;
                (client, drive(connection, notifications))
            }
        };
        Ok(Session { client, driver })
    }

    /// Resolves when the connection ends, with why.
    pub(crate) async fn closed(&mut self) -> SessionError {
        match (&mut self.driver).await {
            Ok(Err(e)) => SessionError::Postgres(e),
            Ok(Ok(())) | Err(_) => SessionError::Closed,
        }
    }
}

/// Drives `connection` on a task of its own, handing notifications on.
fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notifications: Notifications,
) -> JoinHandle<Result<(), tokio_postgres::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(n) => match &notifications {
                    Notifications::Queue(queue) => {
                        if queue.send(n).await.is_err() {
                            // Nobody reads any more: the session is over.
                            return Ok(());
                        }
                    }
                    Notifications::Wake(wake) => wake.notify_one(),
                },
                AsyncMessage::Notice(notice) => {
                    debug!(notice = %notice, "PostgreSQL notice");
                }
                _ => {}
            }
        }
        Ok(())
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &ListenConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ListenError> {
    let pg = client_config(&config.url, &config.tls)
        .map_err(|e| ListenError(format!("{}: {e}", display_dsn(&config.url))))?;
    let storing = Unanswered::new(pipeline, "PostgreSQL notifications");
    let wake_ups = WakeUps::default();
    // Notifications sent until we listen again are lost: that is what
    // at-most-once means here.
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "PostgreSQL LISTEN connection lost; reconnecting",
            at: super::At::Channel(&config.channel),
            hint: super::no_hint,
        },
        &(config, &pg, &storing, &wake_ups),
        |&(config, pg, storing, wake_ups), link, shutdown| {
            Box::pin(listen(config, pg, storing, wake_ups, link, shutdown))
        },
    )
    .await;
    storing.finish().await;
    Ok(())
}

/// Notifications that carry only a row number: FraiseQL's wake-ups on
/// `fraiseql_events`, which name a change-log row rather than carry an
/// event. They are skipped, with one warning that says what reads them.
#[derive(Debug, Default)]
struct WakeUps {
    /// Atomic because the sessions share it, read-only, across reconnects.
    warned: AtomicBool,
}

impl WakeUps {
    /// True if `payload` is such a wake-up (and warns about the first).
    fn skip(&self, payload: &str, channel: &str) -> bool {
        let payload = payload.trim();
        let wake_up = !payload.is_empty() && payload.bytes().all(|b| b.is_ascii_digit());
        if wake_up && !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                channel,
                payload,
                "this channel carries bare row numbers, as FraiseQL's change log notifies: they are \
                 wake-ups, not events, and are skipped. To deliver FraiseQL's changes, use \
                 [observers] backend = \"fraiseql-changelog\", which reads the rows they name"
            );
        }
        wake_up
    }
}

async fn listen(
    config: &ListenConfig,
    pg: &PgTarget,
    storing: &Unanswered,
    wake_ups: &WakeUps,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let (queue, mut notifications) = mpsc::channel(QUEUE);
    let mut session = Session::connect(pg, Notifications::Queue(queue)).await?;
    session
        .client
        .batch_execute(&format!("LISTEN {}", quote_ident(&config.channel)))
        .await?;
    link.up();
    info!(server = %target(&pg.config), channel = %config.channel, "PostgreSQL source listening");
    let source = format!("postgres:{}", config.channel);
    let mut received = Vec::with_capacity(BATCH);
    loop {
        let count = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            count = notifications.recv_many(&mut received, BATCH) => count,
        };
        if count == 0 {
            // The driver dropped its end of the queue: the connection is gone.
            return Err(session.closed().await);
        }
        let batch: Vec<Message> = received
            .drain(..)
            .filter(|n| !wake_ups.skip(n.payload(), &config.channel))
            .map(|n| Message {
                source: source.clone(),
                payload: bytes::Bytes::copy_from_slice(n.payload().as_bytes()),
                key: None,
            })
            .collect();
        if !batch.is_empty() && !storing.store(&batch, shutdown).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_row_numbers_are_skipped_with_one_warning() {
        let wake_ups = WakeUps::default();
        assert!(wake_ups.skip("42", "fraiseql_events"));
        assert!(wake_ups.warned.load(Ordering::Relaxed));
        assert!(wake_ups.skip(" 43 ", "fraiseql_events"));
        for event in ["{\"entity\": \"o\"}", "", "4a", "-1"] {
            assert!(!wake_ups.skip(event, "c"), "{event:?}");
        }
    }

    #[test]
    fn names_are_quoted_as_written() {
        assert_eq!(quote_ident("fraiseql_events"), "\"fraiseql_events\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn long_lived_connections_get_timeouts_unless_set() {
        let config = client_config("postgres://app@db:5432/app", &TlsFiles::default())
            .unwrap()
            .config;
        assert_eq!(config.get_application_name(), Some("wasmhook"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));

        let config = client_config(
            "postgres://app@db/app?application_name=billing&connect_timeout=3&keepalives_idle=600",
            &TlsFiles::default(),
        )
        .unwrap()
        .config;
        assert_eq!(config.get_application_name(), Some("billing"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(600));
    }

    #[test]
    fn passwords_never_reach_messages() {
        for dsn in [
            "postgres://app:s3cret@db:5433/orders",
            "postgres://app@db:5433/orders?password=s3cret",
            "host=db port=5433 user=app password=s3cret dbname=orders",
        ] {
            assert_eq!(display_dsn(dsn), "postgres://app@db:5433/orders", "{dsn}");
        }
        assert_eq!(
            display_dsn("host=/run/postgresql,db2 port=5432 user=app password='x y'"),
            "postgres://app@/run/postgresql:5432,db2:5432"
        );
        assert!(!display_dsn("password=s3cret host=").contains("s3cret"));
    }

    #[test]
    fn a_bad_connection_string_is_an_error_not_a_panic() {
        assert!(client_config("postgres://app@db:notaport/app", &TlsFiles::default()).is_err());
    }
}
