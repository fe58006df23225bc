//! When deliveries run: a timer queue of outbox keys (only keys and due
//! times live in memory; the records stay in sled), at most `max_concurrent`
//! attempts in flight, and the bookkeeping after each attempt: delivered,
//! rescheduled, or buried in the DLQ.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::retry::{AttemptResult, Hints, RetryAction, RetryPolicy};
use super::switches::Switches;
use super::Sender;
use crate::metrics::{Failure, Metrics};
use crate::observer::{Match, Observer};
use crate::outbox::{now_ms, Delivery, Store, StoreError};
use crate::payload::{self, Payload};
use crate::plugin::Plugins;

/// Schedules outbox keys on the running dispatcher.
#[derive(Clone)]
pub struct Schedule {
    tx: mpsc::UnboundedSender<(u64, u64)>,
}

impl Schedule {
    /// Runs `key` at `due_ms` (unix milliseconds; the past means now).
    pub fn at(&self, due_ms: u64, key: u64) {
        // A closed channel means the dispatcher stopped for shutdown; the
        // record is in the outbox and the next start picks it up.
        let _ = self.tx.send((due_ms, key));
    }
}

/// What the attempt tasks share.
struct Shared {
    store: Store,
    sender: Sender,
    observers: Arc<[Observer]>,
    plugins: Plugins,
    default_retry: RetryPolicy,
    schedule: Schedule,
    metrics: Metrics,
    switches: Switches,
}

/// The dispatcher loop, ready to run.
pub struct Dispatcher {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<(u64, u64)>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
}

/// What a dispatcher works with.
pub struct Parts {
    /// The outbox and DLQ.
    pub store: Store,
    /// Makes the HTTP attempts.
    pub sender: Sender,
    /// For retry policies and rebuilding requests.
    pub observers: Arc<[Observer]>,
    /// For rebuilding requests after a plugin failure.
    pub plugins: Plugins,
    /// Policy of deliveries whose observer is gone.
    pub default_retry: RetryPolicy,
    /// Attempts in flight at once.
    pub max_concurrent: usize,
    /// Where attempts are counted.
    pub metrics: Metrics,
    /// Switched-off webhooks.
    pub switches: Switches,
}

impl Dispatcher {
    /// Builds a dispatcher and the handle that feeds it.
    pub fn new(parts: Parts) -> (Dispatcher, Schedule) {
        let Parts {
            store,
            sender,
            observers,
            plugins,
            default_retry,
            max_concurrent,
            metrics,
            switches,
        } = parts;
        let (tx, rx) = mpsc::unbounded_channel();
        let schedule = Schedule { tx };
        let shared = Arc::new(Shared {
            store,
            sender,
            observers,
            plugins,
            default_retry,
            schedule: schedule.clone(),
            metrics,
            switches,
        });
        let dispatcher = Dispatcher {
            shared,
            rx,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
        };
        (dispatcher, schedule)
    }

    /// Dispatches until `shutdown` turns true, starting with `resumed` (what
    /// [`Store::pending`] found from an earlier run; read before any source
    /// starts, so no key is queued twice); waits up to `drain` for attempts
    /// in flight.
    pub async fn run(
        mut self,
        resumed: Vec<(u64, u64)>,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) -> Result<(), StoreError> {
        if !resumed.is_empty() {
            info!(
                deliveries = resumed.len(),
                "resuming deliveries from the outbox"
            );
        }
        let mut queue: BinaryHeap<Reverse<(u64, u64)>> = resumed.into_iter().map(Reverse).collect();

        loop {
            let wake = queue.peek().map(|Reverse((due, _))| instant_of(*due));
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                message = self.rx.recv() => match message {
                    Some(item) => queue.push(Reverse(item)),
                    None => break,
                },
                _ = sleep_until(wake) => {}
            }
            let now = now_ms();
            while let Some(&Reverse((due, key))) = queue.peek() {
                if due > now {
                    break;
                }
                let permit = tokio::select! {
                    permit = self.permits.clone().acquire_owned() => permit,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                };
                let Ok(permit) = permit else { break };
                queue.pop();
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    shared.run_one(key).await;
                    drop(permit);
                });
            }
        }
        // Let attempts in flight finish so their outcome is recorded; what is
        // still running after `drain` is retried after the next start.
        let all = self.max_concurrent as u32;
        if tokio::time::timeout(drain, self.permits.acquire_many(all))
            .await
            .is_err()
        {
            warn!("shutdown: attempts still in flight after the drain deadline; they will be retried after restart");
        }
        self.shared.store.flush().await
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn instant_of(due_ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + Duration::from_millis(due_ms.saturating_sub(now))
}

