//! One job of the dispatcher: a delivery, or a batch of deliveries to one
//! webhook, sent once, and the bookkeeping after: delivered, rescheduled,
//! buried in the DLQ, or parked while its webhook is switched off. Returns a
//! [`Verdict`] so the dispatcher can update the destination's breaker and
//! the entity's lane.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::batch;
use super::retry::{AttemptResult, Hints, RetryAction, RetryPolicy};
use super::switches::Switches;
use super::Sender;
use crate::clock::now_ms;
use crate::metrics::{Failure, Metrics};
use crate::observer::{Match, Observer, Webhook};
use crate::payload::{self, formats};
use crate::plugin::{PluginError, Plugins};
use crate::store::{Delivery, Payload, Store, StoreError};

/// What the attempt tasks share.
pub(super) struct Shared {
    pub(super) store: Store,
    pub(super) sender: Sender,
    pub(super) observers: Arc<[Observer]>,
    pub(super) plugins: Plugins,
    pub(super) default_retry: RetryPolicy,
    pub(super) metrics: Metrics,
    pub(super) switches: Switches,
    pub(super) schedule: super::schedule::Schedule,
}

/// How a job ended, for the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Done with (delivered or dead); `healthy` is false when the
    /// destination failed (5xx, 429, no answer), which counts for its breaker.
    Finished { healthy: bool },
    /// Rescheduled for another attempt.
    Retry { healthy: bool },
    /// Not attempted: its webhook is switched off (or just answered 410).
    Parked,
    /// Not attempted: no longer in the outbox, or waiting for its turn.
    Gone,
}

impl Verdict {
    /// Whether the attempt says something about the destination's health.
    pub(super) fn health(self) -> Option<bool> {
        match self {
            Verdict::Finished { healthy } | Verdict::Retry { healthy } => Some(healthy),
            Verdict::Parked | Verdict::Gone => None,
        }
    }
}

/// A webhook's name for metrics: its `name` key, or its position.
pub fn webhook_name(observer: Option<&Observer>, index: usize) -> String {
    observer
        .and_then(|o| o.webhooks.get(index))
        .map_or_else(|| index.to_string(), |w| w.name.clone())
}

/// Uniform in [0, 1) for retry jitter; 0.5 (no jitter) if the OS has no
/// randomness to give.
fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

/// What one request said about its destination.
fn healthy(result: &AttemptResult) -> bool {
    match result {
        AttemptResult::Status(code) => !(*code == 429 || *code >= 500),
        AttemptResult::Transport(_) => false,
        AttemptResult::Unsendable(_) => true,
    }
}

fn failure_of(result: &AttemptResult) -> Option<Failure<'static>> {
    match result {
        AttemptResult::Status(code) if (200..300).contains(code) => None,
        AttemptResult::Status(code) => Some(Failure::Status(*code)),
        AttemptResult::Transport(_) => Some(Failure::Transport),
        AttemptResult::Unsendable(_) => Some(Failure::Unsendable),
    }
}

/// A delivery read back for a job, with its request.
struct Loaded {
    key: u64,
    delivery: Delivery,
    payload: Payload,
}

impl Shared {
    fn observer(&self, name: &str) -> Option<&Observer> {
        self.observers.iter().find(|o| o.name == name)
    }

    /// Reads a delivery and its request; `None` when it is not to be sent
    /// now (gone, held, parked, or buried because its request cannot be
    /// built).
    async fn load(&self, key: u64) -> Result<Result<Loaded, Verdict>, StoreError> {
        let Some(mut delivery) = self.store.get(key).await? else {
            debug!(key, "delivery no longer in the outbox");
            return Ok(Err(Verdict::Gone));
        };
        if delivery.held {
            return Ok(Err(Verdict::Gone));
        }
        if self
            .switches
            .park(&delivery.observer, delivery.webhook, key)
        {
            // Waits in the outbox; enabling the webhook schedules it again.
            return Ok(Err(Verdict::Parked));
        }
        let observer = self.observer(&delivery.observer);
        let payload = match delivery.payload.take() {
            Some(payload) => payload,
            None => match self.build(observer, &delivery).await {
                Ok(payload) => payload,
                Err(Unbuilt { reason, suspended }) => {
                    let webhook = webhook_name(observer, delivery.webhook);
                    self.metrics
                        .failure(&delivery.observer, &webhook, Failure::Plugin(&reason));
                    // A suspension was logged when it began; its refusals
                    // are counted, not logged one by one.
                    if suspended {
                        debug!(observer = %delivery.observer, delivery = %delivery.id, %reason, "plugin suspended; moved to the DLQ");
                    } else {
                        warn!(observer = %delivery.observer, delivery = %delivery.id, %reason, "cannot build the request; moved to the DLQ");
                    }
                    self.store.bury(key, delivery, reason).await?;
                    return Ok(Err(Verdict::Finished { healthy: true }));
                }
            },
        };
        Ok(Ok(Loaded {
            key,
            delivery,
            payload,
        }))
    }

