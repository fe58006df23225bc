//! `[webhooks.incoming.NAME]`: receivers of webhooks others send us, each
//! on its own path, verified by a scheme or a verifier plugin.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{file, invalid, plugin_name, positive, ConfigError, PluginRef};
use crate::incoming::scheme::{Encoding, HmacAlgorithm, HmacScheme, Scheme, SignatureFormat};
use crate::incoming::{Receiver, Verifier};
use crate::plugin::Role;
use crate::signing::standard;

/// Every enabled receiver; none may take a path wasmhook uses itself or
/// another receiver's.
pub(super) fn resolve_all(
    raw: BTreeMap<String, file::IncomingSection>,
    refs: &mut Vec<PluginRef>,
) -> Result<Vec<Receiver>, ConfigError> {
    let mut receivers = Vec::new();
    for (name, section) in raw {
        if let Some(receiver) = resolve(&name, section, refs)? {
            let key = format!("webhooks.incoming.{name}.path");
            if matches!(
                receiver.path.as_str(),
                "/events" | "/healthz" | "/readyz" | "/metrics"
            ) || receiver.path.starts_with("/admin")
                || receiver.path == "/ui"
                || receiver.path.starts_with("/ui/")
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
    Ok(receivers)
}

/// The receiver's scheme: `scheme`, or (FraiseQL's docs leave it out) the
/// provider its name is, or `hmac` when it names a signature header.
fn scheme(name: &str, raw: &file::IncomingSection, key: &str) -> Result<String, ConfigError> {
    if let Some(scheme) = &raw.scheme {
        return Ok(scheme.trim().to_string());
    }
    match name {
        "github" | "stripe" | "standard-webhooks" | "fraiseql-v2" => Ok(name.to_string()),
        _ if raw.signature_header.is_some() => Ok("hmac".to_string()),
        _ => Err(invalid(
            format!("{key}.scheme"),
            "name how requests are verified: \"github\", \"stripe\", \"standard-webhooks\", \"fraiseql-v2\", \"hmac\" (with signature_header) or \"plugin:NAME\"",
        )),
    }
}

/// One `[webhooks.incoming.NAME]`; `None` when `enabled = false`.
fn resolve(
    name: &str,
    mut raw: file::IncomingSection,
    refs: &mut Vec<PluginRef>,
) -> Result<Option<Receiver>, ConfigError> {
    let key = format!("webhooks.incoming.{name}");
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let scheme_name = scheme(name, &raw, &key)?;
    let scheme_name = scheme_name.as_str();
    // FraiseQL's docs name the provider's own header on github and stripe
    // receivers: harmless when it is that header.
    let provider_header = match scheme_name {
        "github" => Some("X-Hub-Signature-256"),
        "stripe" => Some("Stripe-Signature"),
        _ => None,
    };
    if let (Some(expected), Some(given)) = (provider_header, raw.signature_header.as_deref()) {
        if !given.eq_ignore_ascii_case(expected) {
            return Err(invalid(
                format!("{key}.signature_header"),
                format!("{scheme_name} signs in {expected}, not {given:?}; leave the key out (it only applies to scheme = \"hmac\")"),
            ));
        }
        raw.signature_header = None;
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
