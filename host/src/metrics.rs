//! Prometheus metrics: every stage records into one [`Metrics`], `GET
//! /metrics` encodes it. Labels never carry URLs (they can hold tokens):
//! a webhook is named by its `name` key, or its position in the observer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    observer: String,
    webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    observer: String,
    webhook: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncomingLabels {
    receiver: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    destination: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginName {
    plugin: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

fn plugin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

struct Inner {
    registry: Registry,
    requests: Family<WebhookLabels, Counter>,
    success: Family<WebhookLabels, Counter>,
    failure: Family<FailureLabels, Counter>,
    retry: Family<WebhookLabels, Counter>,
    latency: Family<WebhookLabels, Histogram, fn() -> Histogram>,
    dlq_size: Gauge,
    outbox_size: Gauge,
    source_lag: Gauge,
    source_dropped: Counter,
    breaker: Family<BreakerLabels, Counter>,
    incoming: Family<IncomingLabels, Counter>,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_latency: Family<PluginName, Histogram, fn() -> Histogram>,
    events_accepted: Counter,
    /// Failed attempts by reason over every webhook, for the console: a
    /// `Family` cannot be listed, and reasons are not known in advance.
    failure_reasons: Mutex<BTreeMap<String, u64>>,
}

/// One plugin's counters, resolved once when it loads so a call (about a
/// microsecond) does not pay for label lookups.
#[derive(Clone, Debug)]
pub struct PluginCounters {
    ok: Counter,
    error: Counter,
    trap: Counter,
    suspended: Counter,
    latency: Histogram,
}

impl PluginCounters {
    /// Records one call: `trap` when the sandbox stopped it, `error` for any
    /// other failure.
    pub fn record(&self, ok: bool, trapped: bool, took: Duration) {
        match (ok, trapped) {
            (true, _) => self.ok.inc(),
            (false, true) => self.trap.inc(),
            (false, false) => self.error.inc(),
        };
        self.latency.observe(took.as_secs_f64() * 1000.0);
    }

    /// Counts a call refused because the plugin is suspended.
    pub fn suspended(&self) {
        self.suspended.inc();
    }
}

/// The process's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("wasmhook")
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// How an attempt ended, for `_failure_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<'a> {
    /// An HTTP status other than 2xx.
    Status(u16),
    /// No response (timeout, refused connection...).
    Transport,
    /// The request could not be built or sent at all.
    Unsendable,
    /// A plugin failed while building it.
    Plugin(&'a str),
    /// Built-in encryption failed, or the body was over its size limit.
    Payload,
}

impl Metrics {
    /// Metrics named `<namespace>_...`.
    pub fn new(namespace: &str) -> Metrics {
        let mut registry = Registry::with_prefix(namespace);
        let requests = Family::<WebhookLabels, Counter>::default();
        let success = Family::<WebhookLabels, Counter>::default();
        let failure = Family::<FailureLabels, Counter>::default();
        let retry = Family::<WebhookLabels, Counter>::default();
        let latency = Family::<WebhookLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let dlq_size = Gauge::default();
        let outbox_size = Gauge::default();
        let source_lag = Gauge::default();
        let source_dropped = Counter::default();
        let breaker = Family::<BreakerLabels, Counter>::default();
        let incoming = Family::<IncomingLabels, Counter>::default();
        let plugin_calls = Family::<PluginLabels, Counter>::default();
        let events_accepted = Counter::default();
        let plugin_latency =
            Family::<PluginName, Histogram, fn() -> Histogram>::new_with_constructor(
                plugin_histogram as fn() -> Histogram,
            );
        registry.register(
            "events_accepted",
            "Events accepted from the source, matched or not",
            events_accepted.clone(),
        );
        registry.register("webhook_requests", "Delivery attempts", requests.clone());
        registry.register(
            "webhook_success",
            "Deliveries accepted by the receiver (2xx)",
            success.clone(),
        );
        registry.register(
            "webhook_failure",
            "Failed delivery attempts, by reason",
            failure.clone(),
        );
        registry.register(
            "webhook_retry",
            "Failed attempts that will be retried",
            retry.clone(),
        );
        registry.register(
            "webhook_latency_ms",
            "Delivery attempt duration in milliseconds",
            latency.clone(),
        );
        registry.register(
            "dlq_size",
            "Entries in the dead-letter queue",
            dlq_size.clone(),
        );
        registry.register(
            "outbox_size",
            "Deliveries waiting in the outbox",
            outbox_size.clone(),
        );
        registry.register(
            "source_lag",
            "Events on the bus not yet taken by this process's consumer group \
             (JetStream pending, Redis Streams lag, undone event-log rows)",
            source_lag.clone(),
        );
        registry.register(
            "source_dropped",
            "Messages an at-most-once source lost before wasmhook accepted them, as its \
             client reports them (core NATS: a slow consumer, its subscription buffer full); \
             a lower bound",
            source_dropped.clone(),
        );
        registry.register(
            "circuit_breaker",
            "Circuit breaker transitions, by destination (host:port or webhook) and new state",
            breaker.clone(),
        );
        registry.register(
            "incoming",
            "Incoming webhook requests, by result",
            incoming.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls, by result",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_latency_ms",
            "Plugin call duration in milliseconds",
            plugin_latency.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                success,
                failure,
                retry,
                latency,
                dlq_size,
                outbox_size,
                source_lag,
                source_dropped,
                breaker,
                incoming,
                plugin_calls,
                plugin_latency,
                events_accepted,
                failure_reasons: Mutex::default(),
            }),
        }
    }

    fn webhook(observer: &str, webhook: &str) -> WebhookLabels {
        WebhookLabels {
            observer: observer.to_string(),
            webhook: webhook.to_string(),
        }
    }

    /// Records one delivery attempt; `failure` is `None` for a 2xx, and
    /// `retrying` says whether a failed attempt will be tried again.
    pub fn attempt(
        &self,
        observer: &str,
        webhook: &str,
        took: Duration,
        failure: Option<Failure<'_>>,
        retrying: bool,
    ) {
        let labels = Self::webhook(observer, webhook);
        let i = &self.inner;
        i.requests.get_or_create(&labels).inc();
        i.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64() * 1000.0);
        match failure {
            None => {
                i.success.get_or_create(&labels).inc();
            }
            Some(failure) => {
                self.failure(observer, webhook, failure);
                if retrying {
                    i.retry.get_or_create(&labels).inc();
                }
            }
        }
    }

    /// Records a delivery that failed without an HTTP attempt (a plugin).
    pub fn failure(&self, observer: &str, webhook: &str, failure: Failure<'_>) {
        let reason = match failure {
            Failure::Status(code) => format!("http_{code}"),
            Failure::Transport => "transport".into(),
            Failure::Unsendable => "unsendable".into(),
            Failure::Plugin(_) => "plugin".into(),
            Failure::Payload => "payload".into(),
        };
        if let Ok(mut reasons) = self.inner.failure_reasons.lock() {
            match reasons.get_mut(&reason) {
                Some(n) => *n += 1,
                None => {
                    reasons.insert(reason.clone(), 1);
                }
            }
        }
        self.inner
            .failure
            .get_or_create(&FailureLabels {
                observer: observer.to_string(),
                webhook: webhook.to_string(),
                reason,
            })
            .inc();
    }

    /// Records `n` events accepted from the source.
    pub fn events_accepted(&self, n: usize) {
        self.inner.events_accepted.inc_by(n as u64);
    }

    /// Records an incoming request's result (`accepted`, `refused`, ...).
    pub fn incoming(&self, receiver: &str, result: &str) {
        self.inner
            .incoming
            .get_or_create(&IncomingLabels {
                receiver: receiver.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// The counters of one plugin.
    pub fn plugin(&self, plugin: &str) -> PluginCounters {
        let i = &self.inner;
        let counter = |result: &str| {
            i.plugin_calls
                .get_or_create(&PluginLabels {
                    plugin: plugin.to_string(),
                    result: result.to_string(),
                })
                .clone()
        };
        PluginCounters {
            ok: counter("ok"),
            error: counter("error"),
            trap: counter("trap"),
            suspended: counter("suspended"),
            latency: i
                .plugin_latency
                .get_or_create(&PluginName {
                    plugin: plugin.to_string(),
                })
                .clone(),
        }
    }

    /// Records a plugin call (`ok`, `error`, `trap`, `not_loaded`).
    pub fn plugin_call(&self, plugin: &str, result: &str, took: Duration) {
        let i = &self.inner;
        i.plugin_calls
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
                result: result.to_string(),
            })
            .inc();
        i.plugin_latency
            .get_or_create(&PluginName {
                plugin: plugin.to_string(),
            })
            .observe(took.as_secs_f64() * 1000.0);
    }

    /// Records a circuit breaker opening or closing.
    pub fn breaker(&self, destination: &str, opened: bool) {
        self.inner
            .breaker
            .get_or_create(&BreakerLabels {
                destination: destination.to_string(),
                state: if opened { "open" } else { "closed" }.to_string(),
            })
            .inc();
    }

    /// Records how far the durable source is behind, as the bus reports it.
    pub fn source_lag(&self, events: u64) {
        self.inner
            .source_lag
            .set(events.min(i64::MAX as u64) as i64);
    }

    /// Records a message an at-most-once source lost before acceptance.
    pub fn source_dropped(&self) {
        self.inner.source_dropped.inc();
    }

    /// What the counters say now, for the console's overview: totals since
    /// the process started.
    pub fn totals(&self) -> Totals {
        let i = &self.inner;
        let failures = i
            .failure_reasons
            .lock()
            .map(|reasons| reasons.clone())
            .unwrap_or_default();
        Totals {
            events_accepted: i.events_accepted.get(),
            failures,
            source_lag: u64::try_from(i.source_lag.get()).unwrap_or(0),
        }
    }

    /// One webhook's counts since start; zeros when it has made no attempt.
    /// Reads without creating the webhook's samples.
    pub fn webhook_counts(&self, observer: &str, webhook: &str) -> WebhookCounts {
        let labels = Self::webhook(observer, webhook);
        let i = &self.inner;
        let count = |family: &Family<WebhookLabels, Counter>| {
            family.get(&labels).map(|c| c.get()).unwrap_or(0)
        };
        let (latency_sum, latency_count) = i
            .latency
            .get(&labels)
            .map(|h| (h.sum(), h.count()))
            .unwrap_or((0.0, 0));
        WebhookCounts {
            attempts: count(&i.requests),
            delivered: count(&i.success),
            retries: count(&i.retry),
            latency_ms_avg: average(latency_sum, latency_count),
        }
    }

    /// One plugin's calls since start, by result; zeros when never called.
    pub fn plugin_counts(&self, plugin: &str) -> PluginCounts {
        let i = &self.inner;
        let count = |result: &str| {
            i.plugin_calls
                .get(&PluginLabels {
                    plugin: plugin.to_string(),
                    result: result.to_string(),
                })
                .map(|c| c.get())
                .unwrap_or(0)
        };
        let (latency_sum, latency_count) = i
            .plugin_latency
            .get(&PluginName {
                plugin: plugin.to_string(),
            })
            .map(|h| (h.sum(), h.count()))
            .unwrap_or((0.0, 0));
        PluginCounts {
            ok: count("ok"),
            error: count("error"),
            trap: count("trap"),
            suspended: count("suspended"),
            not_loaded: count("not_loaded"),
            latency_ms_avg: average(latency_sum, latency_count),
        }
    }

    /// The Prometheus text exposition, with the sizes read at scrape time.
    pub fn encode(&self, dlq_size: usize, outbox_size: usize) -> String {
        self.inner.dlq_size.set(dlq_size as i64);
        self.inner.outbox_size.set(outbox_size as i64);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

fn average(sum: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

/// Process-wide totals since start (see [`Metrics::totals`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Events accepted from the source.
    pub events_accepted: u64,
    /// Failed attempts by reason (`http_503`, `transport`, `plugin`...).
    pub failures: BTreeMap<String, u64>,
    /// How far the durable source is behind, as last reported (0 for
    /// sources that do not report it).
    pub source_lag: u64,
}

/// One webhook's counts since start (see [`Metrics::webhook_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WebhookCounts {
    /// Attempts made.
    pub attempts: u64,
    /// Attempts the receiver accepted (2xx).
    pub delivered: u64,
    /// Failed attempts that were to be tried again.
    pub retries: u64,
    /// Mean attempt duration, when there was one.
    pub latency_ms_avg: Option<f64>,
}

/// One plugin's calls since start (see [`Metrics::plugin_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PluginCounts {
    /// Calls that returned.
    pub ok: u64,
    /// Calls that failed other than by a trap.
    pub error: u64,
    /// Calls the sandbox stopped (fuel, memory, deadline, trap).
    pub trap: u64,
    /// Calls refused while the plugin was suspended.
    pub suspended: u64,
    /// Calls of the name while no such plugin was loaded.
    pub not_loaded: u64,
    /// Mean call duration, when there was one.
    pub latency_ms_avg: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_in_the_text_format() {
        let m = Metrics::new("wh");
        m.attempt("orders", "0", Duration::from_millis(3), None, false);
        m.attempt(
            "orders",
            "0",
            Duration::from_millis(9),
            Some(Failure::Status(503)),
            true,
        );
        m.incoming("github", "refused");
        m.plugin_call("hv", "ok", Duration::from_micros(2));
        m.source_dropped();
        let text = m.encode(4, 7);
        for line in [
            r#"wh_webhook_requests_total{observer="orders",webhook="0"} 2"#,
            r#"wh_webhook_success_total{observer="orders",webhook="0"} 1"#,
            r#"wh_webhook_failure_total{observer="orders",webhook="0",reason="http_503"} 1"#,
            r#"wh_webhook_retry_total{observer="orders",webhook="0"} 1"#,
            r#"wh_webhook_latency_ms_count{observer="orders",webhook="0"} 2"#,
            "wh_dlq_size 4",
            "wh_outbox_size 7",
            r#"wh_incoming_total{receiver="github",result="refused"} 1"#,
            r#"wh_plugin_calls_total{plugin="hv",result="ok"} 1"#,
            "wh_source_dropped_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn totals_and_counts_read_back_what_was_recorded() {
        let m = Metrics::new("wh");
        m.events_accepted(3);
        m.attempt("orders", "ship", Duration::from_millis(2), None, false);
        m.attempt(
            "orders",
            "ship",
            Duration::from_millis(4),
            Some(Failure::Status(503)),
            true,
        );
        m.failure("orders", "1", Failure::Plugin("hv"));
        m.failure("users", "0", Failure::Status(503));
        m.source_lag(12);
        let totals = m.totals();
        assert_eq!(totals.events_accepted, 3);
        assert_eq!(totals.source_lag, 12);
        assert_eq!(
            totals.failures.into_iter().collect::<Vec<_>>(),
            vec![("http_503".to_string(), 2), ("plugin".to_string(), 1)]
        );
        let ship = m.webhook_counts("orders", "ship");
        assert_eq!((ship.attempts, ship.delivered, ship.retries), (2, 1, 1));
        assert_eq!(ship.latency_ms_avg, Some(3.0));
        let none = m.webhook_counts("orders", "never");
        assert_eq!((none.attempts, none.latency_ms_avg), (0, None));
        m.plugin("hv").record(true, false, Duration::from_millis(1));
        m.plugin("hv").record(false, true, Duration::from_millis(3));
        m.plugin("hv").suspended();
        let hv = m.plugin_counts("hv");
        assert_eq!((hv.ok, hv.trap, hv.error, hv.suspended), (1, 1, 0, 1));
        assert_eq!(hv.latency_ms_avg, Some(2.0));
        assert!(m
            .encode(0, 0)
            .lines()
            .any(|l| l == "wh_events_accepted_total 3"));
    }
}