    /// Sends one delivery.
    pub(super) async fn single(&self, key: u64) -> Result<Verdict, StoreError> {
        let loaded = match self.load(key).await? {
            Ok(loaded) => loaded,
            Err(verdict) => return Ok(verdict),
        };
        let (id, mut payload) = (loaded.delivery.id.clone(), loaded.payload.clone());
        // A Hasura body says which retry this is; what is stored stays as
        // the first attempt sent it.
        let hasura = self
            .observer(&loaded.delivery.observer)
            .and_then(|o| o.webhooks.get(loaded.delivery.webhook))
            .is_some_and(|w| matches!(w.request.body, payload::BodySpec::Hasura { .. }));
        if hasura {
            let attempt = loaded.delivery.attempts.len();
            if let Some(body) = formats::count_retry(&payload.body, attempt) {
                payload.body = body;
            }
        }
        self.send_and_record(vec![loaded], &id, &payload).await
    }

    /// Sends deliveries of one webhook as one request. Those that cannot be
    /// sent now are left out; the rest share the outcome.
    pub(super) async fn batch(&self, keys: &[u64]) -> Result<Verdict, StoreError> {
        let mut members = Vec::with_capacity(keys.len());
        for &key in keys {
            if let Ok(loaded) = self.load(key).await? {
                members.push(loaded);
            }
        }
        let Some(first) = members.first() else {
            return Ok(Verdict::Gone);
        };
        let observer = self.observer(&first.delivery.observer);
        let array_path = observer
            .and_then(|o| o.webhooks.get(first.delivery.webhook))
            .and_then(|w| w.controls.batch_array_path.clone());
        let bodies: Vec<&[u8]> = members.iter().map(|m| m.payload.body.as_slice()).collect();
        let body = batch::combine(&bodies, array_path.as_deref());
        let ids: Vec<&str> = members.iter().map(|m| m.delivery.id.as_str()).collect();
        let id = batch::batch_id(&ids);
        let payload = Payload {
            body,
            ..first.payload.clone()
        };
        self.send_and_record(members, &id, &payload).await
    }

