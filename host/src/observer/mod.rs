//! The observer stage: an [`Event`] in, the webhooks it must reach out
//! ([`Match`]). Selection is by entity, operation and condition (an
//! expression or a condition plugin), then each webhook's own condition.

pub mod condition;

use crate::delivery::retry::RetryPolicy;
use crate::event::{Event, Operation};
use crate::payload::{self, Target};
use crate::plugin::{PluginError, Plugins};
use condition::Condition;

/// A condition: an expression, or `plugin:NAME`.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Parsed expression.
    Expr(Condition),
    /// A condition plugin, by name (looked up per call, so hot reload applies).
    Plugin(String),
}

impl Rule {
    /// Evaluates the rule; only a plugin can fail.
    pub fn eval(&self, event: &Event, plugins: &Plugins) -> Result<bool, PluginError> {
        match self {
            Rule::Expr(condition) => Ok(condition.eval(event)),
            Rule::Plugin(name) => plugins.condition(name, event),
        }
    }

    /// The text as configured.
    pub fn source(&self) -> String {
        match self {
            Rule::Expr(condition) => condition.source().to_string(),
            Rule::Plugin(name) => format!("plugin:{name}"),
        }
    }
}

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
    pub condition: Option<Rule>,
    /// Retry policy of its webhooks (the global one unless overridden).
    pub retry: RetryPolicy,
    /// Webhooks, run in order.
    pub webhooks: Vec<Webhook>,
    /// A `[[schedule]]`'s observer: only its scheduler hands it events
    /// ([`scheduled`]), so no bus event can reach a scheduled webhook by
    /// naming the schedule as its entity.
    pub scheduled: bool,
}

/// One `[[observer.webhook]]`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Name in metrics and logs: the `name` key, or its position.
    pub name: String,
    /// Target URL (already validated as http or https).
    pub url: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Per-webhook condition, checked after the observer's.
    pub condition: Option<Rule>,
    /// How its request is built: headers, body, transform, encryption.
    pub request: payload::Spec,
    /// Its own rate limit, concurrency, breaker, ordering and batching.
    pub controls: crate::delivery::limits::WebhookControls,
    /// `None`: the `[webhooks.signing]` signer; `Some(None)`: unsigned;
    /// `Some(Some(_))`: this webhook's own secrets or scheme.
    pub signing: Option<Option<crate::signing::Signer>>,
    /// Its own whole-request timeout, instead of `[webhooks]
    /// request_timeout_ms`.
    pub timeout: Option<std::time::Duration>,
    /// How its requests leave: client certificate, proxy.
    pub egress: std::sync::Arc<crate::delivery::egress::Egress>,
}

impl Webhook {
    /// Whether building its request calls a plugin (transform or
    /// encryption).
    pub fn builds_with_plugin(&self) -> bool {
        self.build_plugins().next().is_some()
    }

    /// The plugins building its request calls: its transform, then its
    /// encryption plugin.
    pub fn build_plugins(&self) -> impl Iterator<Item = &str> {
        self.request.plugins()
    }
}

impl Target for Webhook {
    fn method(&self) -> &str {
        &self.method
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn spec(&self) -> &payload::Spec {
        &self.request
    }
}

/// A webhook an event must be delivered to.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    /// The observer that selected the event.
    pub observer: &'a Observer,
    /// Index of the webhook in `observer.webhooks`; it names the webhook in the
    /// outbox so a restart finds it again.
    pub webhook_index: usize,
    /// The webhook.
    pub webhook: &'a Webhook,
    /// Set when a condition plugin failed: the event cannot be matched, so
    /// the delivery goes to the DLQ with this reason instead of being dropped.
    pub failed: Option<PluginError>,
}

/// A match renders as its webhook does.
impl Target for Match<'_> {
    fn method(&self) -> &str {
        self.webhook.method()
    }

    fn url(&self) -> &str {
        self.webhook.url()
    }

    fn spec(&self) -> &payload::Spec {
        self.webhook.spec()
    }
}

