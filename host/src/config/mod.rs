//! Configuration: read once at start-up, validated, compiled.
//!
//! Phase one (`file`) reads the TOML into serde structs after `${VAR}`
//! expansion (`env`); phase two (`resolve` here) checks every value and
//! compiles conditions and templates, so a bad observer fails start-up with
//! the file and the key named, never an event later.

mod delivery;
mod env;
mod file;
mod schedule;
mod source;

pub use crate::source::SourceConfig;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::delivery::retry::{Backoff, RetryPolicy};
use crate::event::Operation;
use crate::incoming::scheme::{Encoding, HmacAlgorithm, HmacScheme, Scheme, SignatureFormat};
use crate::incoming::{Receiver, Verifier};
use crate::observer::condition::Condition;
use crate::observer::{Observer, Rule, Webhook};
use crate::payload::template::{JsonTemplate, TextTemplate};
use crate::payload::{self, BodySpec, Encryption};
use crate::plugin::{Plugins, Role};
use crate::signing::{standard, Algorithm, Signer};

/// Why a config could not be used; `Display` names the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{0}")]
    Syntax(String),
    /// A key has a value that cannot be used.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `observer[0].webhook[1].url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The HTTP listener: ingest, admin API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// When set, `/admin` requires `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Largest accepted request body on `/events`.
    pub max_body_bytes: usize,
    /// On SIGTERM, how long attempts in flight may finish; what is left
    /// stays in the outbox for the next start.
    pub shutdown_timeout: Duration,
}

/// The sled database holding the outbox and the DLQ.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// sled's page cache; bounded so that a large backlog stays on disk.
    pub cache_capacity_bytes: u64,
    /// Free space kept on the filesystem; under it new events are refused.
    pub min_free_bytes: u64,
}

/// Outgoing HTTP settings shared by all webhooks.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Deliveries in flight at once.
    pub max_concurrent: usize,
    /// Non-public networks deliveries may reach anyway (the SSRF guard
    /// refuses loopback, private, link-local, CGNAT and multicast otherwise).
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Redirect hops followed; 0 follows none.
    pub follow_redirects: usize,
    /// Extra trusted CA certificates (PEM) for HTTPS receivers, e.g. a
    /// private CA; read at start-up.
    pub ca_pem: Option<Vec<u8>>,
}

/// How long and how much the DLQ keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqConfig {
    /// Entries older than this are deleted; `None` keeps them.
    pub retention: Option<Duration>,
    /// The oldest entries are deleted beyond this many bytes.
    pub max_bytes: Option<u64>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `text` or `json`.
    pub json: bool,
    /// A tracing filter, e.g. `info` or `wasmhook=debug`.
    pub level: String,
}

/// The plugins folder.
#[derive(Debug, Clone)]
pub struct PluginsConfig {
    /// Folder of `NAME.wasm` (and `NAME.toml`) files.
    pub dir: PathBuf,
    /// Where compiled artifacts are cached.
    pub cache_dir: PathBuf,
    /// Rescan the folder while running (hot reload).
    pub watch: bool,
    /// How often to rescan.
    pub watch_interval: Duration,
}

/// A config key that names a plugin, checked once plugins are loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRef {
    /// The key, e.g. `observer[0] ("o").condition`.
    pub key: String,
    /// Plugin name.
    pub name: String,
    /// The role the key needs.
    pub role: Role,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub file: PathBuf,
    /// HTTP listener.
    pub server: ServerConfig,
    /// Outbox and DLQ database.
    pub storage: StorageConfig,
    /// Event source.
    pub source: SourceConfig,
    /// Outgoing HTTP.
    pub http: HttpConfig,
    /// Signing, when enabled.
    pub signer: Option<Signer>,
    /// Rate limits, concurrency per destination, breaker, batching defaults.
    pub controls: crate::delivery::limits::Controls,
    /// `[webhooks.retry]`, for observers without their own.
    pub retry: RetryPolicy,
    /// Log output.
    pub log: LogConfig,
    /// Plugins folder.
    pub plugins: PluginsConfig,
    /// Every plugin the observers and receivers use.
    pub plugin_refs: Vec<PluginRef>,
    /// Incoming webhook receivers.
    pub receivers: Vec<Receiver>,
    /// Prefix of every metric name.
    pub metrics_namespace: String,
    /// NATS server for `backend = "nats"` and receivers' `publish_subject`.
    pub nats_url: String,
    /// DLQ retention.
    pub dlq: DlqConfig,
    /// Observers in file order, then one per schedule (`schedule:NAME`).
    pub observers: Vec<Observer>,
    /// `[[schedule]]`s in file order.
    pub schedules: Vec<crate::schedule::CronSchedule>,
}

