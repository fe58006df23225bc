//! Per-destination controls, pure so that each rule is a unit test: a token
//! bucket for rate limits and a circuit breaker. The dispatcher owns one of
//! each per destination and passes the clock in.

use std::time::{Duration, Instant};

/// `max_per_second` with `burst`: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub max_per_second: f64,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

/// Tokens refill continuously at `max_per_second`, up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.limit.burst.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.max_per_second).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(
            missing / self.limit.max_per_second.max(f64::MIN_POSITIVE),
        ))
    }
}

/// When a destination is paused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker; 0 disables it.
    pub failure_threshold: u32,
    /// The first pause; it doubles while probes fail, up to `max_cooldown`.
    pub cooldown: Duration,
    /// The longest pause.
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 0,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        pause: Duration,
    },
    /// One probe is out; the rest wait for its outcome.
    HalfOpen {
        pause: Duration,
    },
}

/// Whether an attempt may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go.
    Go,
    /// The pause is over: this attempt is the probe.
    Probe,
    /// Paused until then.
    Until(Instant),
    /// A probe is out; wait for its outcome.
    AwaitProbe,
}

/// A change worth a log line and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Paused for this long.
    Opened(Duration),
    /// A probe succeeded; deliveries flow again.
    Closed,
}

/// A circuit breaker in the manner of Convoy's: after a run of failures the
/// destination is paused (its deliveries wait in the outbox, no attempt is
/// spent), then probed with one delivery.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether an attempt may start at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Go,
            State::Open { until, pause } if now >= until => {
                self.state = State::HalfOpen { pause };
                Admit::Probe
            }
            State::Open { until, .. } => Admit::Until(until),
            State::HalfOpen { .. } => Admit::AwaitProbe,
        }
    }

    /// Records an attempt's outcome: `ok` is false for failures that say the
    /// destination is unwell (5xx, 429, no answer), not for a 4xx about one
    /// request.
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        if self.config.failure_threshold == 0 {
            return None;
        }
        match (self.state, ok) {
            (State::Closed { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    Some(self.open(self.config.cooldown, now))
                } else {
                    self.state = State::Closed { failures };
                    None
                }
            }
            (State::HalfOpen { .. }, true) => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (State::HalfOpen { pause }, false) => {
                let pause = (pause * 2).min(self.config.max_cooldown);
                Some(self.open(pause, now))
            }
            // Attempts that were in flight when it opened.
            (State::Open { .. }, _) => None,
        }
    }

    fn open(&mut self, pause: Duration, now: Instant) -> Transition {
        self.state = State::Open {
            until: now + pause,
            pause,
        };
        Transition::Opened(pause)
    }

    /// A probe that could not be made (its delivery vanished) must not
    /// leave the breaker waiting forever.
    pub fn probe_lost(&mut self, now: Instant) {
        if let State::HalfOpen { pause } = self.state {
            self.state = State::Open { until: now, pause };
        }
    }

    /// Whether deliveries are held back.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

/// `batch = { size, timeout }`: one request carries up to `size` events,
/// sent when full or `timeout` after the first one was due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    /// Events per request.
    pub size: usize,
    /// Longest wait for a batch to fill.
    pub timeout: Duration,
}

/// The `[webhooks.*]` defaults for every webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Controls {
    /// `[webhooks.rate_limiting]`.
    pub rate_limit: Option<RateLimit>,
    /// Rate limits and concurrency counted per webhook instead of per
    /// destination host (`rate_limiting.per = "webhook"`).
    pub per_webhook: bool,
    /// Attempts in flight to one destination.
    pub max_concurrent_per_destination: usize,
    /// `[webhooks.circuit_breaker]`.
    pub breaker: BreakerConfig,
    /// `[webhooks.batching]`.
    pub batch: Option<BatchConfig>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            rate_limit: None,
            per_webhook: false,
            max_concurrent_per_destination: 20,
            breaker: BreakerConfig::default(),
            batch: None,
        }
    }
}

/// A webhook's own values; each one set wins over [`Controls`]. A webhook
/// with its own rate limit or concurrency gets a queue of its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookControls {
    /// `rate_limit = { max_per_second, burst }`.
    pub rate_limit: Option<RateLimit>,
    /// `max_concurrent = N`.
    pub max_concurrent: Option<usize>,
    /// `circuit_breaker = { .. }`.
    pub breaker: Option<BreakerConfig>,
    /// `ordering = "entity"`: one entity's events in order.
    pub ordered: bool,
    /// `batch = { size, timeout }`.
    pub batch: Option<BatchConfig>,
    /// Where the `body` template has its one-element array (the FraiseQL
    /// batch example's `orders = [ {..} ]`): a batch repeats that element
    /// once per event inside the first event's body. Without one, a batch
    /// request is a JSON array of the bodies.
    pub batch_array_path: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                max_per_second: 10.0,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(t0 + Duration::from_millis(100)), Ok(()));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn the_breaker_opens_after_a_run_probes_and_closes() {
        let t0 = Instant::now();
        let config = BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(25),
        };
        let mut breaker = Breaker::new(config);
        assert_eq!(breaker.record(false, t0), None);
        assert_eq!(breaker.record(true, t0), None, "a success resets the run");
        assert_eq!(breaker.record(false, t0), None);
        assert_eq!(breaker.record(false, t0), None);
        assert_eq!(
            breaker.record(false, t0),
            Some(Transition::Opened(Duration::from_secs(10)))
        );
        assert_eq!(
            breaker.admit(t0),
            Admit::Until(t0 + Duration::from_secs(10))
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(breaker.admit(t1), Admit::Probe);
        assert_eq!(breaker.admit(t1), Admit::AwaitProbe);
        // A failed probe doubles the pause, up to the maximum.
        assert_eq!(
            breaker.record(false, t1),
            Some(Transition::Opened(Duration::from_secs(20)))
        );
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(breaker.admit(t2), Admit::Probe);
        assert_eq!(
            breaker.record(false, t2),
            Some(Transition::Opened(Duration::from_secs(25)))
        );
        let t3 = t2 + Duration::from_secs(25);
        assert_eq!(breaker.admit(t3), Admit::Probe);
        assert_eq!(breaker.record(true, t3), Some(Transition::Closed));
        assert_eq!(breaker.admit(t3), Admit::Go);
        assert!(!breaker.is_open());
    }

    #[test]
    fn a_threshold_of_zero_never_opens() {
        let mut breaker = Breaker::new(BreakerConfig::default());
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(breaker.record(false, now), None);
        }
        assert_eq!(breaker.admit(now), Admit::Go);
    }
}
