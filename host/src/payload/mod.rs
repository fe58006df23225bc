//! The payload stage: a webhook's request [`Spec`] (and where it goes) and
//! an [`Event`] in, the request to send out ([`Payload`]; a record of the
//! store, which keeps it with its delivery). Rendering happens once, when
//! the event is accepted, so every retry sends the same bytes and the DLQ
//! shows exactly what was sent.
//!
//! Order: template (or the row as JSON) -> transform plugin -> encryption
//! -> size limit.

pub mod encrypt;
pub mod formats;
pub mod template;

use crate::event::Event;
use crate::plugin::{PluginError, Plugins};
use crate::store::Payload;
use template::{JsonTemplate, TextTemplate};

/// How one webhook's request is built. The payload stage owns it, so that
/// the observer stage can hold one without the payload stage knowing
/// observers.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The URL when it holds placeholders (in its path or query); `None`
    /// sends to the target's URL as it is.
    pub url: Option<TextTemplate>,
    /// Query parameters appended to the URL; values may hold placeholders.
    pub query: Vec<(String, TextTemplate)>,
    /// Extra headers; values may hold placeholders.
    pub headers: Vec<(String, TextTemplate)>,
    /// How the body is built.
    pub body: BodySpec,
    /// A transform plugin that builds the request (given the rendered body).
    pub transform: Option<String>,
    /// Encryption of the final body.
    pub encryption: Option<Encryption>,
    /// A larger rendered body goes to the DLQ (`[webhooks]` default, or
    /// this webhook's own).
    pub max_payload_bytes: Option<usize>,
}

impl Spec {
    /// The plugins building a request calls: its transform, then its
    /// encryption plugin.
    pub fn plugins(&self) -> impl Iterator<Item = &str> {
        let encryption = match &self.encryption {
            Some(Encryption::Plugin { name, .. }) => Some(name.as_str()),
            _ => None,
        };
        self.transform.as_deref().into_iter().chain(encryption)
    }
}

/// The request's URL: the target's, or its template rendered, with the
/// query parameters appended (names and values percent-encoded).
fn url(target: &impl Target, spec: &Spec, event: &Event) -> String {
    let mut url = match &spec.url {
        Some(template) => template.render_url(event),
        None => target.url().to_string(),
    };
    for (i, (name, value)) in spec.query.iter().enumerate() {
        let separator = if i == 0 && !url.contains('?') {
            '?'
        } else {
            '&'
        };
        url.push(separator);
        url.extend(percent_encoding::utf8_percent_encode(
            name,
            template::URL_COMPONENT,
        ));
        url.push('=');
        url.push_str(&value.render_url(event));
    }
    url
}

/// What [`build`] renders a request for: where it goes and its [`Spec`].
/// The observer stage's webhooks (and their matches) are targets; a trait
/// rather than a struct because their method and URL stay their own fields,
/// which later stages read.
pub trait Target {
    /// HTTP method, upper case.
    fn method(&self) -> &str;
    /// Target URL.
    fn url(&self) -> &str;
    /// How the request is built.
    fn spec(&self) -> &Spec;
}

/// How a webhook's body is built.
#[derive(Debug, Clone)]
pub enum BodySpec {
    /// No body configured: the event's row as JSON.
    Entity,
    /// A `body = {..}` table.
    Json(JsonTemplate),
    /// A `body_template = '''..'''` text.
    Text(TextTemplate),
    /// `body_format = "hasura"`: a Hasura event-trigger payload.
    Hasura {
        /// The trigger's name when the event did not come from Hasura
        /// (the observer's).
        trigger: String,
        /// `delivery_info.max_retries`: the attempts after the first.
        max_retries: u32,
    },
    /// `body_format = "fraiseql"`: FraiseQL's `EntityEvent`.
    Fraiseql,
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

/// Renders the request for one target (a matched webhook).
pub fn build(
    target: &impl Target,
    event: &Event,
    plugins: &Plugins,
) -> Result<Payload, BuildError> {
    let spec = target.spec();
    let mut body = Vec::with_capacity(256);
    match &spec.body {
        // Writing a `Value` into a Vec cannot fail.
        BodySpec::Entity => drop(serde_json::to_writer(&mut body, &event.data)),
        BodySpec::Json(template) => template.render(event, &mut body),
        BodySpec::Text(template) => template.render_json(event, &mut body),
        BodySpec::Hasura {
            trigger,
            max_retries,
        } => formats::hasura(event, trigger, *max_retries, &mut body),
        BodySpec::Fraiseql => formats::fraiseql(event, &mut body),
    }
    let mut headers: Vec<(String, String)> = spec
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.render_plain(event)))
        .collect();
    let mut content_type = None;
    if let Some(name) = &spec.transform {
        let rendered = (!matches!(spec.body, BodySpec::Entity)).then_some(body.as_slice());
        let out = plugins.transform(name, event, rendered)?;
        body = out.body;
        headers.extend(out.headers);
        content_type = out.content_type;
    }
    match &spec.encryption {
        Some(Encryption::Plugin { name, key }) => body = plugins.encrypt(name, &body, key)?,
        Some(Encryption::Fields(cipher)) => body = cipher.seal(&body)?,
        None => {}
    }
    if let Some(limit) = spec.max_payload_bytes {
        if body.len() > limit {
            return Err(BuildError::TooLarge {
                size: body.len(),
                limit,
            });
        }
    }
    Ok(Payload {
        method: target.method().to_string(),
        url: url(target, spec, event),
        headers,
        content_type,
        body,
    })
}
