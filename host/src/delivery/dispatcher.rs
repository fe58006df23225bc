//! When deliveries run. Only keys and due times live in memory; the records
//! stay in the store.
//!
//! A due key goes to its destination's queue (the receiver's host and port,
//! or the webhook itself when it has its own limits), so a slow or failing
//! destination only ever holds its own deliveries back. Each destination
//! has a concurrency limit, an optional token-bucket rate limit and a
//! circuit breaker; `max_concurrent` bounds all attempts together. Webhooks
//! with `ordering = "entity"` send one entity's deliveries one after the
//! other (a lane per entity: a failing entity blocks only itself);
//! batching webhooks gather due deliveries into one request.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{error, info, warn};

pub use super::attempt::webhook_name;
use super::attempt::{Shared, Verdict};
use super::limits::{Admit, BatchConfig, Breaker, Controls, TokenBucket, Transition};
use super::retry::RetryPolicy;
use super::schedule::Schedule;
use super::switches::Switches;
use super::Sender;
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::observer::Observer;
use crate::plugin::Plugins;
use crate::store::{Store, StoreError};

/// The dispatcher loop, ready to run.
pub struct Dispatcher {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<(u64, u64)>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    controls: Controls,
}

/// What a dispatcher works with.
pub struct Parts {
    /// The outbox and DLQ.
    pub store: Store,
    /// Makes the HTTP attempts.
    pub sender: Sender,
    /// For retry policies, controls and rebuilding requests.
    pub observers: Arc<[Observer]>,
    /// For rebuilding requests after a plugin failure.
    pub plugins: Plugins,
    /// Policy of deliveries whose observer is gone.
    pub default_retry: RetryPolicy,
    /// Attempts in flight at once, over all destinations.
    pub max_concurrent: usize,
    /// `[webhooks.*]` rate limit, per-destination concurrency, breaker, batching.
    pub controls: Controls,
    /// Where attempts are counted.
    pub metrics: Metrics,
    /// Switched-off webhooks.
    pub switches: Switches,
}

type DestId = Arc<str>;

/// An entity's lane: (observer, webhook, entity id).
type LaneId = (Arc<str>, usize, String);

/// A batching webhook, `(observer, webhook)`, and its batch settings.
type BatchRoute = ((Arc<str>, usize), BatchConfig);

/// What the loop knows about a key between its first due time and its end.
/// One is kept per queued key, so it is small: the destination's name is
/// shared with its queue, and the parts only some webhooks have are boxed
/// (100k keys queued behind a stalled receiver: 16 -> 5 MB of routes).
#[derive(Debug, Clone)]
struct Route {
    dest: DestId,
    lane: Option<Box<LaneId>>,
    /// For batching webhooks.
    batch: Option<Box<BatchRoute>>,
}

/// A unit of work on a destination's queue.
#[derive(Debug)]
enum Job {
    One(u64),
    Batch(Vec<u64>),
}

impl Job {
    fn keys(&self) -> &[u64] {
        match self {
            Job::One(key) => std::slice::from_ref(key),
            Job::Batch(keys) => keys,
        }
    }
}

struct Destination {
    ready: VecDeque<Job>,
    in_flight: usize,
    limit: usize,
    bucket: Option<TokenBucket>,
    breaker: Breaker,
    /// When a paused or throttled queue may move again.
    wake: Option<Instant>,
    /// Keys routed here and not finished yet.
    routed: usize,
}

/// An entity lane: `head` runs; the rest wait in outbox order.
struct Lane {
    head: u64,
    waiting: BTreeSet<u64>,
}

/// Deliveries of one batching webhook gathering until full or timed out.
struct Gathering {
    dest: DestId,
    config: BatchConfig,
    keys: Vec<u64>,
    since: Instant,
}

/// A finished job, reported by its task.
struct Outcome {
    dest: DestId,
    keys: Vec<u64>,
    verdict: Verdict,
}

