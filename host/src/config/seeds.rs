//! FraiseQL's documented spellings. Its observer and webhook docs name
//! some settings differently (`[webhooks] signing_secret`, `[webhooks.dlq]
//! retention_days`, `[webhooks.dispatch]`): a key with the same meaning in
//! wasmhook is read as that key (README, "Coming from FraiseQL"), and one
//! whose meaning wasmhook does not have is refused with what wasmhook does
//! instead. Same-table renames are serde aliases in `file`; this module
//! moves keys between tables and explains the rest, before anything else
//! reads the config.

use std::time::Duration;

use super::file::{FileConfig, WebhooksSection};
use super::{invalid, suggest, ConfigError};

/// Rewrites FraiseQL's spellings in `raw` into wasmhook's, or refuses them.
pub(super) fn fold(raw: &mut FileConfig) -> Result<(), ConfigError> {
    signing(&mut raw.webhooks)?;
    dispatch(&mut raw.webhooks)?;
    retry(&mut raw.webhooks)?;
    let storage = raw.storage.backend.as_deref().unwrap_or("sled");
    dlq(&mut raw.webhooks, storage)?;
    if raw.webhooks.test_url.is_some() {
        return Err(invalid(
            "webhooks.test_url",
            "wasmhook has no test URL setting: run `wasmhook listen` (a development receiver that checks signatures) and point a webhook's url at it",
        ));
    }
    let prometheus = &raw.observability.prometheus;
    if prometheus.enabled == Some(false) {
        return Err(invalid(
            "observability.prometheus.enabled",
            "wasmhook always serves its metrics at /metrics on server.listen; leave the key out",
        ));
    }
    if prometheus.port.is_some() {
        return Err(invalid(
            "observability.prometheus.port",
            "metrics are served at /metrics on server.listen, not on a port of their own",
        ));
    }
    Ok(())
}

/// Moves a FraiseQL spelling into its wasmhook key; both set is an error.
fn fill<T>(
    target: &mut Option<T>,
    target_key: &str,
    value: Option<T>,
    fraiseql_key: &str,
) -> Result<(), ConfigError> {
    match (target.is_some(), value) {
        (_, None) => Ok(()),
        (true, Some(_)) => Err(invalid(
            fraiseql_key,
            format!("is FraiseQL's spelling of {target_key}, which is set too; keep one"),
        )),
        (false, Some(value)) => {
            *target = Some(value);
            Ok(())
        }
    }
}

/// `[webhooks] signing_enabled, signing_secret, signing_algorithm,
/// signature_header, timestamp_header` are `[webhooks.signing]`'s keys.
fn signing(webhooks: &mut WebhooksSection) -> Result<(), ConfigError> {
    let signing = &mut webhooks.signing;
    fill(
        &mut signing.enabled,
        "webhooks.signing.enabled",
        webhooks.signing_enabled.take(),
        "webhooks.signing_enabled",
    )?;
    fill(
        &mut signing.secret,
        "webhooks.signing.secret",
        webhooks.signing_secret.take(),
        "webhooks.signing_secret",
    )?;
    fill(
        &mut signing.algorithm,
        "webhooks.signing.algorithm",
        webhooks.signing_algorithm.take(),
        "webhooks.signing_algorithm",
    )?;
    fill(
        &mut signing.header,
        "webhooks.signing.header",
        webhooks.signature_header.take(),
        "webhooks.signature_header",
    )?;
    fill(
        &mut signing.timestamp_header,
        "webhooks.signing.timestamp_header",
        webhooks.timestamp_header.take(),
        "webhooks.timestamp_header",
    )
}