/// Parses `"100ms"`, `"5s"`, `"1h"`, `"7d"` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"100ms\", \"5s\" or \"1h\" ({e})"))
}

/// Parses `"1GB"`, `"500MB"`, `"64KiB"`, `"1048576"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{text:?} is not a size like \"500MB\" or \"1GB\"")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"500MB\" or \"1GB\""))?;
    Ok((value * factor) as u64)
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `path` is only used in messages and `env` looks up
    /// `${VAR}` references (a parameter so tests need not touch the process
    /// environment).
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let shown = path.display();
        let mut tree: toml::Value = toml::from_str(text)
            .map_err(|e| ConfigError::Syntax(format!("{shown}: {}", e.to_string().trim_end())))?;
        env::expand_tree(&mut tree, &mut String::new(), env).map_err(|e| in_file(e, path))?;
        let raw: file::FileConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                key: format!("{shown}: {key}"),
                // toml appends "in `table`", which the key already says.
                message: e
                    .into_inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })?;
        resolve(raw, path, env).map_err(|e| in_file(e, path))
    }

    /// Checks that every plugin the config names is loaded with the right
    /// role; the error names the key.
    pub fn check_plugins(&self, plugins: &Plugins) -> Result<(), ConfigError> {
        for r in &self.plugin_refs {
            plugins
                .expect(&r.name, r.role)
                .map_err(|e| ConfigError::Invalid {
                    key: format!("{}: {}", self.file.display(), r.key),
                    message: format!("{e} (plugins folder: {})", plugins.dir().display()),
                })?;
        }
        Ok(())
    }

    /// The observer with this name.
    pub fn observer(&self, name: &str) -> Option<&Observer> {
        self.observers.iter().find(|o| o.name == name)
    }
}

