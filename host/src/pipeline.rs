//! The stages wired together, in flow order:
//!
//! source -> envelope -> observer (match) -> payload (render) -> outbox
//! (durable) -> dispatcher -> signing -> delivery -> retry -> DLQ
//!
//! Sources hand messages to [`Pipeline::ingest_messages`] (the HTTP
//! endpoint hands events to [`Pipeline::accept`]); once it returns `Ok`,
//! the events' deliveries are on disk and the source may acknowledge them.
//! Their attempts may already have started: they are scheduled between the
//! write and the flush. Buses that are never acknowledged use
//! `stage_messages`, which returns before the flush (`source::Unanswered`).
//! The scheduler (`schedule`) hands its runs to [`Pipeline::accept_scheduled`].

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracing::{debug, warn};

use crate::clock::{self, now_ms, Family};
use crate::delivery::schedule::Schedule;
use crate::event::{Event, SharedEvent};
use crate::metrics::{Failure, Metrics};
use crate::observer::{self, Observer};
use crate::payload;
use crate::plugin::{PluginError, Plugins};
use crate::source::envelope;
use crate::store::{Delivery, Filter, Store, StoreError};

/// The part of the process every source and the admin API talk to.
#[derive(Clone)]
pub struct Pipeline {
    metrics: Metrics,
    observers: Arc<[Observer]>,
    /// The condition plugins matching may call.
    condition_plugins: Arc<[String]>,
    plugins: Plugins,
    store: Store,
    schedule: Schedule,
}

/// A raw message from a bus.
#[derive(Debug, Clone)]
pub struct Message {
    /// Where it came from, e.g. `nats:fraiseql.order.created`.
    pub source: String,
    /// The bytes as received.
    pub payload: bytes::Bytes,
    /// The message's stable identity on a durable bus (stream and sequence,
    /// entry id, log row), or `None` on buses that never redeliver. It
    /// becomes the id of events that carry none, and lets a redelivery of an
    /// already stored message be acknowledged without storing it again.
    pub key: Option<String>,
}

/// One message holds one event or a JSON array of events.
fn parse_message(message: &Message) -> Result<Vec<Event>, String> {
    let (source, key) = (&message.source, message.key.as_deref());
    match serde_json::from_slice::<Value>(&message.payload).map_err(|e| format!("not JSON: {e}"))? {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                envelope::parse_keyed(item, source, key.map(|k| format!("{k}#{i}")))
                    .map_err(|e| format!("element {i}: {e}"))
            })
            .collect(),
        document => envelope::parse_keyed(document, source, key.map(str::to_string))
            .map(|e| vec![e])
            .map_err(|e| e.to_string()),
    }
}

/// Where an accepted event went; the ingest endpoint returns these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routed {
    /// Event id.
    pub event_id: String,
    /// The deliveries created, one per matched webhook.
    pub deliveries: Vec<RoutedDelivery>,
}

/// One delivery created for an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutedDelivery {
    /// Delivery id (`X-Wasmhook-Delivery`).
    pub id: String,
    /// Observer name.
    pub observer: String,
    /// Target URL.
    pub url: String,
}

/// What [`Pipeline::stage_messages`] did.
pub(crate) struct Staged {
    /// Events accepted.
    pub events: usize,
    /// Whether it wrote deliveries, which then need a flush; events that
    /// match nothing need none (undeliverable input is flushed on its own).
    pub stored: bool,
}

/// True when any event got deliveries (live or dead), so something was
/// written.
fn stored_any(routed: &[Routed]) -> bool {
    routed.iter().any(|r| !r.deliveries.is_empty())
}

/// What [`Pipeline::build_all`] made of a set of events.
struct Built {
    routed: Vec<Routed>,
    deliveries: Vec<Delivery>,
    /// Deliveries that could not be built, with the reason: straight to the DLQ.
    dead: Vec<(Delivery, String)>,
}

impl Pipeline {
    /// Wires the stages.
    pub fn new(
        observers: Arc<[Observer]>,
        plugins: Plugins,
        store: Store,
        schedule: Schedule,
        metrics: Metrics,
    ) -> Pipeline {
        Pipeline {
            condition_plugins: {
                let mut names: Vec<String> = observers
                    .iter()
                    .flat_map(Observer::condition_plugins)
                    .map(str::to_string)
                    .collect();
                names.sort();
                names.dedup();
                names.into()
            },
            metrics,
            observers,
            plugins,
            store,
            schedule,
        }
    }

