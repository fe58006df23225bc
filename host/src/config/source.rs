//! `[observers]`: which bus events come from, and how to read it. The
//! settings each bus needs are the source's own types (`source/`); this
//! reads and checks them.

use std::time::Duration;

use super::{file, invalid, positive, ConfigError, ServerConfig};
use crate::source::fraiseql_changelog::{self, ChangelogConfig, Start};
use crate::source::jetstream::JetStreamConfig;
use crate::source::nats_auth::NatsAuth;
use crate::source::postgres::ListenConfig;
use crate::source::postgres_log::{LogConfig, TableName};
use crate::source::redis::PubSubConfig;
use crate::source::redis_streams::StreamsConfig;
use crate::source::{redact, SourceConfig};
use crate::tls::TlsFiles;

fn non_empty_list(
    list: Option<Vec<String>>,
    default: &[&str],
    key: &str,
) -> Result<Vec<String>, ConfigError> {
    let list = list.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    if list.is_empty() || list.iter().any(|s| s.trim().is_empty()) {
        return Err(invalid(key, "needs at least one non-empty entry"));
    }
    Ok(list)
}

fn name(value: Option<String>, default: &str, key: &str) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            key,
            format!("{value:?} is not a name (letters, digits, - and _)"),
        ));
    }
    Ok(value)
}

fn postgres_url(raw: Option<String>, backend: &str) -> Result<String, ConfigError> {
    let url = raw.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
        invalid(
            "observers.postgres_url",
            format!("backend {backend:?} needs a connection string like \"postgres://user@127.0.0.1:5432/app\""),
        )
    })?;
    crate::tls::postgres::PgTarget::parse(&url, &crate::tls::TlsFiles::default()).map_err(|e| {
        invalid(
            "observers.postgres_url",
            format!(
                "{:?} is not a PostgreSQL connection string ({e})",
                redact(&url)
            ),
        )
    })?;
    Ok(url)
}

/// A SQL identifier, optionally schema-qualified (`wasmhook.event_log`):
/// it is spliced into statements, so only plain names pass (the rule of
/// [`TableName::parse`], which `wasmhook pg install` applies too).
pub(crate) fn sql_identifier(value: &str, key: &str) -> Result<(), ConfigError> {
    TableName::parse(value)
        .map(|_| ())
        .map_err(|e| invalid(key, e.to_string()))
}

/// A channel name: one plain identifier.
fn channel_name(value: &str, key: &str) -> Result<(), ConfigError> {
    if crate::source::postgres_log::is_plain_name(value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not a channel name (lowercase letters, digits and _)"),
        ))
    }
}

/// A consumer name that is stable across restarts of one process and
/// distinct between processes: the host name and the listen port.
fn default_consumer(server: &ServerConfig) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wasmhook".into());
    format!("{host}-{}", server.listen.port())
}

/// What FraiseQL 2.19 publishes on core NATS: its server's mutations
/// (`fraiseql.mutation.<Type>.<OP>`), its observer library's default prefix
/// (`entity.change`), and CDC sinks' subjects such as `fraiseql.<tenant>.<table>`.
const NATS_SUBJECTS: [&str; 2] = ["fraiseql.>", "entity.change.>"];

/// The stream fraiseql-server creates for its mutations, and its subjects:
/// whichever of FraiseQL and wasmhook starts first creates it, and the other
/// binds to it (JetStream refuses two streams over overlapping subjects).
const JETSTREAM_STREAM: &str = "fraiseql_events";
/// See [`JETSTREAM_STREAM`].
const JETSTREAM_SUBJECT: &str = "fraiseql.mutation.>";

/// FraiseQL's own durable consumer: sharing it would split FraiseQL's
/// events between its workers and wasmhook.
const FRAISEQL_CONSUMER: &str = "fraiseql_observer_worker";

fn own_consumer(consumer: String) -> Result<String, ConfigError> {
    if consumer == FRAISEQL_CONSUMER {
        return Err(invalid(
            "observers.consumer",
            format!(
                "{consumer:?} is FraiseQL's own consumer: sharing it would take events from \
                 FraiseQL's observer workers; use a name of wasmhook's own (the default is \"wasmhook\")"
            ),
        ));
    }
    Ok(consumer)
}