fn in_file(error: ConfigError, path: &Path) -> ConfigError {
    match error {
        ConfigError::Invalid { key, message } => ConfigError::Invalid {
            key: format!("{}: {key}", path.display()),
            message,
        },
        other => other,
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn resolve(
    raw: file::FileConfig,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let listen_text = raw.server.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("{listen_text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })?;
    let server = ServerConfig {
        listen,
        admin_token: raw.server.admin_token.filter(|t| !t.is_empty()),
        max_body_bytes: positive(
            raw.server.max_body_bytes,
            10 * 1024 * 1024,
            "server.max_body_bytes",
        )?,
        shutdown_timeout: raw
            .server
            .shutdown_timeout
            .unwrap_or(Duration::from_secs(10)),
    };
    let storage = StorageConfig {
        path: PathBuf::from(raw.storage.path.as_deref().unwrap_or("wasmhook-data")),
        cache_capacity_bytes: mebibytes(
            raw.storage.cache_capacity_mb.unwrap_or(16),
            "storage.cache_capacity_mb",
        )?,
        min_free_bytes: match raw.storage.min_free_mb {
            // sled writes in buffers of up to 8 MiB: a smaller reserve could
            // be overrun by one write, and sled does not recover from that.
            Some(mb) if mb > 0 && mb < 16 => {
                return Err(invalid(
                    "storage.min_free_mb",
                    "must be 0 (no reserve) or at least 16 (sled writes in 8 MiB buffers)",
                ))
            }
            Some(mb) => mebibytes(mb, "storage.min_free_mb")?,
            None => 256 * 1024 * 1024,
        },
    };
    let nats_url = raw
        .observers
        .nats_url
        .clone()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let source = source::resolve(raw.observers, &server)?;
    let http = HttpConfig {
        connect_timeout: Duration::from_millis(positive(
            raw.webhooks.connect_timeout_ms,
            5_000,
            "webhooks.connect_timeout_ms",
        )?),
        request_timeout: Duration::from_millis(positive(
            raw.webhooks.request_timeout_ms,
            30_000,
            "webhooks.request_timeout_ms",
        )?),
        max_concurrent: positive(raw.webhooks.max_concurrent, 100, "webhooks.max_concurrent")?,
        allowed_networks: allowed_networks(raw.webhooks.allowed_networks.as_deref())?,
        follow_redirects: raw.webhooks.follow_redirects.unwrap_or(0),
        ca_pem: match raw.webhooks.ca_file.as_deref() {
            None => None,
            Some(file) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                let pem = std::fs::read(&file).map_err(|e| {
                    invalid(
                        "webhooks.ca_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
                    return Err(invalid(
                        "webhooks.ca_file",
                        format!("{} holds no PEM certificate", file.display()),
                    ));
                }
                Some(pem)
            }
        },
    };
    let controls = delivery::resolve_global(&raw.webhooks, http.max_concurrent)?;
    let signer = resolve_signing(raw.webhooks.signing, "webhooks.signing")?;
    let retry = resolve_retry(
        &raw.webhooks.retry,
        &RetryPolicy::default(),
        "webhooks.retry",
    )?;
    let log = LogConfig {
        json: match raw.log.format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        },
        level: raw.log.level.unwrap_or_else(|| "info".into()),
    };

    let plugins = PluginsConfig {
        dir: PathBuf::from(raw.plugins.dir.as_deref().unwrap_or("plugins")),
        cache_dir: raw
            .plugins
            .cache_dir
            .map_or_else(|| storage.path.join("plugin-cache"), PathBuf::from),
        watch: raw.plugins.watch.unwrap_or(true),
        watch_interval: Duration::from_millis(positive(
            raw.plugins.watch_interval_ms,
            500,
            "plugins.watch_interval_ms",
        )?),
    };

    let dlq = DlqConfig {
        retention: match raw.webhooks.dlq.retention.as_deref() {
            None => Some(Duration::from_secs(7 * 24 * 3600)),
            Some("forever") => None,
            Some(text) => {
                Some(parse_duration(text).map_err(|e| invalid("webhooks.dlq.retention", e))?)
            }
        },
        max_bytes: raw
            .webhooks
            .dlq
            .max_size
            .as_deref()
            .map(|text| parse_size(text).map_err(|e| invalid("webhooks.dlq.max_size", e)))
            .transpose()?,
    };
    let metrics_namespace = raw
        .observability
        .prometheus
        .namespace
        .unwrap_or_else(|| "wasmhook".into());
    if metrics_namespace.is_empty()
        || !metrics_namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || metrics_namespace.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(invalid(
            "observability.prometheus.namespace",
            format!("{metrics_namespace:?} is not a Prometheus name (letters, digits, _)"),
        ));
    }
    let mut refs = Vec::new();
    let mut receivers = Vec::new();
    for (name, section) in raw.webhooks.incoming {
        if let Some(receiver) = resolve_receiver(&name, section, &mut refs)? {
            let key = format!("webhooks.incoming.{name}.path");
            if matches!(
                receiver.path.as_str(),
                "/events" | "/healthz" | "/readyz" | "/metrics"
            ) || receiver.path.starts_with("/admin")
            {
                return Err(invalid(
                    key,
                    format!("{:?} is a path wasmhook uses itself", receiver.path),
                ));
            }
            if let Some(other) = receivers
                .iter()
                .find(|r: &&Receiver| r.path == receiver.path)
            {
                return Err(invalid(
                    key,
                    format!(
                        "{:?} is also the path of receiver {:?}",
                        receiver.path, other.name
                    ),
                ));
            }
            receivers.push(receiver);
        }
    }
    let receiver_names: Vec<String> = receivers
        .iter()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    let mut observers = Vec::with_capacity(raw.observer.len());
    for (index, section) in raw.observer.into_iter().enumerate() {
        let key = format!("observer[{index}]");
        if observers.iter().any(|o: &Observer| o.name == section.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("observer name {:?} is used twice", section.name),
            ));
        }
        // Events from a receiver carry the provider's event types
        // (`push`), not INSERT/UPDATE/DELETE.
        let any_operation = receiver_names.contains(&section.entity.trim().to_ascii_lowercase());
        observers.push(resolve_observer(
            section,
            &key,
            &retry,
            env,
            &mut refs,
            any_operation,
        )?);
    }
    let schedules = schedule::resolve(raw.schedule, &retry, env, &mut refs, &mut observers)?;
    let max_payload_bytes = positive(
        raw.webhooks.max_payload_bytes,
        10 * 1024 * 1024,
        "webhooks.max_payload_bytes",
    )?;
    for webhook in observers.iter_mut().flat_map(|o| o.webhooks.iter_mut()) {
        webhook
            .request
            .max_payload_bytes
            .get_or_insert(max_payload_bytes);
    }
    Ok(Config {
        file: path.to_path_buf(),
        server,
        storage,
        source,
        http,
        signer,
        controls,
        retry,
        log,
        plugins,
        plugin_refs: refs,
        receivers,
        metrics_namespace,
        dlq,
        nats_url,
        observers,
        schedules,
    })
}

