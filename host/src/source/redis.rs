//! Redis pub/sub: subscribes to `channels` (entries with `*`, `?` or `[` are
//! patterns, `PSUBSCRIBE`d) and feeds messages to the pipeline in batches.
//!
//! Pub/sub is at-most-once: a message published while wasmhook is down or
//! reconnecting is gone. Use `redis-streams` where that matters.

use futures::StreamExt;
use tokio::sync::watch;
use tracing::info;

use super::{Connected, Unanswered};
use crate::pipeline::{Message, Pipeline};

/// Messages per durable write.
const BATCH: usize = 512;

/// `[observers] backend = "redis"`.
#[derive(Debug, Clone, PartialEq)]
pub struct PubSubConfig {
    /// Server URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// Channels or patterns.
    pub channels: Vec<String>,
    /// `[observers] tls`: a private CA and a client certificate.
    pub tls: crate::tls::TlsFiles,
}

/// Why the Redis source could not start.
#[derive(Debug, thiserror::Error)]
#[error("Redis {url}: {message}")]
pub struct RedisError {
    url: String,
    message: String,
}

/// Whether a channel entry is a pattern for `PSUBSCRIBE`.
pub(crate) fn is_pattern(channel: &str) -> bool {
    channel.contains(['*', '?', '['])
}

/// Opens a client for `url`; the URL is checked here, connections later.
/// `rediss://` URLs speak TLS: with the system's CAs, or `tls`'s CA and
/// client certificate when it names them.
pub(crate) fn client(url: &str, tls: &crate::tls::TlsFiles) -> Result<redis::Client, RedisError> {
    let failed = |message: String| RedisError {
        url: super::redact(url),
        message,
    };
    if tls.is_empty() {
        return redis::Client::open(url).map_err(|e| failed(e.to_string()));
    }
    if !url.starts_with("rediss://") {
        return Err(failed(
            "observers.tls applies to TLS connections: use a rediss:// URL".into(),
        ));
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())))
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| failed(e.to_string()))
}

/// Runs until `shutdown` turns true; reconnects (with backoff) by itself.
pub async fn run(
    config: &PubSubConfig,
    pipeline: Pipeline,
    connected: Connected,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RedisError> {
    let client = client(&config.url, &config.tls)?;
    let storing = Unanswered::new(pipeline, "Redis messages");
    super::reconnecting(
        super::Link::new(Some(connected)),
        &mut shutdown,
        super::Lost {
            message: "Redis subscription lost; reconnecting",
            at: super::At::Bus,
            hint: super::no_hint,
        },
        &(config, &client, &storing),
        |&(config, client, storing), link, shutdown| {
            Box::pin(subscribe_and_read(config, client, storing, link, shutdown))
        },
    )
    .await;
    storing.finish().await;
    Ok(())
}

async fn subscribe_and_read(
    config: &PubSubConfig,
    client: &redis::Client,
    storing: &Unanswered,
    link: &mut super::Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in &config.channels {
        if is_pattern(channel) {
            pubsub.psubscribe(channel).await?;
        } else {
            pubsub.subscribe(channel).await?;
        }
    }
    link.up();
    info!(url = %super::redact(&config.url), channels = ?config.channels, "Redis source subscribed");
    let mut messages = pubsub.on_message().ready_chunks(BATCH);
    loop {
        let batch = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            batch = messages.next() => match batch {
                Some(batch) => batch,
                None => return Err(redis::RedisError::from((
                    redis::ErrorKind::IoError,
                    "the subscription connection closed",
                ))),
            },
        };
        let batch: Vec<Message> = batch
            .into_iter()
            .map(|m| Message {
                source: format!("redis:{}", m.get_channel_name()),
                payload: bytes::Bytes::copy_from_slice(m.get_payload_bytes()),
                key: None,
            })
            .collect();
        if !storing.store(&batch, shutdown).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_patterns() {
        assert!(is_pattern("fraiseql.*"));
        assert!(is_pattern("fraiseql.order.[cu]*"));
        assert!(!is_pattern("fraiseql.order.created"));
    }

    #[test]
    fn a_bad_url_is_named() {
        let none = crate::tls::TlsFiles::default();
        let e = client("http://nope", &none).unwrap_err().to_string();
        assert!(e.starts_with("Redis http://nope:"), "{e}");
        let with_ca = crate::tls::TlsFiles {
            ca_file: Some("/ca.pem".into()),
            ..none
        };
        let e = client("redis://127.0.0.1:6379", &with_ca)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use a rediss:// URL"), "{e}");
    }
}
