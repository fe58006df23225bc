//! The records of the outbox: a pending [`Delivery`], its rendered request
//! ([`Payload`]) and its [`Attempt`]s, and the few fields the dispatcher
//! routes by ([`Routing`]). Every backend stores and returns these, as
//! `record` writes them, and chains a batch's deliveries the same way
//! ([`chain`]).

use serde::{Deserialize, Serialize};

use crate::event::SharedEvent;

/// One HTTP attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, unix milliseconds.
    pub at_ms: u64,
    /// The response status, if there was a response.
    pub status: Option<u16>,
    /// The transport error, or the start of an error response's body.
    pub error: Option<String>,
    /// The start of a successful response's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A pending delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Sent as `X-Wasmhook-Delivery`; stays the same across retries so
    /// receivers can deduplicate.
    pub id: String,
    /// Observer name.
    pub observer: String,
    /// Index of the webhook in the observer.
    pub webhook: usize,
    /// The event, kept for the DLQ and for plugins.
    pub event: SharedEvent,
    /// The rendered request. `None` until the first attempt builds it when
    /// a plugin builds it (see `Pipeline::accept`), and when the delivery
    /// died before it could be built (a plugin failed), in which case a DLQ
    /// retry builds it again.
    pub payload: Option<Payload>,
    /// Every attempt of the current round (the retry budget counts these).
    pub attempts: Vec<Attempt>,
    /// Attempts of earlier rounds, before a DLQ retry put it back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_attempts: Vec<Attempt>,
    /// When the next attempt is due, unix milliseconds.
    pub due_ms: u64,
    /// When the event was accepted, unix milliseconds.
    pub accepted_ms: u64,
    /// The previous webhook of the same observer and event: this delivery
    /// waits until that one's first attempt is over, so webhooks run in order.
    pub after: Option<u64>,
    /// The next webhook of the chain, released when this one's first attempt ends.
    pub next: Option<u64>,
    /// True while waiting for `after`.
    pub held: bool,
}

impl Delivery {
    /// This delivery put back from the DLQ: due at `due_ms`, on its own (no
    /// chain), with a fresh attempt budget; the attempts so far move to
    /// `earlier_attempts`.
    pub(crate) fn revived(mut self: Box<Self>, due_ms: u64) -> Delivery {
        self.due_ms = due_ms;
        self.held = false;
        self.after = None;
        self.next = None;
        let round = std::mem::take(&mut self.attempts);
        self.earlier_attempts.extend(round);
        *self
    }
}

/// Chains the deliveries of one accepted batch that `keys` will store:
/// consecutive deliveries of one observer and event, in webhook order, run
/// one after the other, so each but the first is held until the one
/// before it has had its first attempt.
pub(crate) fn chain(deliveries: &mut [Delivery], keys: &[u64]) {
    for i in 1..deliveries.len().min(keys.len()) {
        let (before, rest) = deliveries.split_at_mut(i);
        let (prev, this) = (&mut before[i - 1], &mut rest[0]);
        if prev.observer == this.observer
            && prev.event.id == this.event.id
            && prev.webhook < this.webhook
        {
            prev.next = Some(keys[i]);
            this.after = Some(keys[i - 1]);
            this.held = true;
        }
    }
}

/// The fields of a stored [`Delivery`] that decide where it is queued
/// (see [`Store::routing`](super::Store::routing)); serde skips the rest of the record.
#[derive(Debug, Deserialize)]
pub(crate) struct Routing {
    /// Observer name.
    pub observer: String,
    /// Index of the webhook in the observer.
    pub webhook: usize,
    /// True while waiting for the previous webhook of its chain.
    pub held: bool,
    /// The request's URL, when it is built.
    pub payload: Option<RoutingUrl>,
    /// The event's ids, for entity lanes.
    pub event: RoutingEvent,
}

/// See [`Routing`].
#[derive(Debug, Deserialize)]
pub(crate) struct RoutingUrl {
    pub url: String,
}

/// See [`Routing`].
#[derive(Debug, Deserialize)]
pub(crate) struct RoutingEvent {
    pub id: String,
    pub entity_id: Option<String>,
}

/// A rendered request, before signing; stored in the outbox and the DLQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// HTTP method.
    pub method: String,
    /// Target URL.
    pub url: String,
    /// Configured headers, rendered, then any a transform added.
    pub headers: Vec<(String, String)>,
    /// Content type; `application/json` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body.
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
}

/// Bodies are stored as text when they are UTF-8 (so `dlq show` is
/// readable) and as `{"base64": ".."}` otherwise.
mod body_text {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Binary { base64: String },
    }

    pub(super) fn serialize<S: Serializer>(body: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => Stored::Text(text.to_string()),
            Err(_) => Stored::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(body),
            },
        }
        .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Text(text) => Ok(text.into_bytes()),
            Stored::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Delivery;
    use crate::event::test_support::order_update;

    /// A fresh, never attempted delivery of event `i`.
    pub(crate) fn delivery(observer: &str, webhook: usize, i: usize) -> Delivery {
        Delivery {
            id: crate::clock::new_id(),
            observer: observer.into(),
            webhook,
            event: order_update(serde_json::json!({}), serde_json::json!({"i": i})).into(),
            payload: None,
            attempts: Vec::new(),
            earlier_attempts: Vec::new(),
            due_ms: 0,
            accepted_ms: 0,
            after: None,
            next: None,
            held: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        for body in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00, 0x80]] {
            let payload = Payload {
                method: "POST".into(),
                url: "http://x/".into(),
                headers: vec![],
                content_type: None,
                body: body.clone(),
            };
            let text = serde_json::to_string(&payload).unwrap();
            assert_eq!(
                serde_json::from_str::<Payload>(&text).unwrap().body,
                body,
                "{text}"
            );
        }
    }
}