/// `["127.0.0.0/8", "10.1.2.3", "::1"]`: networks, or single addresses.
fn allowed_networks(raw: Option<&[String]>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let mut networks = Vec::new();
    for (i, text) in raw.unwrap_or_default().iter().enumerate() {
        let text = text.trim();
        let network = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                invalid(
                    format!("webhooks.allowed_networks[{i}]"),
                    format!("{text:?} is not a network like \"127.0.0.0/8\" or an address"),
                )
            })?;
        networks.push(network);
    }
    Ok(networks)
}

/// Sizes are written in MiB; a number too large for a byte count would
/// otherwise wrap silently in release builds.
fn mebibytes(mb: u64, key: &str) -> Result<u64, ConfigError> {
    mb.checked_mul(1024 * 1024)
        .ok_or_else(|| invalid(key, format!("{mb} MiB is too large (over 16 EiB)")))
}

fn positive<T: PartialOrd + Default>(
    value: Option<T>,
    default: T,
    key: &str,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if v > T::default() => Ok(v),
        Some(_) => Err(invalid(key, "must be greater than 0")),
    }
}

fn resolve_signing(raw: file::SigningSection, key: &str) -> Result<Option<Signer>, ConfigError> {
    let secrets: Vec<String> = match (raw.secret, raw.secrets) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                key,
                "set secret or secrets (newest first, for rotation), not both",
            ))
        }
        (Some(secret), None) => vec![secret],
        (None, Some(secrets)) => secrets,
        (None, None) => Vec::new(),
    };
    let enabled = raw.enabled.unwrap_or(!secrets.is_empty());
    if !enabled {
        return Ok(None);
    }
    if secrets.is_empty() || secrets.iter().any(String::is_empty) {
        return Err(invalid(
            format!("{key}.secret"),
            "signing is enabled but no secret is set (or one of secrets is empty)",
        ));
    }
    match raw.scheme.as_deref().unwrap_or("fraiseql") {
        "standard-webhooks" => {
            if raw.algorithm.as_deref().is_some_and(|a| a != "sha256") {
                return Err(invalid(
                    format!("{key}.algorithm"),
                    "Standard Webhooks signs with sha256 only",
                ));
            }
            if raw.header.is_some() || raw.timestamp_header.is_some() {
                return Err(invalid(
                    key,
                    "Standard Webhooks fixes its header names (webhook-id, webhook-timestamp, webhook-signature); remove header and timestamp_header",
                ));
            }
            let texts: Vec<&str> = secrets.iter().map(String::as_str).collect();
            Signer::standard_webhooks(&texts)
                .map(Some)
                .map_err(|e| invalid(format!("{key}.secrets"), e.to_string()))
        }
        "fraiseql-v2" => {
            if raw.algorithm.as_deref().is_some_and(|a| a != "sha256") {
                return Err(invalid(
                    format!("{key}.algorithm"),
                    "FraiseQL v2 signs with sha256 only",
                ));
            }
            if raw.header.is_some() || raw.timestamp_header.is_some() {
                return Err(invalid(
                    key,
                    "FraiseQL v2 fixes its header names (X-FraiseQL-Signature-256, X-FraiseQL-Event-Id); remove header and timestamp_header",
                ));
            }
            let keys: Vec<&[u8]> = secrets.iter().map(String::as_bytes).collect();
            Ok(Signer::fraiseql_v2(&keys))
        }
        "fraiseql" => {
            let algorithm = match raw.algorithm.as_deref().unwrap_or("sha256") {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                other => {
                    return Err(invalid(
                        format!("{key}.algorithm"),
                        format!("{other:?} is not \"sha256\" or \"sha512\""),
                    ))
                }
            };
            let header = raw.header.unwrap_or_else(|| "X-Wasmhook-Signature".into());
            let timestamp_header = raw
                .timestamp_header
                .unwrap_or_else(|| "X-Wasmhook-Timestamp".into());
            for (name_key, name) in [("header", &header), ("timestamp_header", &timestamp_header)] {
                if !valid_header_name(name) {
                    return Err(invalid(
                        format!("{key}.{name_key}"),
                        format!("{name:?} is not a valid HTTP header name"),
                    ));
                }
            }
            let older: Vec<&[u8]> = secrets[1..].iter().map(|s| s.as_bytes()).collect();
            Ok(Some(
                Signer::new(algorithm, secrets[0].as_bytes(), header, timestamp_header)
                    .with_older(&older),
            ))
        }
        other => Err(invalid(
            format!("{key}.scheme"),
            format!("{other:?} is not \"fraiseql\", \"fraiseql-v2\" or \"standard-webhooks\""),
        )),
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn resolve_retry(
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

fn resolve_observer(
    raw: file::ObserverSection,
    key: &str,
    global_retry: &RetryPolicy,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &mut Vec<PluginRef>,
    any_operation: bool,
) -> Result<Observer, ConfigError> {
    if raw.name.trim().is_empty() {
        return Err(invalid(format!("{key}.name"), "must not be empty"));
    }
    let key = format!("{key} ({:?})", raw.name);
    if raw.entity.trim().is_empty() {
        return Err(invalid(format!("{key}.entity"), "must not be empty"));
    }
    let events = match raw.event {
        None => Vec::new(),
        Some(file::OneOrMany::One(name)) => {
            vec![operation(&name, &format!("{key}.event"), any_operation)?]
        }
        Some(file::OneOrMany::Many(names)) => names
            .iter()
            .enumerate()
            .map(|(i, name)| operation(name, &format!("{key}.event[{i}]"), any_operation))
            .collect::<Result<_, _>>()?,
    };
    let condition = compile_condition(raw.condition.as_deref(), &format!("{key}.condition"), refs)?;
    let retry = match &raw.retry {
        Some(section) => resolve_retry(section, global_retry, &format!("{key}.retry"))?,
        None => global_retry.clone(),
    };
    if raw.webhook.is_empty() {
        return Err(invalid(
            format!("{key}.webhook"),
            "an observer needs at least one [[observer.webhook]]",
        ));
    }
    let webhooks = raw
        .webhook
        .into_iter()
        .enumerate()
        .map(|(i, w)| resolve_webhook(w, &format!("{key}.webhook[{i}]"), env, refs))
        .collect::<Result<_, _>>()?;
    Ok(Observer {
        name: raw.name,
        entity: raw.entity.trim().to_ascii_lowercase(),
        events,
        condition,
        retry,
        webhooks,
        scheduled: false,
    })
}

fn operation(name: &str, key: &str, any_operation: bool) -> Result<Operation, ConfigError> {
    match Operation::parse(name) {
        Operation::Other(other) if !any_operation => Err(invalid(
            key,
            format!("{other:?} is not INSERT, UPDATE or DELETE"),
        )),
        op => Ok(op),
    }
}

/// A condition is an expression, or `plugin:NAME`.
fn compile_condition(
    source: Option<&str>,
    key: &str,
    refs: &mut Vec<PluginRef>,
) -> Result<Option<Rule>, ConfigError> {
    let Some(text) = source else {
        return Ok(None);
    };
    if let Some(name) = plugin_name(text, key, Role::Condition, refs)? {
        return Ok(Some(Rule::Plugin(name)));
    }
    Condition::parse(text)
        .map(|c| Some(Rule::Expr(c)))
        .map_err(|e| invalid(key, format!("{e} in {text:?}")))
}

/// `plugin:NAME` -> `Some(NAME)`, recorded for the check after loading.
fn plugin_name(
    text: &str,
    key: &str,
    role: Role,
    refs: &mut Vec<PluginRef>,
) -> Result<Option<String>, ConfigError> {
    let Some(name) = text.trim().strip_prefix("plugin:") else {
        return Ok(None);
    };
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            key,
            format!("{text:?} is not \"plugin:NAME\" with NAME the file stem of a .wasm"),
        ));
    }
    refs.push(PluginRef {
        key: key.to_string(),
        name: name.to_string(),
        role,
    });
    Ok(Some(name.to_string()))
}