    /// The configured observers.
    pub fn observers(&self) -> &[Observer] {
        &self.observers
    }

    /// Schedules outbox keys now (deliveries of a webhook just enabled).
    pub fn resume(&self, keys: Vec<u64>) {
        for key in keys {
            self.schedule.at(now_ms(), key);
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// The database, for the admin API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Matches and renders events, stores their deliveries durably, then
    /// schedules them. Events that match nothing are accepted and dropped.
    /// A delivery whose condition plugin fails is stored straight in the DLQ
    /// with the reason; one whose request a plugin builds is stored unbuilt,
    /// and its first attempt builds it (or buries it with the reason).
    pub async fn accept(&self, events: &[Event]) -> Result<Vec<Routed>, StoreError> {
        let routed = self.stage(events).await?;
        self.flush_if(stored_any(&routed)).await?;
        Ok(routed)
    }

    /// [`Pipeline::accept`] up to the disk: the deliveries are written and
    /// scheduled; they are durable after the next [`Store::flush`] (see
    /// `Store::write`).
    async fn stage(&self, events: &[Event]) -> Result<Vec<Routed>, StoreError> {
        self.stage_matches(events, |event| {
            observer::matches(&self.observers, event, &self.plugins)
        })
        .await
    }

    /// Accepts one run of a schedule for its own observer, which no bus
    /// event can select; returns the number of deliveries stored.
    pub async fn accept_scheduled(
        &self,
        observer: &str,
        event: Event,
    ) -> Result<usize, StoreError> {
        let Some(observer) = self.observers.iter().find(|o| o.name == observer) else {
            warn!(observer, event = %event.id, "no such scheduled observer; run dropped");
            return Ok(0);
        };
        let routed = self
            .stage_matches(std::slice::from_ref(&event), |event| {
                observer::scheduled(observer, event, &self.plugins)
            })
            .await?;
        self.flush_if(stored_any(&routed)).await?;
        Ok(routed.iter().map(|r| r.deliveries.len()).sum())
    }

    /// Renders, stores (not yet flushed) and schedules what `select` matched
    /// for each event (see [`Pipeline::accept`]).
    async fn stage_matches<'a>(
        &'a self,
        events: &[Event],
        select: impl Fn(&Event) -> Vec<observer::Match<'a>>,
    ) -> Result<Vec<Routed>, StoreError> {
        let accepted_ms = now_ms();
        let built = || self.build_all(events, select, accepted_ms);
        let Built {
            routed,
            deliveries,
            dead,
        } = if self.condition_plugins.is_empty() {
            built()
        } else {
            let using = self.condition_plugins.iter().map(String::as_str);
            self.plugins.run(using, built)
        };
        if deliveries.is_empty() && dead.is_empty() {
            self.metrics.events_accepted(events.len());
            return Ok(routed);
        }
        let keys = self.store.write(deliveries, dead).await?;
        self.metrics.events_accepted(events.len());
        // Attempts start while the write goes to disk: the disk's latency
        // (an fsync takes tens of milliseconds when the disk is busy) delays
        // the answer to the source, not the delivery. See `Store::write`.
        for key in keys {
            // Held deliveries are skipped by the dispatcher until released.
            self.schedule.at(accepted_ms, key);
        }
        Ok(routed)
    }

    /// Matches and renders: the part of acceptance that runs plugins.
    fn build_all<'a>(
        &'a self,
        events: &[Event],
        select: impl Fn(&Event) -> Vec<observer::Match<'a>>,
        accepted_ms: u64,
    ) -> Built {
        let mut routed = Vec::with_capacity(events.len());
        let mut deliveries = Vec::new();
        let mut dead = Vec::new();
        // The ids of deliveries that die here come from families, so that
        // their letters share DLQ records (see `clock::Family`).
        let mut family: Option<Family> = None;
        for event in events {
            let mut created = Vec::new();
            let mut shared: Option<SharedEvent> = None;
            for matched in select(event) {
                // A request built by a plugin is built when it is first
                // attempted, in its destination's turn: a plugin that spends
                // its whole budget then holds back only its own deliveries,
                // not the acceptance of every event.
                //
                // A delivery whose building plugin is suspended right now
                // would only be moved from the outbox to the DLQ at its
                // first attempt: it goes there at once, in this write.
                let built = match &matched.failed {
                    Some(e) => Err(payload::BuildError::Plugin(e.clone())),
                    None if matched.webhook.builds_with_plugin() => {
                        match matched
                            .webhook
                            .build_plugins()
                            .find_map(|name| self.plugins.refusal(name))
                        {
                            Some(refused) => Err(payload::BuildError::Plugin(refused)),
                            None => Ok(None),
                        }
                    }
                    None => payload::build(&matched, event, &self.plugins).map(Some),
                };
                let id = match built {
                    Ok(_) => clock::new_id(),
                    Err(_) => family.get_or_insert_with(Default::default).next_id(),
                };
                let mut delivery = Delivery {
                    id,
                    observer: matched.observer.name.clone(),
                    webhook: matched.webhook_index,
                    event: shared
                        .get_or_insert_with(|| SharedEvent::from(event.clone()))
                        .clone(),
                    payload: None,
                    attempts: Vec::new(),
                    earlier_attempts: Vec::new(),
                    due_ms: accepted_ms,
                    accepted_ms,
                    after: None,
                    next: None,
                    held: false,
                };
                created.push(RoutedDelivery {
                    id: delivery.id.clone(),
                    observer: delivery.observer.clone(),
                    url: matched.webhook.url.clone(),
                });
                match built {
                    Ok(payload) => {
                        delivery.payload = payload;
                        deliveries.push(delivery);
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let failure = match &e {
                            payload::BuildError::Plugin(_) => Failure::Plugin(&reason),
                            _ => Failure::Payload,
                        };
                        self.metrics.failure(
                            &matched.observer.name,
                            &matched.webhook.name,
                            failure,
                        );
                        // A suspension was logged when it began; its
                        // refusals are counted, not logged one by one.
                        if matches!(
                            &e,
                            payload::BuildError::Plugin(PluginError::Suspended { .. })
                        ) {
                            debug!(observer = %delivery.observer, delivery = %delivery.id, error = %e, "plugin suspended; delivery moved to the DLQ");
                        } else {
                            warn!(observer = %delivery.observer, delivery = %delivery.id, error = %e, "cannot build the request; delivery moved to the DLQ");
                        }
                        dead.push((delivery, reason));
                    }
                }
            }
            if created.is_empty() {
                debug!(event = %event.id, entity = %event.entity, operation = %event.operation, "no observer matched");
            }
            routed.push(Routed {
                event_id: event.id.clone(),
                deliveries: created,
            });
        }
        Built {
            routed,
            deliveries,
            dead,
        }
    }