    async fn send_and_record(
        &self,
        members: Vec<Loaded>,
        request_id: &str,
        payload: &Payload,
    ) -> Result<Verdict, StoreError> {
        let count = members.len();
        let webhook = self
            .observer(&members[0].delivery.observer)
            .and_then(|o| o.webhooks.get(members[0].delivery.webhook));
        // A batch has no one event: it is named by its request id.
        let event_id = match members.as_slice() {
            [only] => only.delivery.event.id.as_str(),
            _ => request_id,
        };
        let (attempt, result, retry_after) = self
            .sender
            .attempt(request_id, event_id, payload, webhook)
            .await;
        let took = Duration::from_millis(attempt.duration_ms);
        let healthy = healthy(&result);
        let observer_name = members[0].delivery.observer.clone();
        let webhook_index = members[0].delivery.webhook;
        let observer = self.observer(&observer_name);
        let policy = observer.map_or(&self.default_retry, |o| &o.retry);
        let webhook = webhook_name(observer, webhook_index);
        // A receiver that says the endpoint is gone for good: switch the
        // webhook off (an operator re-enables it) and keep what waits.
        let gone = result == AttemptResult::Status(410);
        if gone {
            if let Err(e) = self.switches.disable(&observer_name, webhook_index).await {
                warn!(error = %e, "cannot record the disabled webhook");
            }
            warn!(observer = %observer_name, %webhook, "the receiver answered 410 Gone: webhook disabled until `wasmhook webhook enable`");
        }
        let mut verdict = Verdict::Finished { healthy };
        // One draw for the whole job, so a batch's members come back together.
        let draw = random_unit();
        for Loaded {
            key,
            mut delivery,
            payload: own,
        } in members
        {
            delivery.payload = Some(own);
            delivery.attempts.push(attempt.clone());
            let attempts = delivery.attempts.len() as u32;
            let release = if attempts == 1 { delivery.next } else { None };
            let action = if gone {
                None
            } else {
                Some(policy.decide_with(attempts, &result, Hints { retry_after, draw }))
            };
            self.metrics.attempt(
                &observer_name,
                &webhook,
                took,
                failure_of(&result),
                matches!(action, Some(RetryAction::RetryIn(_))),
            );
            match action {
                None => {
                    self.store.reschedule(key, &delivery).await?;
                    self.switches.park(&observer_name, webhook_index, key);
                    verdict = Verdict::Parked;
                }
                Some(RetryAction::Delivered) => {
                    self.store.complete(key, &delivery).await?;
                    debug!(observer = %observer_name, %webhook, delivery = %delivery.id, attempts, "delivered");
                }
                Some(RetryAction::RetryIn(delay)) => {
                    delivery.due_ms = now_ms() + delay.as_millis() as u64;
                    self.store.reschedule(key, &delivery).await?;
                    warn!(observer = %observer_name, %webhook, delivery = %delivery.id, attempts, ?result, retry_in = ?delay, "delivery failed; will retry");
                    self.schedule.at(delivery.due_ms, key);
                    verdict = Verdict::Retry { healthy };
                }
                Some(RetryAction::Dead(reason)) => {
                    let reason = if count > 1 {
                        format!("{reason} (in a batch of {count}, request {request_id})")
                    } else {
                        reason
                    };
                    warn!(observer = %observer_name, %webhook, delivery = %delivery.id, attempts, %reason, "delivery dead; moved to the DLQ");
                    self.store.bury(key, delivery, reason).await?;
                }
            }
            if let Some(next) = release {
                if let Some(due) = self.store.release(next).await? {
                    self.schedule.at(due, next);
                }
            }
        }
        if count > 1 {
            info!(observer = %observer_name, %webhook, events = count, request = %request_id, ?result, "batch sent");
        }
        Ok(verdict)
    }

    /// Builds the request of a delivery that has none yet (see
    /// [`Shared::rebuild`]). A plugin suspended right now refuses it before
    /// anything waits: the work would only fail. Otherwise the plugins'
    /// slots are reserved here, where waiting for a busy plugin holds no
    /// thread, and the build runs where its plugins may block.
    async fn build(
        &self,
        observer: Option<&Observer>,
        delivery: &Delivery,
    ) -> Result<Payload, Unbuilt> {
        let using: Vec<&str> = observer
            .and_then(|o| o.webhooks.get(delivery.webhook))
            .into_iter()
            .flat_map(Webhook::build_plugins)
            .collect();
        if let Some(refused) = using.iter().find_map(|name| self.plugins.suspended(name)) {
            return Err(Unbuilt {
                reason: payload::BuildError::Plugin(refused).to_string(),
                suspended: true,
            });
        }
        let reserved = self.plugins.reserve(using.iter().copied()).await;
        let plugins = reserved.plugins();
        plugins.run(using, || self.rebuild(observer, delivery, plugins))
    }

    /// Builds the request of a delivery that has none yet: one a plugin
    /// builds (first attempt), or one that died before it had one (a DLQ
    /// retry after a plugin failure); with the current config and plugins.
    fn rebuild(
        &self,
        observer: Option<&Observer>,
        delivery: &Delivery,
        plugins: &Plugins,
    ) -> Result<Payload, Unbuilt> {
        let observer = observer.ok_or_else(|| {
            Unbuilt::from(format!(
                "observer {:?} is no longer configured",
                delivery.observer
            ))
        })?;
        let webhook = observer.webhooks.get(delivery.webhook).ok_or_else(|| {
            Unbuilt::from(format!(
                "observer {:?} has no webhook #{} any more",
                observer.name, delivery.webhook
            ))
        })?;
        let matched = Match {
            observer,
            webhook_index: delivery.webhook,
            webhook,
            failed: None,
        };
        payload::build(&matched, &delivery.event, plugins).map_err(|e| Unbuilt {
            suspended: matches!(
                e,
                payload::BuildError::Plugin(PluginError::Suspended { .. })
            ),
            reason: e.to_string(),
        })
    }
}

/// Why a delivery's request could not be built: its DLQ reason.
struct Unbuilt {
    reason: String,
    /// A suspended plugin refused the call.
    suspended: bool,
}

impl From<String> for Unbuilt {
    fn from(reason: String) -> Unbuilt {
        Unbuilt {
            reason,
            suspended: false,
        }
    }
}