/// The loop's state.
struct State {
    shared: Arc<Shared>,
    controls: Controls,
    permits: Arc<Semaphore>,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    routes: HashMap<u64, Route>,
    dests: HashMap<DestId, Destination>,
    lanes: HashMap<LaneId, Lane>,
    gathering: HashMap<(Arc<str>, usize), Gathering>,
    done: mpsc::UnboundedSender<Outcome>,
    /// Rotates which destination is served first.
    turn: usize,
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
            controls,
            metrics,
            switches,
        } = parts;
        let (schedule, rx) = Schedule::channel();
        let shared = Arc::new(Shared {
            store,
            sender,
            observers,
            plugins,
            default_retry,
            metrics,
            switches,
            schedule: schedule.clone(),
        });
        let dispatcher = Dispatcher {
            shared,
            rx,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            controls,
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
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut state = State {
            shared: self.shared.clone(),
            controls: self.controls.clone(),
            permits: self.permits.clone(),
            heap: BinaryHeap::new(),
            routes: HashMap::new(),
            dests: HashMap::new(),
            lanes: HashMap::new(),
            gathering: HashMap::new(),
            done: done_tx,
            turn: 0,
        };
        state.resume(resumed).await;
        loop {
            state.advance(Instant::now()).await;
            let wake = state.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                outcome = done_rx.recv() => {
                    if let Some(outcome) = outcome {
                        state.finish(outcome);
                    }
                }
                message = self.rx.recv() => match message {
                    Some((due, key)) => state.heap.push(Reverse((due, key))),
                    None => break,
                },
                _ = sleep_until(wake) => {}
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

/// `host:port` of a URL, the unit rate limits and breakers count by.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => "invalid-url".into(),
    }
}

impl State {
    /// Routes resumed keys up front so entity lanes start in outbox order
    /// (a retried head may be due after later deliveries of its entity).
    async fn resume(&mut self, resumed: Vec<(u64, u64)>) {
        let mut resumed = resumed;
        resumed.sort_by_key(|&(_, key)| key);
        for (due, key) in resumed {
            let lane = self.route(key).await.and_then(|r| r.lane.clone());
            match lane {
                Some(lane) => match self.lanes.get_mut(&*lane) {
                    Some(existing) => {
                        existing.waiting.insert(key);
                    }
                    None => {
                        self.lanes.insert(
                            *lane,
                            Lane {
                                head: key,
                                waiting: BTreeSet::new(),
                            },
                        );
                        self.heap.push(Reverse((due, key)));
                    }
                },
                None => self.heap.push(Reverse((due, key))),
            }
        }
    }

    /// Where `key` goes; read from the outbox the first time. `None` when
    /// there is nothing to run (gone, or held behind an earlier webhook).
    async fn route(&mut self, key: u64) -> Option<&Route> {
        if !self.routes.contains_key(&key) {
            let delivery = match self.shared.store.routing(key).await {
                Ok(Some(delivery)) if !delivery.held => delivery,
                Ok(_) => return None,
                Err(e) => {
                    error!(key, error = %e, "cannot read a delivery; retrying in 1s");
                    self.heap.push(Reverse((now_ms() + 1000, key)));
                    return None;
                }
            };
            let observer = self
                .shared
                .observers
                .iter()
                .find(|o| o.name == delivery.observer);
            let webhook = observer.and_then(|o| o.webhooks.get(delivery.webhook));
            let observer_name: Arc<str> = Arc::from(delivery.observer.as_str());
            let own = webhook.is_some_and(|w| {
                w.controls.rate_limit.is_some() || w.controls.max_concurrent.is_some()
            }) || self.controls.per_webhook;
            let dest_name = if own {
                format!("webhook:{}#{}", delivery.observer, delivery.webhook)
            } else {
                let url = delivery
                    .payload
                    .as_ref()
                    .map(|p| p.url.as_str())
                    .or(webhook.map(|w| w.url.as_str()))
                    .unwrap_or("");
                host_of(url)
            };
            let lane = webhook.filter(|w| w.controls.ordered).map(|_| {
                Box::new((
                    observer_name.clone(),
                    delivery.webhook,
                    delivery
                        .event
                        .entity_id
                        .clone()
                        .unwrap_or_else(|| delivery.event.id.clone()),
                ))
            });
            // An ordered webhook never batches: a failed batch would
            // reorder its entities.
            let batch = webhook
                .filter(|_| lane.is_none())
                .and_then(|w| w.controls.batch.or(self.controls.batch))
                .map(|config| Box::new(((observer_name, delivery.webhook), config)));
            // The queue's name is shared by every route to it.
            let dest: DestId = match self.dests.get_key_value(dest_name.as_str()) {
                Some((name, _)) => name.clone(),
                None => {
                    let dest: DestId = Arc::from(dest_name);
                    let controls = webhook.map(|w| &w.controls);
                    let rate = controls
                        .and_then(|c| c.rate_limit)
                        .or(self.controls.rate_limit);
                    let limit = controls
                        .and_then(|c| c.max_concurrent)
                        .unwrap_or(self.controls.max_concurrent_per_destination);
                    let breaker = controls
                        .and_then(|c| c.breaker)
                        .unwrap_or(self.controls.breaker);
                    self.dests.insert(
                        dest.clone(),
                        Destination {
                            ready: VecDeque::new(),
                            in_flight: 0,
                            limit,
                            bucket: rate.map(|r| TokenBucket::new(r, std::time::Instant::now())),
                            breaker: Breaker::new(breaker),
                            wake: None,
                            routed: 0,
                        },
                    );
                    dest
                }
            };
            if let Some(d) = self.dests.get_mut(&dest) {
                d.routed += 1;
            }
            self.routes.insert(key, Route { dest, lane, batch });
        }
        self.routes.get(&key)
    }