    /// Parses messages from a bus and accepts their events in one durable
    /// write. A message that is not JSON or not a known envelope goes to the
    /// DLQ as undeliverable input with the reason: a bus has nobody to answer
    /// an error to. Returns the number of events accepted.
    pub async fn ingest_messages(&self, messages: &[Message]) -> Result<usize, StoreError> {
        let staged = self.stage_messages(messages).await?;
        self.flush_if(staged.stored).await?;
        Ok(staged.events)
    }

    /// Waits until what staging wrote is on disk; a batch that wrote
    /// nothing (its events matched no observer) costs no fsync.
    async fn flush_if(&self, stored: bool) -> Result<(), StoreError> {
        if stored {
            self.store.flush().await?;
        }
        Ok(())
    }

    /// [`Pipeline::ingest_messages`] up to the disk: the events' deliveries
    /// are written and scheduled, and durable after the next
    /// [`Store::flush`]. For buses that are never answered (see
    /// `source::Unanswered`).
    pub(crate) async fn stage_messages(&self, messages: &[Message]) -> Result<Staged, StoreError> {
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            match parse_message(message) {
                Ok(parsed) => events.extend(parsed),
                Err(reason) => {
                    let letter = self
                        .store
                        .reject_input(&message.source, &message.payload, reason)
                        .await?;
                    warn!(source = %message.source, dlq = %letter.id, reason = %letter.reason, "undeliverable input moved to the DLQ");
                }
            }
        }
        let routed = self.stage(&events).await?;
        Ok(Staged {
            events: events.len(),
            stored: stored_any(&routed),
        })
    }

    /// Puts one DLQ entry back into delivery.
    pub async fn retry(&self, id: &str) -> Result<(), StoreError> {
        let key = self.store.requeue(id).await?;
        self.schedule.at(now_ms(), key);
        Ok(())
    }

    /// Sends a finished delivery (delivered or dead) again: the same id, a
    /// fresh attempt budget, signed anew at its attempt.
    pub async fn resend(&self, id: &str) -> Result<(), StoreError> {
        let due = now_ms();
        let key = self.store.resend(id, due).await?;
        self.store.flush().await?;
        self.schedule.at(due, key);
        Ok(())
    }

    /// Resends every finished delivery the query picks, one every
    /// `spacing`; returns how many.
    pub async fn resend_all(
        &self,
        query: &crate::store::Query,
        spacing: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let keys = self.store.resend_all(query, spacing).await?;
        self.store.flush().await?;
        for (key, due) in &keys {
            self.schedule.at(*due, *key);
        }
        Ok(keys.len())
    }

    /// The name of an observer's webhook, for listings: its `name`, or
    /// its position.
    pub fn webhook_name(&self, observer: &str, index: usize) -> String {
        crate::delivery::dispatcher::webhook_name(
            self.observers.iter().find(|o| o.name == observer),
            index,
        )
    }

    /// Stores a one-off scheduled delivery (`schedule::OneOff`) and
    /// schedules it at its due time; returns its delivery id.
    pub async fn schedule_once(&self, delivery: Delivery) -> Result<String, StoreError> {
        let (id, due) = (delivery.id.clone(), delivery.due_ms);
        let keys = self.store.write(vec![delivery], Vec::new()).await?;
        self.store.flush().await?;
        for key in keys {
            self.schedule.at(due, key);
        }
        Ok(id)
    }

    /// Cancels a pending delivery: into the DLQ with the reason, from
    /// where it can still be retried.
    pub async fn cancel(&self, id: &str) -> Result<(), StoreError> {
        self.store.cancel(id, "cancelled by an operator").await?;
        self.store.flush().await
    }

    /// Puts every matching DLQ delivery back; returns how many.
    pub async fn retry_all(
        &self,
        filter: &Filter,
        spacing: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let keys = self.store.requeue_all(filter, spacing).await?;
        for (key, due) in &keys {
            self.schedule.at(*due, *key);
        }
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn message(entity: &str) -> Message {
        let payload = serde_json::json!({
            "event": format!("fraiseql.{}.created", entity.to_lowercase()),
            "entity_type": entity,
            "operation": "created",
            "entity": {"id": "1", "total": 5},
        });
        Message {
            source: "test".into(),
            payload: payload.to_string().into(),
            key: None,
        }
    }

    /// A batch that wrote deliveries says so (its caller flushes it), one
    /// whose events matched nothing does not, and input that is no event
    /// goes to the DLQ, flushed on its own.
    #[tokio::test]
    async fn staging_says_whether_it_wrote_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::from_toml(
            "[[observer]]\nname = \"orders\"\nentity = \"Order\"\n[[observer.webhook]]\nurl = \"http://127.0.0.1:9/hook\"\n",
            Path::new("test.toml"),
            &|_| None,
        )
        .unwrap();
        let store = crate::store::open_in(&dir.path().join("db")).await;
        let (plugins, _) = Plugins::load(&dir.path().join("plugins"), None).unwrap();
        let (schedule, mut scheduled) = Schedule::channel();
        let pipeline = Pipeline::new(
            config.observers.into(),
            plugins,
            store.clone(),
            schedule,
            Metrics::default(),
        );

        let unmatched = pipeline
            .stage_messages(&[message("Customer")])
            .await
            .unwrap();
        assert_eq!((unmatched.events, unmatched.stored), (1, false));
        assert_eq!(store.outbox_len().await, 0);
        assert!(scheduled.try_recv().is_err(), "nothing scheduled");

        let matched = pipeline
            .stage_messages(&[message("Customer"), message("Order")])
            .await
            .unwrap();
        assert_eq!((matched.events, matched.stored), (2, true));
        assert_eq!(store.outbox_len().await, 1);
        assert!(scheduled.try_recv().is_ok(), "the delivery is scheduled");

        let garbage = Message {
            payload: "not json".into(),
            ..message("Order")
        };
        let rejected = pipeline.stage_messages(&[garbage]).await.unwrap();
        assert_eq!((rejected.events, rejected.stored), (0, false));
        assert_eq!(store.dlq_len().await, 1);
    }
}
