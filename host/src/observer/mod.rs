//! The observer stage: an [`Event`] in, the webhooks it must reach out
//! ([`Match`]). Selection is by entity, operation and condition, then each
//! webhook's own condition.

pub mod condition;

use crate::delivery::retry::RetryPolicy;
use crate::event::{Event, Operation};
use crate::payload::template::TextTemplate;
use crate::payload::BodySpec;
use condition::Condition;

/// One `[[observer]]`: which events, and the webhooks they go to.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Unique name, used in logs, metrics and the DLQ.
    pub name: String,
    /// Entity type or table, lower-cased for case-insensitive matching.
    pub entity: String,
    /// Operations selected; empty selects every operation.
    pub events: Vec<Operation>,
    /// Row condition, if any.
    pub condition: Option<Condition>,
    /// Retry policy of its webhooks (the global one unless overridden).
    pub retry: RetryPolicy,
    /// Webhooks, run in order.
    pub webhooks: Vec<Webhook>,
}

/// One `[[observer.webhook]]`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Target URL (already validated as http or https).
    pub url: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Extra headers; values may hold placeholders.
    pub headers: Vec<(String, TextTemplate)>,
    /// Per-webhook condition, checked after the observer's.
    pub condition: Option<Condition>,
    /// How the body is built.
    pub body: BodySpec,
}

/// A webhook an event must be delivered to.
#[derive(Debug, Clone, Copy)]
pub struct Match<'a> {
    /// The observer that selected the event.
    pub observer: &'a Observer,
    /// Index of the webhook in `observer.webhooks`; it names the webhook in the
    /// outbox so a restart finds it again.
    pub webhook_index: usize,
    /// The webhook.
    pub webhook: &'a Webhook,
}

impl Observer {
    /// Whether this observer selects the event (before webhook conditions).
    pub fn selects(&self, event: &Event) -> bool {
        event.entity.eq_ignore_ascii_case(&self.entity)
            && (self.events.is_empty() || self.events.contains(&event.operation))
            && self.condition.as_ref().is_none_or(|c| c.eval(event))
    }
}

/// Every webhook the event goes to, in config order: observers in file order,
/// webhooks in declaration order.
pub fn matches<'a>(
    observers: &'a [Observer],
    event: &'a Event,
) -> impl Iterator<Item = Match<'a>> + 'a {
    observers
        .iter()
        .filter(move |observer| observer.selects(event))
        .flat_map(move |observer| {
            observer
                .webhooks
                .iter()
                .enumerate()
                .filter(move |(_, webhook)| {
                    webhook.condition.as_ref().is_none_or(|c| c.eval(event))
                })
                .map(move |(webhook_index, webhook)| Match {
                    observer,
                    webhook_index,
                    webhook,
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;
    use serde_json::json;

    fn webhook(url: &str, condition: Option<&str>) -> Webhook {
        Webhook {
            url: url.into(),
            method: "POST".into(),
            headers: vec![],
            condition: condition.map(|c| Condition::parse(c).unwrap()),
            body: BodySpec::Entity,
        }
    }

    fn observer(
        entity: &str,
        events: Vec<Operation>,
        condition: Option<&str>,
        webhooks: Vec<Webhook>,
    ) -> Observer {
        Observer {
            name: format!("on_{entity}"),
            entity: entity.to_ascii_lowercase(),
            events,
            condition: condition.map(|c| Condition::parse(c).unwrap()),
            retry: RetryPolicy::default(),
            webhooks,
        }
    }

    fn urls(observers: &[Observer], event: &Event) -> Vec<String> {
        matches(observers, event)
            .map(|m| m.webhook.url.clone())
            .collect()
    }

    #[test]
    fn selects_by_entity_operation_and_conditions() {
        let observers = vec![
            observer(
                "Order",
                vec![Operation::Update],
                Some("status.changed() && status == 'shipped'"),
                vec![
                    webhook("http://a/ship", None),
                    webhook("http://a/eu", Some("country IN ('DE', 'FR')")),
                ],
            ),
            observer(
                "order",
                vec![Operation::Insert],
                None,
                vec![webhook("http://a/new", None)],
            ),
            observer("ORDER", vec![], None, vec![webhook("http://a/all", None)]),
            observer("user", vec![], None, vec![webhook("http://a/user", None)]),
        ];
        let shipped_de = order_update(
            json!({"status": "paid"}),
            json!({"status": "shipped", "country": "DE"}),
        );
        assert_eq!(
            urls(&observers, &shipped_de),
            ["http://a/ship", "http://a/eu", "http://a/all"]
        );

        let shipped_us = order_update(
            json!({"status": "paid"}),
            json!({"status": "shipped", "country": "US"}),
        );
        assert_eq!(
            urls(&observers, &shipped_us),
            ["http://a/ship", "http://a/all"]
        );

        let unchanged = order_update(json!({"status": "shipped"}), json!({"status": "shipped"}));
        assert_eq!(urls(&observers, &unchanged), ["http://a/all"]);

        let mut inserted = unchanged.clone();
        inserted.operation = Operation::Insert;
        assert_eq!(
            urls(&observers, &inserted),
            ["http://a/new", "http://a/all"]
        );
    }
}