/// One `[webhooks.incoming.NAME]`; `None` when `enabled = false`.
fn resolve_receiver(
    name: &str,
    raw: file::IncomingSection,
    refs: &mut Vec<PluginRef>,
) -> Result<Option<Receiver>, ConfigError> {
    let key = format!("webhooks.incoming.{name}");
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    if !raw.path.starts_with('/') {
        return Err(invalid(
            format!("{key}.path"),
            format!("{:?} must start with /", raw.path),
        ));
    }
    let mut secrets: Vec<String> = raw.secrets.unwrap_or_default();
    secrets.extend(raw.secret);
    secrets.retain(|s| !s.is_empty());
    if secrets.is_empty() {
        return Err(invalid(
            format!("{key}.secret"),
            "a receiver needs a secret (or secrets = [new, old])",
        ));
    }
    let tolerance = raw.tolerance_seconds.unwrap_or(300);
    let hmac_only = [
        ("signature_header", raw.signature_header.is_some()),
        ("signature_format", raw.signature_format.is_some()),
        ("signature_encoding", raw.signature_encoding.is_some()),
        ("algorithm", raw.algorithm.is_some()),
        ("timestamp_header", raw.timestamp_header.is_some()),
    ];
    let scheme_name = raw.scheme.trim();
    if scheme_name != "hmac" {
        if let Some((option, _)) = hmac_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                format!("{key}.{option}"),
                format!("only applies to scheme = \"hmac\", not {scheme_name:?}"),
            ));
        }
    }
    let raw_bytes = |secrets: &[String]| {
        secrets
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect::<Vec<_>>()
    };
    let (verifier, secrets) = if let Some(plugin) =
        plugin_name(scheme_name, &format!("{key}.scheme"), Role::Verifier, refs)?
    {
        (Verifier::Plugin(plugin), raw_bytes(&secrets))
    } else {
        match scheme_name {
            "github" => (Verifier::Scheme(Scheme::Github), raw_bytes(&secrets)),
            "stripe" => (
                Verifier::Scheme(Scheme::Stripe {
                    tolerance_seconds: tolerance,
                }),
                raw_bytes(&secrets),
            ),
            "fraiseql-v2" => (
                Verifier::Scheme(Scheme::FraiseqlV2 {
                    tolerance_seconds: tolerance,
                }),
                raw_bytes(&secrets),
            ),
            "standard-webhooks" => {
                let decoded = secrets
                    .iter()
                    .map(|s| standard::decode_secret(s))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.secret"),
                            "must be a whsec_ secret: base64 after the whsec_ prefix",
                        )
                    })?;
                (
                    Verifier::Scheme(Scheme::StandardWebhooks {
                        tolerance_seconds: tolerance,
                    }),
                    decoded,
                )
            }
            "hmac" => {
                let algorithm = match raw.algorithm.as_deref().unwrap_or("sha256") {
                    "sha256" => HmacAlgorithm::Sha256,
                    "sha512" => HmacAlgorithm::Sha512,
                    other => {
                        return Err(invalid(
                            format!("{key}.algorithm"),
                            format!("{other:?} is not \"sha256\" or \"sha512\""),
                        ))
                    }
                };
                let encoding = match raw.signature_encoding.as_deref().unwrap_or("hex") {
                    "hex" => Encoding::Hex,
                    "base64" => Encoding::Base64,
                    other => {
                        return Err(invalid(
                            format!("{key}.signature_encoding"),
                            format!("{other:?} is not \"hex\" or \"base64\""),
                        ))
                    }
                };
                let signature_format = SignatureFormat::parse(
                    raw.signature_format.as_deref().unwrap_or("{signature}"),
                )
                .map_err(|e| invalid(format!("{key}.signature_format"), e))?;
                let signature_header = raw.signature_header.ok_or_else(|| {
                    invalid(
                        format!("{key}.signature_header"),
                        "scheme = \"hmac\" needs the header that carries the signature",
                    )
                })?;
                let scheme = HmacScheme {
                    algorithm,
                    signature_header,
                    signature_format,
                    encoding,
                    timestamp_header: raw.timestamp_header,
                    tolerance_seconds: tolerance,
                };
                (Verifier::Scheme(Scheme::Hmac(scheme)), raw_bytes(&secrets))
            }
            other => {
                return Err(invalid(
                    format!("{key}.scheme"),
                    format!(
                    "{other:?} is not github, stripe, standard-webhooks, fraiseql-v2, hmac or \"plugin:NAME\""
                ),
                ))
            }
        }
    };
    Ok(Some(Receiver {
        name: name.to_string(),
        path: raw.path,
        verifier,
        secrets,
        events: raw.events.unwrap_or_default(),
        max_payload_bytes: positive(
            raw.max_payload_bytes,
            1 << 20,
            &format!("{key}.max_payload_bytes"),
        )?,
        replay_window: Duration::from_secs(tolerance.max(60)),
        publish_subject: match raw.publish_subject {
            Some(s) if s.trim().is_empty() || s.contains(char::is_whitespace) => {
                return Err(invalid(
                    format!("{key}.publish_subject"),
                    format!("{s:?} is not a NATS subject"),
                ))
            }
            other => other,
        },
    }))
}

