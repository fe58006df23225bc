//! Configuration: read once at start-up, validated, compiled.
//!
//! Phase one (`file`) reads the TOML into serde structs after `${VAR}`
//! expansion (`env`); phase two (`resolve` here) checks every value and
//! compiles conditions and templates, so a bad observer fails start-up with
//! the file and the key named, never an event later.
//!
//! `resolve` only orchestrates, section by section: `service` (server,
//! storage, HTTP, log, plugins folder, DLQ, metrics), `source`
//! (`[observers]`), `delivery` (rate limits, breaker, batching), `signing`,
//! `retry`, `incoming` (receivers), `observer` and `webhook`, `schedule`.

mod delivery;
mod egress;
mod env;
mod file;
mod incoming;
mod observer;
mod retry;
mod schedule;
mod seeds;
mod server;
mod service;
mod signing;
mod source;
mod suggest;
mod webhook;

pub use crate::source::SourceConfig;
pub use service::{DlqConfig, HttpConfig, LogConfig, PluginsConfig, ServerConfig};
pub use webhook::decode_key;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::retry::RetryPolicy;
use crate::incoming::Receiver;
use crate::observer::condition::Condition;
use crate::observer::{Observer, Rule};
use crate::plugin::{Plugins, Role};
use crate::signing::Signer;

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
    pub storage: crate::store::Settings,
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
    /// Credentials and TLS for that server.
    pub nats_auth: crate::source::nats_auth::NatsAuth,
    /// DLQ retention.
    pub dlq: DlqConfig,
    /// `[delivery_log]`.
    pub delivery_log: service::DeliveryLogConfig,
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

/// Parses a point in time, as unix milliseconds: an RFC 3339 time
/// (`2026-11-24T10:00:00Z`) or an age back from now (`2h`: two hours ago).
pub fn parse_instant(text: &str) -> Result<u64, String> {
    if let Ok(age) = parse_duration(text) {
        return Ok(crate::clock::now_ms().saturating_sub(age.as_millis() as u64));
    }
    let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
        format!("{text:?} is neither a time like 2026-11-24T10:00:00Z nor an age like 2h")
    })?;
    Ok(time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

/// Parses a time to come, as unix milliseconds: an RFC 3339 time, or a
/// wait from now (`+30s`, `in 2h`).
pub fn parse_at(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if let Some(wait) = trimmed
        .strip_prefix('+')
        .or_else(|| trimmed.strip_prefix("in "))
    {
        let wait = parse_duration(wait)?;
        return Ok(crate::clock::now_ms() + wait.as_millis() as u64);
    }
    let time = humantime::parse_rfc3339_weak(trimmed).map_err(|_| {
        format!("{text:?} is neither a time like 2026-11-24T10:00:00Z nor a wait like +30s")
    })?;
    Ok(time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
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
                message: suggest::unknown_field(
                    e.into_inner()
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default(),
                ),
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
    mut raw: file::FileConfig,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    seeds::fold(&mut raw)?;
    // Sections in this order, so that of several mistakes the same one is
    // reported first, whichever file holds its check.
    let exposure = server::Exposure::read(&raw.server)?;
    let server = service::server(raw.server)?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Before storage: a PostgreSQL storage connection takes its defaults.
    let tls = source::tls_files(raw.observers.tls.as_ref(), base)?;
    let mut storage = service::storage(raw.storage, &tls)?;
    let delivery_log = service::delivery_log(&raw.delivery_log)?;
    storage.delivery_log = delivery_log.enabled;
    let nats_url = raw
        .observers
        .nats_url
        .clone()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let nats_auth = source::nats_auth(&raw.observers, &tls, base)?;
    let source = source::resolve(raw.observers, &server, &tls, &nats_auth)?;
    exposure.check(&server, &source)?;
    let mut http = service::http(&raw.webhooks, path)?;
    let default_egress = Arc::new(egress::defaults(
        raw.webhooks.client_cert.as_ref(),
        raw.webhooks.proxy.as_deref(),
        raw.webhooks.no_proxy.as_deref(),
        base,
    )?);
    let outgoing = egress::Outgoing {
        default: &default_egress,
        base,
    };
    let controls = delivery::resolve_global(&raw.webhooks, http.max_concurrent)?;
    let signer = signing::resolve(raw.webhooks.signing, "webhooks.signing")?;
    let retry = retry::resolve(
        &raw.webhooks.retry,
        &RetryPolicy::default(),
        "webhooks.retry",
    )?;
    let log = service::log(raw.log)?;
    let plugins = service::plugins(raw.plugins, &storage)?;
    let dlq = service::dlq(&raw.webhooks.dlq)?;
    let metrics_namespace = service::metrics_namespace(raw.observability)?;
    let mut refs = Vec::new();
    let receivers = incoming::resolve_all(raw.webhooks.incoming, &mut refs)?;
    let mut observers =
        observer::resolve_all(raw.observer, &receivers, &retry, env, &outgoing, &mut refs)?;
    let schedules = schedule::resolve(
        raw.schedule,
        &retry,
        env,
        &outgoing,
        &mut refs,
        &mut observers,
    )?;
    http.egresses = egress::intern(
        default_egress.clone(),
        observers
            .iter_mut()
            .flat_map(|o| o.webhooks.iter_mut())
            .map(|w| &mut w.egress),
    );
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
        delivery_log,
        nats_url,
        nats_auth,
        observers,
        schedules,
    })
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

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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

#[cfg(test)]
mod tests;