/// `[webhooks] timeout` and `[webhooks.dispatch]`: wasmhook always
/// delivers in the background, from a durable outbox.
fn dispatch(webhooks: &mut WebhooksSection) -> Result<(), ConfigError> {
    let millis = |d: Duration, key: &str| {
        u64::try_from(d.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| invalid(key, "must be at least 1ms"))
    };
    if let Some(timeout) = webhooks.timeout.take() {
        let ms = millis(timeout, "webhooks.timeout")?;
        fill(
            &mut webhooks.request_timeout_ms,
            "webhooks.request_timeout_ms",
            Some(ms),
            "webhooks.timeout",
        )?;
    }
    let Some(dispatch) = webhooks.dispatch.take() else {
        return Ok(());
    };
    if dispatch.asynchronous == Some(false) {
        return Err(invalid(
            "webhooks.dispatch.async",
            "wasmhook always delivers in the background: an event is acknowledged once its deliveries are stored, never after they are sent; leave the key out",
        ));
    }
    if dispatch.background_retry == Some(false) {
        return Err(invalid(
            "webhooks.dispatch.background_retry",
            "retries always run in the background; to retry less, set [webhooks.retry] max_attempts",
        ));
    }
    if dispatch.max_queue_size.is_some() {
        return Err(invalid(
            "webhooks.dispatch.max_queue_size",
            "wasmhook has no in-memory queue to size: deliveries wait in the durable outbox, bounded by disk ([storage] min_free_mb); to spare a receiver use [webhooks.rate_limiting] max_per_second or max_concurrent_per_destination",
        ));
    }
    if let Some(timeout) = dispatch.timeout {
        let ms = millis(timeout, "webhooks.dispatch.timeout")?;
        fill(
            &mut webhooks.request_timeout_ms,
            "webhooks.request_timeout_ms",
            Some(ms),
            "webhooks.dispatch.timeout",
        )?;
    }
    Ok(())
}

/// `[webhooks.retry] enabled = false`: one attempt, then the DLQ.
fn retry(webhooks: &mut WebhooksSection) -> Result<(), ConfigError> {
    let retry = &mut webhooks.retry;
    if retry.enabled.take() == Some(false) {
        if retry.max_attempts.is_some_and(|n| n > 1) {
            return Err(invalid(
                "webhooks.retry.enabled",
                "enabled = false means one attempt, but max_attempts asks for more; keep one",
            ));
        }
        retry.max_attempts = Some(1);
    }
    Ok(())
}

/// `[webhooks.dlq]`: wasmhook keeps its DLQ in its own storage, so a DLQ
/// backend is accepted only when it names that storage.
fn dlq(webhooks: &mut WebhooksSection, storage: &str) -> Result<(), ConfigError> {
    let dlq = &mut webhooks.dlq;
    if dlq.enabled.take() == Some(false) {
        return Err(invalid(
            "webhooks.dlq.enabled",
            "the DLQ cannot be turned off: it is where an event goes when it cannot be delivered, so nothing is lost; keep entries briefly with retention = \"1h\" or remove them with `wasmhook dlq purge`",
        ));
    }
    if let Some(backend) = dlq.backend.take() {
        let reason = match backend.as_str() {
            "sled" | "embedded" if storage == "sled" => None,
            "postgres" | "postgresql" if storage == "postgres" => None,
            "postgres" | "postgresql" => Some(
                "the DLQ lives in wasmhook's own storage, beside the outbox: set [storage] backend = \"postgres\" (and postgres_url) to keep it in PostgreSQL",
            ),
            "file" => Some(
                "the DLQ lives in wasmhook's own storage, not in a file; `wasmhook dlq list --json` writes it out as JSON",
            ),
            _ => Some(
                "the DLQ lives in wasmhook's own storage, beside the outbox, so that moving a delivery there is one atomic step",
            ),
        };
        if let Some(reason) = reason {
            return Err(invalid(
                "webhooks.dlq.backend",
                format!(
                    "{backend:?}: {reason}; read it with `wasmhook dlq list` or GET /admin/dlq"
                ),
            ));
        }
    }
    if let Some(days) = dlq.retention_days.take() {
        let text = format!("{days}d");
        if dlq.retention.is_some() {
            return Err(invalid(
                "webhooks.dlq.retention_days",
                "is FraiseQL's spelling of webhooks.dlq.retention, which is set too; keep one",
            ));
        }
        dlq.retention = Some(text);
    }
    const KNOWN: [&str; 5] = [
        "retention",
        "max_size",
        "enabled",
        "backend",
        "retention_days",
    ];
    if let Some((key, _)) = dlq.elsewhere.iter().next() {
        let message = match key.as_str() {
            "table" | "table_name" | "schema" | "postgres" | "path" | "rotation" | "compress"
            | "stream" | "bucket" => format!(
                "FraiseQL's DLQ {key:?} has no counterpart: the DLQ lives in wasmhook's own storage ([storage]); read it with `wasmhook dlq list` or GET /admin/dlq"
            ),
            other => {
                let mut text = format!(
                    "unknown field `{other}`, expected one of {}",
                    KNOWN.map(|k| format!("`{k}`")).join(", ")
                );
                if let Some(close) = suggest::closest(other, KNOWN.into_iter()) {
                    text.push_str(&format!("; did you mean `{close}`?"));
                }
                text
            }
        };
        return Err(invalid(format!("webhooks.dlq.{key}"), message));
    }
    Ok(())
}