    /// Moves due keys to their queues and starts what may start.
    async fn advance(&mut self, now: Instant) {
        let now_unix = now_ms();
        while let Some(&Reverse((due, key))) = self.heap.peek() {
            if due > now_unix {
                break;
            }
            self.heap.pop();
            let Some(route) = self.route(key).await.cloned() else {
                continue;
            };
            if let Some(lane) = &route.lane {
                match self.lanes.get_mut(&**lane) {
                    Some(existing) if existing.head != key => {
                        // Runs once the entity's earlier deliveries are done.
                        existing.waiting.insert(key);
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        self.lanes.insert(
                            LaneId::clone(lane),
                            Lane {
                                head: key,
                                waiting: BTreeSet::new(),
                            },
                        );
                    }
                }
            }
            match route.batch.map(|batch| *batch) {
                Some((webhook, config)) => {
                    let gathering = self.gathering.entry(webhook).or_insert_with(|| Gathering {
                        dest: route.dest.clone(),
                        config,
                        keys: Vec::new(),
                        since: now,
                    });
                    if gathering.keys.is_empty() {
                        gathering.since = now;
                    }
                    gathering.keys.push(key);
                }
                None => {
                    if let Some(dest) = self.dests.get_mut(&route.dest) {
                        dest.ready.push_back(Job::One(key));
                    }
                }
            }
        }
        self.close_batches(now);
        self.pump(now);
    }

    /// Full or timed-out batches become jobs.
    fn close_batches(&mut self, now: Instant) {
        for gathering in self.gathering.values_mut() {
            while gathering.keys.len() >= gathering.config.size
                || (!gathering.keys.is_empty() && now >= gathering.since + gathering.config.timeout)
            {
                let take = gathering.keys.len().min(gathering.config.size);
                let keys: Vec<u64> = gathering.keys.drain(..take).collect();
                gathering.since = now;
                if let Some(dest) = self.dests.get_mut(&gathering.dest) {
                    dest.ready.push_back(Job::Batch(keys));
                }
            }
        }
    }

