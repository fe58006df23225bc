//! The service's own settings: `[server]`, `[storage]`, the outgoing HTTP
//! settings of `[webhooks]`, `[log]`, `[plugins]`, `[webhooks.dlq]` and the
//! metrics namespace of `[observability]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{file, invalid, parse_duration, parse_size, positive, ConfigError};
use crate::store::{BackendSettings, PostgresSettings, Retention, Settings};
use crate::tls::TlsFiles;

/// The HTTP listener: ingest, admin API. Its `Debug` (in `server.rs`)
/// leaves the tokens out.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// When set, `/admin` requires `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// When not empty, `POST /events` requires `Authorization: Bearer`
    /// with one of these (several while a token is rotated).
    pub ingest_tokens: Vec<String>,
    /// Largest accepted request body on `/events`.
    pub max_body_bytes: usize,
    /// On SIGTERM, how long attempts in flight may finish; what is left
    /// stays in the outbox for the next start.
    pub shutdown_timeout: Duration,
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
    /// The distinct ways webhooks leave (client certificate, proxy), the
    /// `[webhooks]` one first; each gets its own HTTP client.
    pub egresses: Vec<std::sync::Arc<crate::delivery::egress::Egress>>,
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

/// `[server]`.
pub(super) fn server(raw: file::ServerSection) -> Result<ServerConfig, ConfigError> {
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen_text.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("{listen_text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })?;
    Ok(ServerConfig {
        listen,
        admin_token: raw.admin_token.filter(|t| !t.is_empty()),
        ingest_tokens: super::server::ingest_tokens(raw.ingest_token, raw.ingest_tokens)?,
        max_body_bytes: positive(
            raw.max_body_bytes,
            10 * 1024 * 1024,
            "server.max_body_bytes",
        )?,
        shutdown_timeout: raw.shutdown_timeout.unwrap_or(Duration::from_secs(10)),
    })
}

/// `[storage]`: sled (the default) or PostgreSQL. `tls` (`[observers] tls`)
/// supplies the files a PostgreSQL connection string names none of, as it
/// does for the PostgreSQL sources.
pub(super) fn storage(raw: file::StorageSection, tls: &TlsFiles) -> Result<Settings, ConfigError> {
    let path = PathBuf::from(raw.path.as_deref().unwrap_or("wasmhook-data"));
    let backend = match raw.backend.as_deref().unwrap_or("sled") {
        "sled" => {
            for (key, set) in [
                ("storage.postgres_url", raw.postgres_url.is_some()),
                ("storage.schema", raw.schema.is_some()),
                ("storage.lease", raw.lease.is_some()),
                ("storage.max_connections", raw.max_connections.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        key,
                        "is only read with storage.backend = \"postgres\" (the backend is sled)",
                    ));
                }
            }
            sled(&raw)?
        }
        "postgres" => {
            for (key, set) in [
                ("storage.cache_capacity_mb", raw.cache_capacity_mb.is_some()),
                ("storage.min_free_mb", raw.min_free_mb.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        key,
                        "is sled's; storage.backend = \"postgres\" does not read it",
                    ));
                }
            }
            BackendSettings::Postgres(Box::new(postgres(raw, tls)?))
        }
        other => {
            return Err(invalid(
                "storage.backend",
                format!("{other:?} is not a storage backend; expected \"sled\" or \"postgres\""),
            ))
        }
    };
    Ok(Settings {
        path,
        backend,
        // `[delivery_log] enabled`, set by the caller.
        delivery_log: true,
    })
}

/// `[storage]` with sled.
fn sled(raw: &file::StorageSection) -> Result<BackendSettings, ConfigError> {
    Ok(BackendSettings::Sled {
        cache_capacity_bytes: mebibytes(
            raw.cache_capacity_mb.unwrap_or(16),
            "storage.cache_capacity_mb",
        )?,
        min_free_bytes: match raw.min_free_mb {
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
    })
}

/// The shortest lease: the host renews leases every third of it, and a
/// shorter one would have nodes adopt rows from live nodes that were only
/// slow for a moment.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// `[storage]` with PostgreSQL.
fn postgres(raw: file::StorageSection, tls: &TlsFiles) -> Result<PostgresSettings, ConfigError> {
    let url = raw
        .postgres_url
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            invalid(
                "storage.postgres_url",
                "storage.backend = \"postgres\" needs a connection string like \
                 \"postgres://wasmhook@127.0.0.1:5432/app\"",
            )
        })?;
    let target = crate::source::postgres::client_config(&url, tls).map_err(|e| {
        invalid(
            "storage.postgres_url",
            format!(
                "{:?} is not a PostgreSQL connection string ({e})",
                crate::source::redact(&url)
            ),
        )
    })?;
    let schema = raw.schema.unwrap_or_else(|| "wasmhook".into());
    if !crate::store::valid_schema(&schema) {
        return Err(invalid(
            "storage.schema",
            format!(
                "{schema:?} is not a plain schema name (lower-case letters, digits and _, \
                 not starting with a digit or pg_, at most 63 bytes)"
            ),
        ));
    }
    let lease = raw.lease.unwrap_or(Duration::from_secs(30));
    if lease < MIN_LEASE {
        return Err(invalid(
            "storage.lease",
            format!("{lease:?} is too short; at least \"1s\" (the default is \"30s\")"),
        ));
    }
    Ok(PostgresSettings {
        target,
        schema,
        lease,
        max_connections: positive(raw.max_connections, 16, "storage.max_connections")?,
    })
}

