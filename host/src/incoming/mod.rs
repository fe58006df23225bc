//! The incoming stage: webhooks that others send us. A request's raw bytes
//! are verified (`scheme`, or a verifier plugin), deduplicated by the
//! provider's delivery id, and turned into an [`Event`] (entity = the
//! receiver's name, operation = the provider's event type, row = the JSON
//! body) that flows through the observers like any other.

pub mod replay;
pub mod scheme;

use std::time::Duration;

use serde_json::Value;

use crate::clock;
use crate::event::{Envelope, Event, Operation};
use crate::plugin::{IncomingRequest, Plugins, Verdict};
use scheme::{Rejection, Scheme};

/// How a receiver checks signatures.
#[derive(Debug, Clone, PartialEq)]
pub enum Verifier {
    /// A built-in scheme.
    Scheme(Scheme),
    /// A verifier plugin, by name.
    Plugin(String),
}

/// One `[webhooks.incoming.NAME]`.
#[derive(Clone)]
pub struct Receiver {
    /// The table name; becomes the event's entity.
    pub name: String,
    /// Route path, e.g. `/webhooks/github`.
    pub path: String,
    /// Signature check.
    pub verifier: Verifier,
    /// Secrets (several during rotation), already decoded.
    pub secrets: Vec<Vec<u8>>,
    /// Event types accepted; empty accepts all.
    pub events: Vec<String>,
    /// Largest accepted body.
    pub max_payload_bytes: usize,
    /// How long a delivery id is remembered for replay protection.
    pub replay_window: Duration,
    /// Also publish each accepted event to this NATS subject.
    pub publish_subject: Option<String>,
}

impl std::fmt::Debug for Receiver {
    // Secrets must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("verifier", &self.verifier)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Why a request was not verified. Every variant is answered 401 without
/// saying which: telling an attacker which part failed helps them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A built-in scheme rejected it.
    #[error(transparent)]
    Scheme(#[from] Rejection),
    /// The verifier plugin rejected it.
    #[error("rejected by the verifier plugin: {0}")]
    Plugin(String),
    /// The verifier plugin failed (trap, error): fail closed.
    #[error("verifier plugin failed: {0}")]
    PluginFailed(String),
}

impl Receiver {
    /// Checks the signature over the raw body; `now` is Unix seconds.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: u64,
        plugins: &Plugins,
    ) -> Result<(), Refusal> {
        match &self.verifier {
            Verifier::Scheme(scheme) => {
                let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
                Ok(scheme::verify(scheme, headers, body, &secrets, now)?)
            }
            Verifier::Plugin(name) => {
                let request = IncomingRequest {
                    method: method.to_string(),
                    path: path.to_string(),
                    headers: headers.to_vec(),
                    body: body.to_vec(),
                };
                let mut last = Refusal::Plugin("no secret configured".into());
                for secret in &self.secrets {
                    match plugins.run([name.as_str()], || {
                        plugins.verify(name, &request, secret, now)
                    }) {
                        Ok(Verdict::Ok) => return Ok(()),
                        Ok(Verdict::Rejected(reason)) => last = Refusal::Plugin(reason),
                        Err(e) => return Err(Refusal::PluginFailed(e.to_string())),
                    }
                }
                Err(last)
            }
        }
    }

    /// The provider's delivery id, for replay protection.
    pub fn delivery_id(&self, headers: &[(String, String)], body: &[u8]) -> Option<String> {
        match &self.verifier {
            Verifier::Scheme(scheme) => scheme::delivery_id(scheme, headers, body),
            Verifier::Plugin(_) => None,
        }
    }

    /// The provider's event type (`push`, `payment_intent.succeeded`).
    pub fn event_type(&self, headers: &[(String, String)], body: &[u8]) -> Option<String> {
        match &self.verifier {
            Verifier::Scheme(scheme) => scheme::event_type(scheme, headers, body),
            Verifier::Plugin(_) => None,
        }
    }

    /// Whether the `events` filter takes this type.
    pub fn accepts(&self, event_type: Option<&str>) -> bool {
        self.events.is_empty()
            || event_type.is_some_and(|t| self.events.iter().any(|e| e.eq_ignore_ascii_case(t)))
    }

    /// The event a verified request becomes.
    pub fn event(
        &self,
        delivery_id: Option<String>,
        event_type: Option<String>,
        body: &[u8],
    ) -> Event {
        let data = serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        let entity_id = data.get("id").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Event {
            id: delivery_id.unwrap_or_else(clock::new_id),
            entity: self.name.clone(),
            operation: Operation::parse(event_type.as_deref().unwrap_or("received")),
            entity_id,
            timestamp: clock::now_rfc3339(),
            envelope: Envelope::Native,
            source: format!("incoming:{}", self.name),
            data,
            old: None,
            meta: Default::default(),
        }
    }
}