    /// Starts jobs while destinations, rate limits, breakers and the global
    /// limit allow, serving destinations in turn.
    fn pump(&mut self, now: Instant) {
        let mut ids: Vec<DestId> = self
            .dests
            .iter()
            .filter(|(_, d)| !d.ready.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        ids.sort();
        self.turn = self.turn.wrapping_add(1);
        let first = self.turn % ids.len();
        ids.rotate_left(first);
        let std_now = std::time::Instant::now();
        'dests: for id in ids {
            loop {
                let Some(dest) = self.dests.get_mut(&id) else {
                    continue 'dests;
                };
                if dest.ready.is_empty() || dest.in_flight >= dest.limit {
                    continue 'dests;
                }
                if dest.wake.is_some_and(|at| at > now) {
                    continue 'dests;
                }
                dest.wake = None;
                match dest.breaker.admit(std_now) {
                    Admit::Go | Admit::Probe => {}
                    Admit::Until(at) => {
                        dest.wake = Some(Instant::from_std(at));
                        continue 'dests;
                    }
                    // The probe's outcome pumps again.
                    Admit::AwaitProbe => continue 'dests,
                }
                if let Some(bucket) = &mut dest.bucket {
                    if let Err(wait) = bucket.take(std_now) {
                        dest.wake = Some(now + wait);
                        if dest.breaker.is_open() {
                            dest.breaker.probe_lost(std_now);
                        }
                        continue 'dests;
                    }
                }
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    // Every slot is busy; a finishing job pumps again.
                    if dest.breaker.is_open() {
                        dest.breaker.probe_lost(std_now);
                    }
                    return;
                };
                let Some(job) = dest.ready.pop_front() else {
                    continue 'dests;
                };
                dest.in_flight += 1;
                self.start(id.clone(), job, permit);
            }
        }
    }

    fn start(&self, dest: DestId, job: Job, permit: OwnedSemaphorePermit) {
        let shared = self.shared.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let result = match &job {
                Job::One(key) => shared.single(*key).await,
                Job::Batch(keys) => shared.batch(keys).await,
            };
            let verdict = result.unwrap_or_else(|e| {
                // The records are untouched in the outbox: try again shortly
                // rather than forgetting them until the next start.
                error!(error = %e, "could not record a delivery attempt; retrying in 1s");
                for key in job.keys() {
                    shared.schedule.at(now_ms() + 1000, *key);
                }
                Verdict::Retry { healthy: true }
            });
            drop(permit);
            let _ = done.send(Outcome {
                dest,
                keys: job.keys().to_vec(),
                verdict,
            });
        });
    }

    /// Books a finished job: the destination's slot and breaker, the lane's
    /// next delivery.
    fn finish(&mut self, outcome: Outcome) {
        let Outcome {
            dest,
            keys,
            verdict,
        } = outcome;
        if let Some(d) = self.dests.get_mut(&dest) {
            d.in_flight = d.in_flight.saturating_sub(1);
            let now = std::time::Instant::now();
            match verdict.health() {
                Some(ok) => match d.breaker.record(ok, now) {
                    Some(Transition::Opened(pause)) => {
                        warn!(destination = %dest, ?pause, "circuit breaker opened: deliveries wait in the outbox, then one probes");
                        self.shared.metrics.breaker(&dest, true);
                    }
                    Some(Transition::Closed) => {
                        info!(destination = %dest, "circuit breaker closed: the probe succeeded");
                        self.shared.metrics.breaker(&dest, false);
                    }
                    None => {}
                },
                None => d.breaker.probe_lost(now),
            }
        }
        let settled = !matches!(verdict, Verdict::Retry { .. });
        for key in keys {
            if !settled {
                // Comes back through the heap; its route and lane stay.
                continue;
            }
            let Some(route) = self.routes.remove(&key) else {
                continue;
            };
            if let Some(d) = self.dests.get_mut(&route.dest) {
                d.routed = d.routed.saturating_sub(1);
            }
            let Some(lane_id) = route.lane else {
                continue;
            };
            if matches!(verdict, Verdict::Parked) {
                // The lane stays blocked behind its head until the webhook
                // is enabled and the head runs again.
                if let Some(d) = self.dests.get_mut(&route.dest) {
                    d.routed += 1;
                }
                self.routes.insert(
                    key,
                    Route {
                        lane: Some(lane_id),
                        ..route
                    },
                );
                continue;
            }
            if let Some(lane) = self.lanes.get_mut(&*lane_id) {
                if lane.head == key {
                    match lane.waiting.pop_first() {
                        Some(next) => {
                            lane.head = next;
                            self.heap.push(Reverse((0, next)));
                        }
                        None => {
                            self.lanes.remove(&*lane_id);
                        }
                    }
                }
            }
        }
        self.forget_idle(&dest);
    }

    /// Drops an idle destination's state, so that many one-off hosts do not
    /// accumulate; a paused one is kept so its pause holds.
    fn forget_idle(&mut self, id: &DestId) {
        let idle = self.dests.get(id).is_some_and(|d| {
            d.ready.is_empty()
                && d.in_flight == 0
                && d.routed == 0
                && !d.breaker.is_open()
                && d.bucket.is_none()
        });
        if idle {
            self.dests.remove(id);
        }
    }

    /// The earliest of the next due key, the next batch timeout and the
    /// next throttled or paused queue.
    fn next_wake(&self) -> Option<Instant> {
        let due = self.heap.peek().map(|Reverse((due, _))| instant_of(*due));
        let dests = self
            .dests
            .values()
            .filter(|d| !d.ready.is_empty())
            .filter_map(|d| d.wake);
        let batches = self
            .gathering
            .values()
            .filter(|g| !g.keys.is_empty())
            .map(|g| g.since + g.config.timeout);
        due.into_iter().chain(dests).chain(batches).min()
    }
}