/// Keys are given as hex or base64 (standard alphabet); `key` names the
/// setting in the error, which never shows the key itself.
pub fn decode_key(text: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine;
    let text = text.trim();
    if text.len() % 2 == 0 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(text).map_err(|e| invalid(key, e.to_string()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| invalid(key, "must be hex or base64 (the key itself is not shown)"))
}

fn resolve_webhook(
    mut raw: file::WebhookSection,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    refs: &mut Vec<PluginRef>,
) -> Result<Webhook, ConfigError> {
    let controls = delivery::resolve_webhook(&raw, key)?;
    let signing = match raw.signing.take() {
        None => None,
        Some(file::WebhookSigning::Switch(true)) => {
            return Err(invalid(
                format!("{key}.signing"),
                "`signing = true` is the default; give a table with this webhook's own secret, or false",
            ))
        }
        Some(file::WebhookSigning::Switch(false)) => Some(None),
        Some(file::WebhookSigning::Own(section)) => {
            Some(resolve_signing(section, &format!("{key}.signing"))?)
        }
    };
    let url = match (raw.url, raw.url_env) {
        (Some(url), None) => url,
        (None, Some(var)) => env(&var).ok_or_else(|| {
            invalid(
                format!("{key}.url_env"),
                format!("environment variable {var} is not set"),
            )
        })?,
        (Some(_), Some(_)) => return Err(invalid(key, "set url or url_env, not both")),
        (None, None) => {
            return Err(invalid(
                format!("{key}.url"),
                "a webhook needs url or url_env",
            ))
        }
    };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| invalid(format!("{key}.url"), format!("{url:?} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            format!("{key}.url"),
            format!("{url:?} is not an http or https URL"),
        ));
    }
    let method = raw
        .method
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "GET" | "DELETE") {
        return Err(invalid(
            format!("{key}.method"),
            format!("{method:?} is not POST, PUT, PATCH, GET or DELETE"),
        ));
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        if !valid_header_name(&name) {
            return Err(invalid(
                format!("{key}.headers"),
                format!("{name:?} is not a valid HTTP header name"),
            ));
        }
        let template = TextTemplate::parse(&value)
            .map_err(|e| invalid(format!("{key}.headers.{name}"), e.to_string()))?;
        headers.push((name, template));
    }
    let body = match (raw.body, raw.body_template) {
        (Some(_), Some(_)) => return Err(invalid(key, "set body or body_template, not both")),
        (Some(value), None) => BodySpec::Json(
            JsonTemplate::parse(&value)
                .map_err(|e| invalid(format!("{key}.{}", e.location), e.message))?,
        ),
        (None, Some(text)) => BodySpec::Text(
            TextTemplate::parse(&text)
                .map_err(|e| invalid(format!("{key}.body_template"), e.to_string()))?,
        ),
        (None, None) => BodySpec::Entity,
    };
    let condition = compile_condition(raw.condition.as_deref(), &format!("{key}.condition"), refs)?;
    let transform = match raw.transform.as_deref() {
        None => None,
        Some(text) => Some(
            plugin_name(text, &format!("{key}.transform"), Role::Transform, refs)?.ok_or_else(
                || {
                    invalid(
                        format!("{key}.transform"),
                        format!("{text:?} is not \"plugin:NAME\""),
                    )
                },
            )?,
        ),
    };
    let encryption = match raw.encryption {
        Some(section) if section.enabled != Some(false) => Some(resolve_encryption(
            section,
            &format!("{key}.encryption"),
            refs,
        )?),
        _ => None,
    };
    if raw.max_payload_bytes == Some(0) {
        return Err(invalid(
            format!("{key}.max_payload_bytes"),
            "must be greater than 0",
        ));
    }
    let index = key
        .rsplit_once('[')
        .map_or("0", |(_, i)| i.trim_end_matches(']'));
    Ok(Webhook {
        name: raw.name.unwrap_or_else(|| index.to_string()),
        url,
        method,
        condition,
        request: payload::Spec {
            headers,
            body,
            transform,
            encryption,
            max_payload_bytes: raw.max_payload_bytes,
        },
        controls,
        signing,
    })
}

