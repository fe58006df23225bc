//! The payload stage: a [`Match`] and its [`Event`] in, the request to send
//! out ([`Payload`]). Rendering happens once, when the event is accepted, so
//! every retry sends the same bytes and the DLQ shows exactly what was sent.

pub mod template;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::observer::Match;
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

/// A rendered request, before signing; stored in the outbox and the DLQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// HTTP method.
    pub method: String,
    /// Target URL.
    pub url: String,
    /// Configured headers, rendered.
    pub headers: Vec<(String, String)>,
    /// The body (templates render JSON, which is UTF-8).
    pub body: String,
}

/// Renders the request for one matched webhook.
pub fn build(matched: &Match<'_>, event: &Event) -> Payload {
    let webhook = matched.webhook;
    let mut body = Vec::with_capacity(256);
    match &webhook.body {
        BodySpec::Entity => {
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut body, &event.data);
        }
        BodySpec::Json(template) => template.render(event, &mut body),
        BodySpec::Text(template) => template.render_json(event, &mut body),
    }
    Payload {
        method: webhook.method.clone(),
        url: webhook.url.clone(),
        headers: webhook
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.render_plain(event)))
            .collect(),
        // Templates escape everything they insert, so the output is UTF-8;
        // the lossy conversion only guards against a bug there.
        body: String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}