impl Rule {
    fn plugin(&self) -> Option<&str> {
        match self {
            Rule::Plugin(name) => Some(name),
            Rule::Expr(_) => None,
        }
    }
}

impl Observer {
    /// The condition plugins matching an event for this observer may call
    /// (each can take up to its budget: see [`crate::plugin::Plugins::run`]).
    pub fn condition_plugins(&self) -> impl Iterator<Item = &str> {
        self.condition
            .iter()
            .chain(self.webhooks.iter().filter_map(|w| w.condition.as_ref()))
            .filter_map(Rule::plugin)
    }

    /// Whether this observer selects the event (before webhook conditions).
    pub fn selects(&self, event: &Event, plugins: &Plugins) -> Result<bool, PluginError> {
        self.skips(event, plugins).map(|skip| skip.is_none())
    }

    /// Why this observer leaves the event alone, or `None` when it selects
    /// it (before webhook conditions).
    pub fn skips(&self, event: &Event, plugins: &Plugins) -> Result<Option<Skip>, PluginError> {
        if !event.is_entity(&self.entity) {
            return Ok(Some(Skip::Entity));
        }
        if !(self.events.is_empty() || self.events.contains(&event.operation)) {
            return Ok(Some(Skip::Operation));
        }
        match &self.condition {
            Some(condition) if !condition.eval(event, plugins)? => Ok(Some(Skip::Condition)),
            _ => Ok(None),
        }
    }
}

/// Why an observer, or one of its webhooks, leaves an event alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The event is about another entity.
    Entity,
    /// The observer does not select the event's operation.
    Operation,
    /// The observer's condition is false.
    Condition,
    /// The webhook's own condition is false.
    WebhookCondition,
}

/// A webhook an event does not go to, and why (what `wasmhook dry-run`
/// lists).
#[derive(Debug, Clone)]
pub struct Skipped<'a> {
    /// The observer.
    pub observer: &'a Observer,
    /// The webhook's index when only it was left out; `None`: the whole
    /// observer was.
    pub webhook: Option<usize>,
    /// Why.
    pub reason: Skip,
}

/// Every webhook the event goes to, in config order: observers in file order,
/// webhooks in declaration order.
pub fn matches<'a>(observers: &'a [Observer], event: &Event, plugins: &Plugins) -> Vec<Match<'a>> {
    let mut out = Vec::new();
    select(observers, event, plugins, &mut out, &mut |_| {});
    out
}

/// [`matches`], and every observer and webhook that leaves the event alone
/// with the reason: the same selection, told in full.
pub fn explain<'a>(
    observers: &'a [Observer],
    event: &Event,
    plugins: &Plugins,
) -> (Vec<Match<'a>>, Vec<Skipped<'a>>) {
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    select(observers, event, plugins, &mut out, &mut |s| {
        skipped.push(s)
    });
    (out, skipped)
}

fn select<'a>(
    observers: &'a [Observer],
    event: &Event,
    plugins: &Plugins,
    out: &mut Vec<Match<'a>>,
    skipped: &mut impl FnMut(Skipped<'a>),
) {
    for observer in observers.iter().filter(|o| !o.scheduled) {
        let selected = match observer.skips(event, plugins) {
            Ok(Some(reason)) => {
                skipped(Skipped {
                    observer,
                    webhook: None,
                    reason,
                });
                continue;
            }
            Ok(None) => Ok(true),
            Err(e) => Err(e),
        };
        push_webhooks(observer, &selected, event, plugins, out, skipped);
    }
}

/// The webhooks a schedule's run goes to. The schedule, not entity and
/// operation, chose the observer; webhook conditions still apply.
pub fn scheduled<'a>(observer: &'a Observer, event: &Event, plugins: &Plugins) -> Vec<Match<'a>> {
    let mut out = Vec::new();
    push_webhooks(observer, &Ok(true), event, plugins, &mut out, &mut |_| {});
    out
}