/// `encryption = { plugin = "NAME", key }` or the built-in
/// `{ algorithm = "AES-256-GCM", key, fields = [..] }`.
fn resolve_encryption(
    section: file::EncryptionSection,
    ekey: &str,
    refs: &mut Vec<PluginRef>,
) -> Result<Encryption, ConfigError> {
    let key = decode_key(&section.key, &format!("{ekey}.key"))?;
    match (section.plugin, section.algorithm) {
        (Some(_), Some(_)) => Err(invalid(
            ekey,
            "set plugin or algorithm, not both (the plugin does its own encryption)",
        )),
        (Some(plugin), None) => {
            if section.fields.is_some() {
                return Err(invalid(
                    format!("{ekey}.fields"),
                    "the plugin takes its fields from its own NAME.toml config",
                ));
            }
            refs.push(PluginRef {
                key: format!("{ekey}.plugin"),
                name: plugin.clone(),
                role: Role::Encryption,
            });
            Ok(Encryption::Plugin { name: plugin, key })
        }
        (None, algorithm) => {
            let algorithm = algorithm.unwrap_or_else(|| "AES-256-GCM".into());
            if !algorithm.eq_ignore_ascii_case("AES-256-GCM") {
                return Err(invalid(
                    format!("{ekey}.algorithm"),
                    format!("{algorithm:?} is not \"AES-256-GCM\" (or use plugin = \"NAME\")"),
                ));
            }
            let fields = section.fields.unwrap_or_default();
            if fields.is_empty() || fields.iter().any(|f| f.trim().is_empty()) {
                return Err(invalid(
                    format!("{ekey}.fields"),
                    "name the body fields to encrypt, e.g. fields = [\"email\", \"ssn\"]",
                ));
            }
            crate::payload::encrypt::FieldCipher::new(&key, fields)
                .map(|cipher| Encryption::Fields(Box::new(cipher)))
                .map_err(|e| invalid(format!("{ekey}.key"), e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests;