/// Checks `[observers]` for the chosen backend. Keys of other backends are
/// ignored, so switching backends is a one-line change.
/// A file the config names (`key`), relative to the config file's folder
/// (`base`), checked to exist now rather than at each connect.
fn readable(
    value: &Option<String>,
    key: &str,
    base: &std::path::Path,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let path = base.join(value);
    std::fs::metadata(&path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(Some(path))
}

/// `[observers] tls`, its files relative to the config file's folder
/// (`base`) and checked to be readable now rather than at each connect.
pub(super) fn tls_files(
    raw: Option<&file::TlsSection>,
    base: &std::path::Path,
) -> Result<TlsFiles, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TlsFiles::default());
    };
    let files = TlsFiles {
        ca_file: readable(&raw.ca_file, "observers.tls.ca_file", base)?,
        cert_file: readable(&raw.cert_file, "observers.tls.cert_file", base)?,
        key_file: readable(&raw.key_file, "observers.tls.key_file", base)?,
    };
    if files.cert_file.is_some() != files.key_file.is_some() {
        return Err(invalid(
            "observers.tls",
            "a client certificate needs both cert_file and key_file",
        ));
    }
    Ok(files)
}

/// `[observers]` `token`, `user`/`password`, `nkey_seed_file` or
/// `credentials_file` (at most one), with the `tls` files: how wasmhook
/// signs in to NATS. Files are relative to the config file's folder.
pub(super) fn nats_auth(
    raw: &file::ObserversSection,
    tls: &TlsFiles,
    base: &std::path::Path,
) -> Result<NatsAuth, ConfigError> {
    let user = match (&raw.user, &raw.password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        (None, None) => None,
        _ => return Err(invalid("observers.user", "user and password go together")),
    };
    let auth = NatsAuth {
        token: raw.token.clone().filter(|t| !t.is_empty()),
        user,
        nkey_seed_file: readable(&raw.nkey_seed_file, "observers.nkey_seed_file", base)?,
        credentials_file: readable(&raw.credentials_file, "observers.credentials_file", base)?,
        tls: tls.clone(),
    };
    let methods = [
        auth.token.is_some(),
        auth.user.is_some(),
        auth.nkey_seed_file.is_some(),
        auth.credentials_file.is_some(),
    ];
    if methods.iter().filter(|set| **set).count() > 1 {
        return Err(invalid(
            "observers",
            "set one of token, user/password, nkey_seed_file and credentials_file",
        ));
    }
    Ok(auth)
}

