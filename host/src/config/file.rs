//! The config file as written: serde structs that mirror the TOML keys.
//!
//! Nothing here is interpreted; `config::resolve` turns these into the typed
//! [`super::Config`] the pipeline uses. `deny_unknown_fields` everywhere so a
//! misspelt key is an error naming it, not a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub delivery_log: DeliveryLogSection,
    #[serde(default)]
    pub observers: ObserversSection,
    #[serde(default)]
    pub webhooks: WebhooksSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub plugins: PluginsSection,
    #[serde(default)]
    pub observability: ObservabilitySection,
    #[serde(default)]
    pub observer: Vec<ObserverSection>,
    #[serde(default)]
    pub schedule: Vec<ScheduleSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    pub listen: Option<String>,
    pub admin_token: Option<String>,
    pub ingest_token: Option<String>,
    pub ingest_tokens: Option<Vec<String>>,
    pub allow_unauthenticated_ingest: Option<bool>,
    pub allow_unauthenticated_admin: Option<bool>,
    pub max_body_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryLogSection {
    pub enabled: Option<bool>,
    pub retention: Option<String>,
    pub max_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageSection {
    pub backend: Option<String>,
    pub path: Option<String>,
    pub cache_capacity_mb: Option<u64>,
    pub min_free_mb: Option<u64>,
    pub postgres_url: Option<String>,
    pub schema: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub lease: Option<Duration>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObserversSection {
    pub backend: Option<String>,
    pub nats_url: Option<String>,
    pub subjects: Option<Vec<String>>,
    pub stream: Option<String>,
    pub consumer: Option<String>,
    pub ack_wait_ms: Option<u64>,
    pub redis_url: Option<String>,
    pub channels: Option<Vec<String>>,
    pub group: Option<String>,
    pub field: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub claim_idle: Option<Duration>,
    pub postgres_url: Option<String>,
    pub channel: Option<String>,
    pub log_table: Option<String>,
    pub table: Option<String>,
    pub start: Option<String>,
    pub batch_size: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
    pub tls: Option<TlsSection>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub nkey_seed_file: Option<String>,
    pub credentials_file: Option<String>,
}

/// `[observers] tls = { ca_file, cert_file, key_file }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhooksSection {
    pub max_payload_bytes: Option<usize>,
    pub allowed_networks: Option<Vec<String>>,
    pub follow_redirects: Option<usize>,
    pub ca_file: Option<String>,
    pub client_cert: Option<ClientCertSection>,
    pub proxy: Option<String>,
    pub no_proxy: Option<Vec<String>>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub max_concurrent_per_destination: Option<usize>,
    #[serde(default)]
    pub rate_limiting: RateLimitSection,
    #[serde(default)]
    pub circuit_breaker: BreakerSection,
    #[serde(default)]
    pub batching: BatchSection,
    #[serde(default)]
    pub signing: SigningSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub incoming: BTreeMap<String, IncomingSection>,
    #[serde(default)]
    pub dlq: DlqSection,
    // FraiseQL's spellings, read or refused in `seeds`.
    pub signing_enabled: Option<bool>,
    pub signing_secret: Option<String>,
    pub signing_algorithm: Option<String>,
    pub signature_header: Option<String>,
    pub timestamp_header: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub test_url: Option<toml::Value>,
    pub dispatch: Option<DispatchSection>,
}

/// FraiseQL's `[webhooks.dispatch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DispatchSection {
    #[serde(rename = "async")]
    pub asynchronous: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub background_retry: Option<bool>,
    pub max_queue_size: Option<toml::Value>,
}

