//! `[[observer.webhook]]`: where a webhook goes (URL, method), how its
//! request is built (headers, body, transform, encryption, size limit), its
//! own condition, controls and signing. Schedules' webhooks are read here
//! too (`schedule`).

use super::egress::{self, Outgoing};
use super::{compile_condition, delivery, file, invalid, plugin_name, signing, valid_header_name};
use super::{ConfigError, PluginRef};
use crate::observer::Webhook;
use crate::payload::template::{JsonTemplate, TextTemplate};
use crate::payload::{self, BodySpec, Encryption};
use crate::plugin::Role;

/// What `body_format = "hasura"` takes from the webhook's observer: the
/// trigger's name, and the attempts after the first (`max_retries`).
pub(super) fn adopt_observer(
    webhooks: &mut [Webhook],
    observer: &str,
    retry: &crate::delivery::retry::RetryPolicy,
) {
    for webhook in webhooks {
        if let BodySpec::Hasura {
            trigger,
            max_retries,
        } = &mut webhook.request.body
        {
            *trigger = observer.to_string();
            *max_retries = retry.max_attempts.saturating_sub(1);
        }
    }
}

/// One webhook table at `key`.
pub(super) fn resolve(
    mut raw: file::WebhookSection,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
    outgoing: &Outgoing<'_>,
    refs: &mut Vec<PluginRef>,
) -> Result<Webhook, ConfigError> {
    let egress = egress::webhook(
        raw.client_cert.take(),
        raw.proxy.take(),
        raw.no_proxy.take(),
        key,
        outgoing,
    )?;
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
            Some(signing::resolve(section, &format!("{key}.signing"))?)
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
    let url_template = url_template(&url, &format!("{key}.url"))?;
    // A template is checked with its holes filled, so its literal parts
    // are a URL.
    let checked = match &url_template {
        Some(_) => fill_holes(&url),
        None => url.clone(),
    };
    let parsed = reqwest::Url::parse(&checked)
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
    let mut query = Vec::with_capacity(raw.query.len());
    for (name, value) in raw.query {
        let template = TextTemplate::parse(&value)
            .map_err(|e| invalid(format!("{key}.query.{name}"), e.to_string()))?;
        query.push((name, template));
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
    let format = match raw.body_format.as_deref() {
        None | Some("entity") => None,
        Some("hasura") => Some(BodySpec::Hasura {
            trigger: String::new(),
            max_retries: 0,
        }),
        Some("fraiseql") => Some(BodySpec::Fraiseql),
        Some(other) => {
            return Err(invalid(
                format!("{key}.body_format"),
                format!(
                    "{other:?} is not a body format; use \"hasura\", \"fraiseql\" or \"entity\""
                ),
            ))
        }
    };
    if format.is_some() && (raw.body.is_some() || raw.body_template.is_some()) {
        return Err(invalid(
            format!("{key}.body_format"),
            "builds the whole body: set body_format, or body / body_template, not both",
        ));
    }
    let body = match (raw.body, raw.body_template) {
        _ if format.is_some() => format.unwrap_or(BodySpec::Entity),
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
            url: url_template,
            query,
            headers,
            body,
            transform,
            encryption,
            max_payload_bytes: raw.max_payload_bytes,
        },
        controls,
        signing,
        timeout: match raw.timeout {
            Some(timeout) if timeout.is_zero() => {
                return Err(invalid(format!("{key}.timeout"), "must be greater than 0"))
            }
            timeout => timeout,
        },
        egress,
    })
}

/// A URL with placeholders, compiled; `None` for a plain URL. Placeholders
/// may stand in the path and the query only: the scheme, host and port stay
/// the config's, so the destination that rate limits, the breaker and the
/// SSRF guard see is fixed (the guard checks each rendered URL as well).
fn url_template(url: &str, key: &str) -> Result<Option<TextTemplate>, ConfigError> {
    let Some(first_hole) = url.find("{{") else {
        return Ok(None);
    };
    let fixed = url[..first_hole]
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains(['/', '?']) && !rest.starts_with(['/', '?']));
    if !fixed {
        return Err(invalid(
            key,
            format!(
                "{url:?}: placeholders may stand in the path or query only, after https://host/"
            ),
        ));
    }
    TextTemplate::parse(url)
        .map(Some)
        .map_err(|e| invalid(key, e.to_string()))
}

/// `url` with each `{{ ... }}` replaced by `x`, to check the rest.
fn fill_holes(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push('x');
        rest = rest[start..]
            .find("}}")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
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