pub(super) fn resolve(
    raw: file::ObserversSection,
    server: &ServerConfig,
    tls: &TlsFiles,
    nats_auth: &NatsAuth,
) -> Result<SourceConfig, ConfigError> {
    let nats_url = raw
        .nats_url
        .clone()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let redis_url = raw
        .redis_url
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    match raw.backend.as_deref().unwrap_or("http") {
        "http" => Ok(SourceConfig::Http),
        "nats" => Ok(SourceConfig::Nats {
            url: nats_url,
            subjects: non_empty_list(raw.subjects, &NATS_SUBJECTS, "observers.subjects")?,
            auth: nats_auth.clone(),
        }),
        "jetstream" => Ok(SourceConfig::JetStream(JetStreamConfig {
            url: nats_url,
            subjects_configured: raw.subjects.is_some(),
            subjects: non_empty_list(raw.subjects, &[JETSTREAM_SUBJECT], "observers.subjects")?,
            stream: name(raw.stream, JETSTREAM_STREAM, "observers.stream")?,
            consumer: own_consumer(name(raw.consumer, "wasmhook", "observers.consumer")?)?,
            ack_wait: Duration::from_millis(positive(
                raw.ack_wait_ms,
                30_000,
                "observers.ack_wait_ms",
            )?),
            auth: nats_auth.clone(),
        })),
        "redis" => Ok(SourceConfig::Redis(PubSubConfig {
            url: redis_url,
            channels: non_empty_list(raw.channels, &["fraiseql.*"], "observers.channels")?,
            tls: tls.clone(),
        })),
        "redis-streams" => {
            let stream = raw.stream.unwrap_or_else(|| "fraiseql_events".into());
            if stream.trim().is_empty() {
                return Err(invalid("observers.stream", "must not be empty"));
            }
            Ok(SourceConfig::RedisStreams(StreamsConfig {
                url: redis_url,
                stream,
                group: name(raw.group, "wasmhook", "observers.group")?,
                consumer: name(
                    raw.consumer.or_else(|| Some(default_consumer(server))),
                    "wasmhook",
                    "observers.consumer",
                )?,
                field: raw.field.unwrap_or_else(|| "payload".into()),
                claim_idle: positive(
                    raw.claim_idle,
                    Duration::from_secs(30),
                    "observers.claim_idle",
                )?,
                batch_size: positive(raw.batch_size, 512, "observers.batch_size")?,
                tls: tls.clone(),
            }))
        }
        "postgres" => {
            let channel = raw.channel.unwrap_or_else(|| "fraiseql_events".into());
            channel_name(&channel, "observers.channel")?;
            Ok(SourceConfig::Postgres(ListenConfig {
                url: postgres_url(raw.postgres_url, "postgres")?,
                channel,
                tls: tls.clone(),
            }))
        }
        "postgres-log" => {
            let table = raw
                .log_table
                .unwrap_or_else(|| crate::source::postgres_log::DEFAULT_TABLE.into());
            sql_identifier(&table, "observers.log_table")?;
            let channel = raw.channel.unwrap_or_else(|| "wasmhook_events".into());
            channel_name(&channel, "observers.channel")?;
            Ok(SourceConfig::PostgresLog(LogConfig {
                url: postgres_url(raw.postgres_url, "postgres-log")?,
                table,
                channel,
                batch_size: positive(raw.batch_size, 500, "observers.batch_size")?,
                poll_interval: positive(
                    raw.poll_interval,
                    Duration::from_secs(1),
                    "observers.poll_interval",
                )?,
                retention: positive(
                    raw.retention,
                    Duration::from_secs(7 * 24 * 3600),
                    "observers.retention",
                )?,
                tls: tls.clone(),
            }))
        }
        "fraiseql-changelog" => {
            let table = raw
                .table
                .unwrap_or_else(|| fraiseql_changelog::DEFAULT_TABLE.into());
            sql_identifier(&table, "observers.table")?;
            let channel = raw
                .channel
                .unwrap_or_else(|| fraiseql_changelog::DEFAULT_CHANNEL.into());
            channel_name(&channel, "observers.channel")?;
            let start = match raw.start.as_deref().unwrap_or("now") {
                "now" => Start::Now,
                "beginning" => Start::Beginning,
                other => {
                    return Err(invalid(
                        "observers.start",
                        format!("{other:?} is not \"now\" (only later changes) or \"beginning\" (every row the log holds)"),
                    ))
                }
            };
            Ok(SourceConfig::FraiseqlChangelog(ChangelogConfig {
                url: postgres_url(raw.postgres_url, "fraiseql-changelog")?,
                table,
                channel,
                batch_size: positive(raw.batch_size, 500, "observers.batch_size")?,
                poll_interval: positive(
                    raw.poll_interval,
                    Duration::from_secs(1),
                    "observers.poll_interval",
                )?,
                start,
                tls: tls.clone(),
            }))
        }
        other => Err(invalid(
            "observers.backend",
            format!(
                "{other:?} is not a known backend; expected \"http\", \"nats\", \"jetstream\", \
                 \"redis\", \"redis-streams\", \"postgres\", \"postgres-log\" or \"fraiseql-changelog\""
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_table_names_pass() {
        assert!(sql_identifier("wasmhook.event_log", "k").is_ok());
        assert!(sql_identifier("event_log", "k").is_ok());
        for bad in ["", "a.b.c", "Orders", "x; drop table y", "1abc", "a-b"] {
            let e = sql_identifier(bad, "observers.log_table").unwrap_err();
            assert!(e.to_string().starts_with("observers.log_table:"), "{e}");
        }
    }
}