impl Shared {
    async fn run_one(&self, key: u64) {
        if let Err(e) = self.attempt(key).await {
            // The record is untouched in the outbox: try it again shortly
            // rather than forgetting it until the next start.
            error!(key, error = %e, "could not record a delivery attempt; retrying in 1s");
            self.schedule.at(now_ms() + 1000, key);
        }
    }

    async fn attempt(&self, key: u64) -> Result<(), StoreError> {
        let Some(mut delivery) = self.store.get(key)? else {
            debug!(key, "delivery no longer in the outbox");
            return Ok(());
        };
        if delivery.held {
            return Ok(());
        }
        if self
            .switches
            .park(&delivery.observer, delivery.webhook, key)
        {
            // Waits in the outbox; enabling the webhook schedules it again.
            return Ok(());
        }
        let observer = self.observers.iter().find(|o| o.name == delivery.observer);
        let policy = observer.map_or(&self.default_retry, |o| &o.retry);
        let payload = match delivery.payload.take() {
            Some(payload) => payload,
            None => match self.rebuild(observer, &delivery) {
                Ok(payload) => payload,
                Err(reason) => {
                    let webhook = webhook_name(observer, delivery.webhook);
                    self.metrics
                        .failure(&delivery.observer, &webhook, Failure::Plugin(&reason));
                    warn!(observer = %delivery.observer, delivery = %delivery.id, %reason, "cannot build the request; moved to the DLQ");
                    self.store.bury(key, delivery, reason)?;
                    return Ok(());
                }
            },
        };
        let (attempt, result, retry_after) = self.sender.attempt(&delivery, &payload).await;
        let took = Duration::from_millis(attempt.duration_ms);
        delivery.payload = Some(payload);
        delivery.attempts.push(attempt);
        let attempts = delivery.attempts.len() as u32;
        let release = if attempts == 1 { delivery.next } else { None };
        let hints = Hints {
            retry_after,
            draw: random_unit(),
        };
        let action = policy.decide_with(attempts, &result, hints);
        let failure = match &result {
            AttemptResult::Status(code) if (200..300).contains(code) => None,
            AttemptResult::Status(code) => Some(Failure::Status(*code)),
            AttemptResult::Transport(_) => Some(Failure::Transport),
            AttemptResult::Unsendable(_) => Some(Failure::Unsendable),
        };
        let webhook = webhook_name(observer, delivery.webhook);
        self.metrics.attempt(
            &delivery.observer,
            &webhook,
            took,
            failure,
            matches!(action, RetryAction::RetryIn(_)),
        );
        match action {
            RetryAction::Delivered => {
                self.store.complete(key)?;
                debug!(observer = %delivery.observer, %webhook, delivery = %delivery.id, attempts, "delivered");
            }
            RetryAction::RetryIn(delay) => {
                delivery.due_ms = now_ms() + delay.as_millis() as u64;
                self.store.reschedule(key, &delivery)?;
                warn!(observer = %delivery.observer, %webhook, delivery = %delivery.id, attempts, ?result, retry_in = ?delay, "delivery failed; will retry");
                self.schedule.at(delivery.due_ms, key);
            }
            RetryAction::Dead(reason) => {
                warn!(observer = %delivery.observer, %webhook, delivery = %delivery.id, attempts, %reason, "delivery dead; moved to the DLQ");
                self.store.bury(key, delivery, reason)?;
            }
        }
        if let Some(next) = release {
            if let Some(due) = self.store.release(next)? {
                self.schedule.at(due, next);
            }
        }
        Ok(())
    }

    /// Builds the request of a delivery that died before it had one (a DLQ
    /// retry after a plugin failure), with the current config and plugins.
    fn rebuild(&self, observer: Option<&Observer>, delivery: &Delivery) -> Result<Payload, String> {
        let observer = observer
            .ok_or_else(|| format!("observer {:?} is no longer configured", delivery.observer))?;
        let webhook = observer.webhooks.get(delivery.webhook).ok_or_else(|| {
            format!(
                "observer {:?} has no webhook #{} any more",
                observer.name, delivery.webhook
            )
        })?;
        let matched = Match {
            observer,
            webhook_index: delivery.webhook,
            webhook,
            failed: None,
        };
        payload::build(&matched, &delivery.event, &self.plugins).map_err(|e| e.to_string())
    }
}
