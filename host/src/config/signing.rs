//! `[webhooks.signing]` and a webhook's own `signing` table: the scheme,
//! its secrets (newest first, for rotation) and, for FraiseQL's scheme, the
//! algorithm and header names.

use super::{file, invalid, valid_header_name, ConfigError};
use crate::signing::{Algorithm, Signer};

/// A signing table at `key`; `None` when signing is off.
pub(super) fn resolve(raw: file::SigningSection, key: &str) -> Result<Option<Signer>, ConfigError> {
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