/// Unknown keys land in `elsewhere`, where `seeds` explains FraiseQL's and
/// refuses the rest (serde cannot deny unknown keys beside a flatten).
#[derive(Debug, Default, Deserialize)]
pub(super) struct DlqSection {
    pub retention: Option<String>,
    pub max_size: Option<String>,
    /// FraiseQL's spellings, read or refused in `seeds`.
    pub enabled: Option<bool>,
    #[serde(alias = "storage")]
    pub backend: Option<String>,
    pub retention_days: Option<u64>,
    #[serde(flatten)]
    pub elsewhere: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IncomingSection {
    pub enabled: Option<bool>,
    pub path: String,
    /// FraiseQL's documentation leaves it out for github and stripe.
    pub scheme: Option<String>,
    pub secret: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub signature_header: Option<String>,
    pub signature_format: Option<String>,
    pub signature_encoding: Option<String>,
    pub algorithm: Option<String>,
    pub timestamp_header: Option<String>,
    pub tolerance_seconds: Option<u64>,
    pub max_payload_bytes: Option<usize>,
    pub publish_subject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningSection {
    pub enabled: Option<bool>,
    pub scheme: Option<String>,
    pub secret: Option<String>,
    pub secrets: Option<Vec<String>>,
    pub algorithm: Option<String>,
    pub header: Option<String>,
    pub timestamp_header: Option<String>,
}

/// Used both for `[webhooks.retry]` and an observer's `retry = {..}`, where
/// every key is an override of the global value.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetrySection {
    /// FraiseQL: `enabled = false` means one attempt.
    pub enabled: Option<bool>,
    pub max_attempts: Option<u32>,
    /// FraiseQL v2 spells it `backoff_strategy`.
    #[serde(alias = "backoff_strategy")]
    pub backoff: Option<String>,
    /// FraiseQL v2 spells it `initial_delay_ms` (a number of milliseconds,
    /// which `duration` reads too).
    #[serde(default, deserialize_with = "duration", alias = "initial_delay_ms")]
    pub initial_delay: Option<Duration>,
    #[serde(default, deserialize_with = "duration", alias = "max_delay_ms")]
    pub max_delay: Option<Duration>,
    #[serde(alias = "backoff_multiplier")]
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    #[serde(alias = "retry_status_codes")]
    pub retry_on: Option<Vec<u16>>,
    pub dont_retry_on: Option<Vec<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObservabilitySection {
    #[serde(default)]
    pub prometheus: PrometheusSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PrometheusSection {
    pub namespace: Option<String>,
    /// FraiseQL's spellings, see `seeds`.
    pub enabled: Option<bool>,
    pub port: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginsSection {
    pub dir: Option<String>,
    pub cache_dir: Option<String>,
    pub watch: Option<bool>,
    pub watch_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObserverSection {
    pub name: String,
    pub entity: String,
    #[serde(default)]
    pub event: Option<OneOrMany>,
    pub condition: Option<String>,
    pub retry: Option<RetrySection>,
    #[serde(default)]
    pub webhook: Vec<WebhookSection>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookSection {
    pub name: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub method: Option<String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub condition: Option<String>,
    pub body: Option<serde_json::Value>,
    pub body_template: Option<String>,
    pub body_format: Option<String>,
    pub transform: Option<String>,
    pub encryption: Option<EncryptionSection>,
    pub max_payload_bytes: Option<usize>,
    pub rate_limit: Option<RateLimitSection>,
    pub max_concurrent: Option<usize>,
    pub circuit_breaker: Option<BreakerSection>,
    pub ordering: Option<String>,
    pub batch: Option<BatchSection>,
    pub signing: Option<WebhookSigning>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    pub client_cert: Option<Switched<ClientCertSection>>,
    pub proxy: Option<Switched<String>>,
    pub no_proxy: Option<Vec<String>>,
}

/// `client_cert = { cert_file, key_file }` (the key may be in `cert_file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientCertSection {
    pub cert_file: String,
    pub key_file: Option<String>,
}

/// A webhook's own setting, or `false` to drop `[webhooks]`'s.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Switched<T> {
    Switch(bool),
    Own(T),
}

/// A webhook's `signing`: `false`, or a table like `[webhooks.signing]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum WebhookSigning {
    Switch(bool),
    Own(SigningSection),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitSection {
    pub enabled: Option<bool>,
    pub max_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub per: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BreakerSection {
    pub enabled: Option<bool>,
    pub failure_threshold: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub cooldown: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub max_cooldown: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchSection {
    pub enabled: Option<bool>,
    pub size: Option<usize>,
    pub batch_size: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EncryptionSection {
    pub enabled: Option<bool>,
    pub plugin: Option<String>,
    pub algorithm: Option<String>,
    pub fields: Option<Vec<String>>,
    pub key: String,
}

/// One `[[schedule]]`. Its other keys are a webhook's (`url`, `body`,
/// `headers`, ...): `config::schedule` reads them as a [`WebhookSection`],
/// so the two cannot drift apart and a misspelt key is still an error
/// (`deny_unknown_fields` cannot be used next to `flatten`).
#[derive(Debug, Deserialize)]
pub(super) struct ScheduleSection {
    pub name: String,
    pub cron: String,
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub tolerance: Option<Duration>,
    pub retry: Option<RetrySection>,
    #[serde(flatten)]
    pub webhook: toml::Table,
}

/// Reads `"100ms"`, `"5s"`, `"1h"`, and also a bare number of milliseconds.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Millis(u64),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Millis(ms)) => Ok(Some(Duration::from_millis(ms))),
        Some(Raw::Text(text)) => crate::config::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
