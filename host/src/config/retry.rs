//! `[webhooks.retry]` and an observer's own `retry`: a policy built on the
//! one it overrides, checked so that its delays make sense.

use super::{file, invalid, ConfigError};
use crate::delivery::retry::{Backoff, RetryPolicy};

/// The retry table at `key`, over `base` (the global policy, or the
/// default one for `[webhooks.retry]` itself).
pub(super) fn resolve(
    raw: &file::RetrySection,
    base: &RetryPolicy,
    key: &str,
) -> Result<RetryPolicy, ConfigError> {
    let mut policy = base.clone();
    if let Some(n) = raw.max_attempts {
        if n == 0 {
            return Err(invalid(
                format!("{key}.max_attempts"),
                "must be at least 1 (the first attempt counts)",
            ));
        }
        policy.max_attempts = n;
    }
    if let Some(name) = &raw.backoff {
        policy.backoff = match name.as_str() {
            "exponential" => Backoff::Exponential,
            "linear" => Backoff::Linear,
            "fixed" => Backoff::Fixed,
            other => {
                return Err(invalid(
                    format!("{key}.backoff"),
                    format!("{other:?} is not \"exponential\", \"linear\" or \"fixed\""),
                ))
            }
        };
    }
    if let Some(d) = raw.initial_delay {
        policy.initial_delay = d;
    }
    if let Some(d) = raw.max_delay {
        policy.max_delay = d;
    }
    if let Some(m) = raw.multiplier {
        if !(m.is_finite() && m >= 1.0) {
            return Err(invalid(
                format!("{key}.multiplier"),
                "must be a number of at least 1.0",
            ));
        }
        policy.multiplier = m;
    }
    if let Some(j) = raw.jitter {
        if !(0.0..=1.0).contains(&j) {
            return Err(invalid(
                format!("{key}.jitter"),
                "must be a fraction from 0.0 to 1.0 (0.2 spreads delays by ±20%)",
            ));
        }
        policy.jitter = j;
    }
    for (name, codes, target) in [
        ("retry_on", &raw.retry_on, &mut policy.retry_on),
        (
            "dont_retry_on",
            &raw.dont_retry_on,
            &mut policy.dont_retry_on,
        ),
    ] {
        if let Some(codes) = codes {
            if let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c)) {
                return Err(invalid(
                    format!("{key}.{name}"),
                    format!("{bad} is not an HTTP status code"),
                ));
            }
            target.clone_from(codes);
        }
    }
    if policy.max_delay < policy.initial_delay {
        return Err(invalid(
            format!("{key}.max_delay"),
            "is shorter than initial_delay",
        ));
    }
    Ok(policy)
}
