//! Delivery controls: `[webhooks.rate_limiting]`, `[webhooks.circuit_breaker]`,
//! `[webhooks.batching]` and `max_concurrent_per_destination`, and each
//! webhook's own `rate_limit`, `max_concurrent`, `circuit_breaker`,
//! `ordering` and `batch`, which win over the globals.

use std::time::Duration;

use super::{file, invalid, positive, ConfigError};
use crate::delivery::limits::{BatchConfig, BreakerConfig, Controls, RateLimit, WebhookControls};

/// The `[webhooks]` defaults.
pub(super) fn resolve_global(
    raw: &file::WebhooksSection,
    max_concurrent: usize,
) -> Result<Controls, ConfigError> {
    let per_webhook = match raw.rate_limiting.per.as_deref() {
        None | Some("destination") => false,
        Some("webhook") => true,
        Some(other) => {
            return Err(invalid(
                "webhooks.rate_limiting.per",
                format!("{other:?} is not \"destination\" or \"webhook\""),
            ))
        }
    };
    Ok(Controls {
        rate_limit: rate_limit(&raw.rate_limiting, "webhooks.rate_limiting")?,
        per_webhook,
        max_concurrent_per_destination: positive(
            raw.max_concurrent_per_destination,
            20.min(max_concurrent),
            "webhooks.max_concurrent_per_destination",
        )?,
        breaker: breaker(&raw.circuit_breaker, "webhooks.circuit_breaker")?.unwrap_or_default(),
        batch: batch(&raw.batching, "webhooks.batching")?,
    })
}

/// A webhook's own values.
pub(super) fn resolve_webhook(
    raw: &file::WebhookSection,
    key: &str,
) -> Result<WebhookControls, ConfigError> {
    if let Some(per) = raw.rate_limit.as_ref().and_then(|r| r.per.as_deref()) {
        return Err(invalid(
            format!("{key}.rate_limit.per"),
            format!("{per:?}: a webhook's own rate limit is always its own; remove per"),
        ));
    }
    let ordered = match raw.ordering.as_deref() {
        None | Some("none") => false,
        Some("entity") => true,
        Some(other) => {
            return Err(invalid(
                format!("{key}.ordering"),
                format!("{other:?} is not \"entity\" or \"none\""),
            ))
        }
    };
    let batch = match &raw.batch {
        Some(section) => batch(section, &format!("{key}.batch"))?,
        None => None,
    };
    if ordered && batch.is_some() {
        return Err(invalid(
            format!("{key}.ordering"),
            "ordering = \"entity\" and batch cannot be combined: a failed batch would reorder its entities",
        ));
    }
    Ok(WebhookControls {
        rate_limit: match &raw.rate_limit {
            Some(section) => rate_limit(section, &format!("{key}.rate_limit"))?,
            None => None,
        },
        max_concurrent: match raw.max_concurrent {
            Some(0) => {
                return Err(invalid(
                    format!("{key}.max_concurrent"),
                    "must be greater than 0",
                ))
            }
            other => other,
        },
        breaker: match &raw.circuit_breaker {
            Some(section) => breaker(section, &format!("{key}.circuit_breaker"))?,
            None => None,
        },
        ordered,
        batch,
        batch_array_path: raw
            .body
            .as_ref()
            .and_then(crate::delivery::batch::template_array_path),
    })
}

fn rate_limit(raw: &file::RateLimitSection, key: &str) -> Result<Option<RateLimit>, ConfigError> {
    if !raw.enabled.unwrap_or(raw.max_per_second.is_some()) {
        return Ok(None);
    }
    let max_per_second = raw.max_per_second.ok_or_else(|| {
        invalid(
            format!("{key}.max_per_second"),
            "rate limiting is enabled but max_per_second is not set",
        )
    })?;
    if !(max_per_second.is_finite() && max_per_second > 0.0) {
        return Err(invalid(
            format!("{key}.max_per_second"),
            "must be a number greater than 0",
        ));
    }
    let burst = match raw.burst {
        Some(0) => return Err(invalid(format!("{key}.burst"), "must be at least 1")),
        Some(burst) => burst,
        // A second's worth, at least one.
        None => (max_per_second.ceil() as u32).max(1),
    };
    Ok(Some(RateLimit {
        max_per_second,
        burst,
    }))
}

fn breaker(raw: &file::BreakerSection, key: &str) -> Result<Option<BreakerConfig>, ConfigError> {
    let defaults = BreakerConfig::default();
    let enabled = raw.enabled.unwrap_or(raw.failure_threshold.is_some());
    if !enabled {
        // An explicit `enabled = false` on a webhook switches the global one off.
        return Ok(raw.enabled.map(|_| defaults));
    }
    let failure_threshold = positive(
        raw.failure_threshold,
        5,
        &format!("{key}.failure_threshold"),
    )?;
    let cooldown = positive(
        raw.cooldown,
        Duration::from_secs(30),
        &format!("{key}.cooldown"),
    )?;
    let max_cooldown = raw
        .max_cooldown
        .unwrap_or(defaults.max_cooldown)
        .max(cooldown);
    Ok(Some(BreakerConfig {
        failure_threshold,
        cooldown,
        max_cooldown,
    }))
}

fn batch(raw: &file::BatchSection, key: &str) -> Result<Option<BatchConfig>, ConfigError> {
    let size = match (raw.size, raw.batch_size) {
        (Some(_), Some(_)) => {
            return Err(invalid(key, "set size or batch_size, not both"));
        }
        (size, batch_size) => size.or(batch_size),
    };
    if !raw.enabled.unwrap_or(size.is_some()) {
        return Ok(None);
    }
    let size = positive(size, 10, &format!("{key}.size"))?;
    if size > 10_000 {
        return Err(invalid(
            format!("{key}.size"),
            "at most 10000 events per request",
        ));
    }
    let timeout = positive(
        raw.timeout,
        Duration::from_secs(5),
        &format!("{key}.timeout"),
    )?;
    Ok(Some(BatchConfig { size, timeout }))
}