/// The outgoing HTTP settings of `[webhooks]`; `path` is the config file's,
/// which `ca_file` is relative to.
pub(super) fn http(raw: &file::WebhooksSection, path: &Path) -> Result<HttpConfig, ConfigError> {
    Ok(HttpConfig {
        connect_timeout: Duration::from_millis(positive(
            raw.connect_timeout_ms,
            5_000,
            "webhooks.connect_timeout_ms",
        )?),
        request_timeout: Duration::from_millis(positive(
            raw.request_timeout_ms,
            30_000,
            "webhooks.request_timeout_ms",
        )?),
        max_concurrent: positive(raw.max_concurrent, 100, "webhooks.max_concurrent")?,
        allowed_networks: allowed_networks(raw.allowed_networks.as_deref())?,
        follow_redirects: raw.follow_redirects.unwrap_or(0),
        ca_pem: match raw.ca_file.as_deref() {
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
        egresses: Vec::new(),
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

/// `[log]`.
pub(super) fn log(raw: file::LogSection) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        json: match raw.format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        },
        level: raw.level.unwrap_or_else(|| "info".into()),
    })
}

/// `[plugins]`; the compile cache defaults to a folder of the database.
pub(super) fn plugins(
    raw: file::PluginsSection,
    storage: &Settings,
) -> Result<PluginsConfig, ConfigError> {
    Ok(PluginsConfig {
        dir: PathBuf::from(raw.dir.as_deref().unwrap_or("plugins")),
        cache_dir: raw
            .cache_dir
            .map_or_else(|| storage.path.join("plugin-cache"), PathBuf::from),
        watch: raw.watch.unwrap_or(true),
        watch_interval: Duration::from_millis(positive(
            raw.watch_interval_ms,
            500,
            "plugins.watch_interval_ms",
        )?),
    })
}

/// `[webhooks.dlq]`.
pub(super) fn dlq(raw: &file::DlqSection) -> Result<DlqConfig, ConfigError> {
    Ok(DlqConfig {
        retention: match raw.retention.as_deref() {
            None => Some(Duration::from_secs(7 * 24 * 3600)),
            Some("forever") => None,
            Some(text) => {
                Some(parse_duration(text).map_err(|e| invalid("webhooks.dlq.retention", e))?)
            }
        },
        max_bytes: raw
            .max_size
            .as_deref()
            .map(|text| parse_size(text).map_err(|e| invalid("webhooks.dlq.max_size", e)))
            .transpose()?,
    })
}

/// `[delivery_log]`: on by default, 7 days, at most 1 GB.
pub(super) fn delivery_log(
    raw: &file::DeliveryLogSection,
) -> Result<DeliveryLogConfig, ConfigError> {
    Ok(DeliveryLogConfig {
        enabled: raw.enabled.unwrap_or(true),
        retention: Retention {
            max_age: match raw.retention.as_deref() {
                None => Some(Duration::from_secs(7 * 24 * 3600)),
                Some("forever") => None,
                Some(text) => {
                    Some(parse_duration(text).map_err(|e| invalid("delivery_log.retention", e))?)
                }
            },
            max_bytes: match raw.max_size.as_deref() {
                None => Some(1_000_000_000),
                Some("unlimited") => None,
                Some(text) => {
                    Some(parse_size(text).map_err(|e| invalid("delivery_log.max_size", e))?)
                }
            },
        },
    })
}

/// `[delivery_log]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryLogConfig {
    /// Whether finished deliveries are kept.
    pub enabled: bool,
    /// How long, and how many bytes.
    pub retention: Retention,
}

/// `[observability.prometheus] namespace`: the prefix of every metric name.
pub(super) fn metrics_namespace(raw: file::ObservabilitySection) -> Result<String, ConfigError> {
    let namespace = raw
        .prometheus
        .namespace
        .unwrap_or_else(|| "wasmhook".into());
    if namespace.is_empty()
        || !namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || namespace.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(invalid(
            "observability.prometheus.namespace",
            format!("{namespace:?} is not a Prometheus name (letters, digits, _)"),
        ));
    }
    Ok(namespace)
}
