//! `[server]`: who may use the listener. Every event `POST /events`
//! accepts leaves signed by us, so a listener reachable beyond this machine
//! must not take events (or admin commands) from anyone who can reach it.

use std::fmt;

use super::{file, invalid, ConfigError, ServerConfig, SourceConfig};

/// `ingest_token` or `ingest_tokens` (newest first, while rotating).
pub(super) fn ingest_tokens(
    one: Option<String>,
    several: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let tokens = match (one, several) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "server.ingest_token",
                "set ingest_token or ingest_tokens (while rotating: [new, old]), not both",
            ))
        }
        (Some(token), None) => vec![token],
        (None, Some(tokens)) => tokens,
        (None, None) => Vec::new(),
    };
    if tokens.iter().any(|t| t.trim().is_empty()) {
        return Err(invalid(
            "server.ingest_tokens",
            "a token is empty (is its ${VARIABLE} unset?)",
        ));
    }
    Ok(tokens)
}

/// The explicit opt-outs of authentication on a reachable listener.
pub(super) struct Exposure {
    unauthenticated_ingest: bool,
    unauthenticated_admin: bool,
}

impl Exposure {
    pub(super) fn read(raw: &file::ServerSection) -> Result<Exposure, ConfigError> {
        Ok(Exposure {
            unauthenticated_ingest: raw.allow_unauthenticated_ingest.unwrap_or(false),
            unauthenticated_admin: raw.allow_unauthenticated_admin.unwrap_or(false),
        })
    }

    /// Refuses a listener beyond loopback that would take events or admin
    /// commands without a token, unless the config says so explicitly (a
    /// proxy in front that authenticates, for instance).
    pub(super) fn check(
        &self,
        server: &ServerConfig,
        source: &SourceConfig,
    ) -> Result<(), ConfigError> {
        if server.listen.ip().is_loopback() {
            return Ok(());
        }
        let listen = server.listen;
        if *source == SourceConfig::Http
            && server.ingest_tokens.is_empty()
            && !self.unauthenticated_ingest
        {
            return Err(invalid(
                "server.ingest_token",
                format!(
                    "server.listen {listen} is reachable from other machines, and every event \
                     POST /events accepts is delivered signed with your secrets: set ingest_token \
                     (e.g. \"${{WASMHOOK_INGEST_TOKEN}}\"), listen on 127.0.0.1, or set \
                     allow_unauthenticated_ingest = true if something in front authenticates"
                ),
            ));
        }
        if server.admin_token.is_none() && !self.unauthenticated_admin {
            return Err(invalid(
                "server.admin_token",
                format!(
                    "server.listen {listen} is reachable from other machines, and /admin can \
                     retry, purge and switch off deliveries: set admin_token (e.g. \
                     \"${{WASMHOOK_ADMIN_TOKEN}}\"), listen on 127.0.0.1, or set \
                     allow_unauthenticated_admin = true if something in front authenticates"
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for ServerConfig {
    // Tokens must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("ingest_tokens", &self.ingest_tokens.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}