fn push_webhooks<'a>(
    observer: &'a Observer,
    selected: &Result<bool, PluginError>,
    event: &Event,
    plugins: &Plugins,
    out: &mut Vec<Match<'a>>,
    skipped: &mut impl FnMut(Skipped<'a>),
) {
    for (webhook_index, webhook) in observer.webhooks.iter().enumerate() {
        let failed = match selected {
            Err(e) => Some(e.clone()),
            Ok(_) => match webhook.condition.as_ref().map(|c| c.eval(event, plugins)) {
                None | Some(Ok(true)) => None,
                Some(Ok(false)) => {
                    skipped(Skipped {
                        observer,
                        webhook: Some(webhook_index),
                        reason: Skip::WebhookCondition,
                    });
                    continue;
                }
                Some(Err(e)) => Some(e),
            },
        };
        out.push(Match {
            observer,
            webhook_index,
            webhook,
            failed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;
    use serde_json::json;

    fn webhook(url: &str, condition: Option<&str>) -> Webhook {
        Webhook {
            name: "0".into(),
            url: url.into(),
            method: "POST".into(),
            condition: condition.map(|c| Rule::Expr(Condition::parse(c).unwrap())),
            request: payload::Spec {
                url: None,
                query: vec![],
                headers: vec![],
                body: payload::BodySpec::Entity,
                transform: None,
                encryption: None,
                max_payload_bytes: None,
            },
            controls: Default::default(),
            signing: None,
            timeout: None,
            egress: Default::default(),
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
            condition: condition.map(|c| Rule::Expr(Condition::parse(c).unwrap())),
            retry: RetryPolicy::default(),
            webhooks,
            scheduled: false,
        }
    }

    fn urls(observers: &[Observer], event: &Event) -> Vec<String> {
        let (plugins, _) = Plugins::load(std::path::Path::new("/nonexistent"), None).unwrap();
        matches(observers, event, &plugins)
            .iter()
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

    #[test]
    fn a_scheduled_observer_is_reached_only_through_its_schedule() {
        let mut nightly = observer(
            "Order",
            vec![],
            None,
            vec![webhook("http://a/nightly", None)],
        );
        nightly.scheduled = true;
        let observers = vec![nightly];
        let event = order_update(json!({}), json!({"status": "shipped"}));
        assert!(urls(&observers, &event).is_empty());
        let (plugins, _) = Plugins::load(std::path::Path::new("/nonexistent"), None).unwrap();
        let reached: Vec<_> = scheduled(&observers[0], &event, &plugins)
            .iter()
            .map(|m| m.webhook.url.clone())
            .collect();
        assert_eq!(reached, ["http://a/nightly"]);
    }

    /// `explain` selects what `matches` does and says why the rest is left
    /// out: the first reason that applies, per observer or per webhook.
    #[test]
    fn explain_says_why_each_observer_or_webhook_is_left_out() {
        let observers = vec![
            observer(
                "Order",
                vec![Operation::Update],
                None,
                vec![
                    webhook("http://a/ship", None),
                    webhook("http://a/eu", Some("country == 'DE'")),
                ],
            ),
            observer("Order", vec![Operation::Insert], None, vec![]),
            observer("Order", vec![], Some("status == 'paid'"), vec![]),
            observer("user", vec![Operation::Insert], Some("x"), vec![]),
        ];
        let event = order_update(json!({}), json!({"status": "shipped", "country": "US"}));
        let (plugins, _) = Plugins::load(std::path::Path::new("/nonexistent"), None).unwrap();
        let (matched, skipped) = explain(&observers, &event, &plugins);
        let matched: Vec<_> = matched.iter().map(|m| m.webhook.url.as_str()).collect();
        assert_eq!(matched, ["http://a/ship"]);
        assert_eq!(matched.len(), matches(&observers, &event, &plugins).len());
        let skipped: Vec<_> = skipped
            .iter()
            .map(|s| (s.observer.events.clone(), s.webhook, s.reason))
            .collect();
        assert_eq!(
            skipped,
            [
                (vec![Operation::Update], Some(1), Skip::WebhookCondition),
                (vec![Operation::Insert], None, Skip::Operation),
                (vec![], None, Skip::Condition),
                (vec![Operation::Insert], None, Skip::Entity),
            ]
        );
    }
}
