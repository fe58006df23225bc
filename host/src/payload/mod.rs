//! The payload stage: a [`Match`] and its [`Event`] in, the request to send
//! out ([`Payload`]; a record of the store, which keeps it with its
//! delivery). Rendering happens once, when the event is accepted, so every
//! retry sends the same bytes and the DLQ shows exactly what was sent.
//!
//! Order: template (or the row as JSON) -> transform plugin -> encryption
//! -> size limit.

pub mod encrypt;
pub mod template;

use crate::event::Event;
use crate::observer::Match;
use crate::plugin::{PluginError, Plugins};
use crate::store::Payload;
use template::{JsonTemplate, TextTemplate};

/// How a webhook's body is built.
#[derive(Debug, Clone)]
pub enum BodySpec {
    /// No body configured: the event's row as JSON.
    Entity,
    /// A `body = {..}` table.
    Json(JsonTemplate),
    /// A `body_template = '''..'''` text.
    Text(TextTemplate),
}

/// How the final body is encrypted.
#[derive(Clone)]
pub enum Encryption {
    /// An encryption plugin with the key granted in config.
    Plugin {
        /// Plugin name.
        name: String,
        /// Key bytes.
        key: Vec<u8>,
    },
    /// The built-in AES-256-GCM field encryption (boxed: the expanded AES
    /// key schedule is large).
    Fields(Box<encrypt::FieldCipher>),
}

/// Why a request could not be built; the delivery goes to the DLQ with it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// A transform or encryption plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Built-in encryption failed.
    #[error("encryption: {0}")]
    Encrypt(#[from] encrypt::EncryptError),
    /// The body is over the webhook's `max_payload_bytes`.
    #[error("the rendered body is {size} bytes, over max_payload_bytes ({limit})")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Debug for Encryption {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::Plugin { name, .. } => f
                .debug_struct("Plugin")
                .field("name", name)
                .finish_non_exhaustive(),
            Encryption::Fields(cipher) => cipher.fmt(f),
        }
    }
}

/// Renders the request for one matched webhook.
pub fn build(matched: &Match<'_>, event: &Event, plugins: &Plugins) -> Result<Payload, BuildError> {
    let webhook = matched.webhook;
    let mut body = Vec::with_capacity(256);
    match &webhook.body {
        // Writing a `Value` into a Vec cannot fail.
        BodySpec::Entity => drop(serde_json::to_writer(&mut body, &event.data)),
        BodySpec::Json(template) => template.render(event, &mut body),
        BodySpec::Text(template) => template.render_json(event, &mut body),
    }
    let mut headers: Vec<(String, String)> = webhook
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.render_plain(event)))
        .collect();
    let mut content_type = None;
    if let Some(name) = &webhook.transform {
        let rendered = (!matches!(webhook.body, BodySpec::Entity)).then_some(body.as_slice());
        let out = plugins.transform(name, event, rendered)?;
        body = out.body;
        headers.extend(out.headers);
        content_type = out.content_type;
    }
    match &webhook.encryption {
        Some(Encryption::Plugin { name, key }) => body = plugins.encrypt(name, &body, key)?,
        Some(Encryption::Fields(cipher)) => body = cipher.seal(&body)?,
        None => {}
    }
    if let Some(limit) = webhook.max_payload_bytes {
        if body.len() > limit {
            return Err(BuildError::TooLarge {
                size: body.len(),
                limit,
            });
        }
    }
    Ok(Payload {
        method: webhook.method.clone(),
        url: webhook.url.clone(),
        headers,
        content_type,
        body,
    })
}
