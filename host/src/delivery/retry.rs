//! The retry policy: given what an attempt returned and how many attempts
//! were made, decide whether the delivery is done, tried again later, or dead.
//!
//! Pure (no I/O, no clock, no randomness: the caller passes the random
//! draw for jitter), so every rule is a unit test.
//!
//! Status rule, in order: 2xx is delivered; a code in `dont_retry_on` is dead;
//! a code in `retry_on` is retried; any other 5xx is retried; anything else
//! (other 4xx, 3xx: redirects are not followed, 1xx) is dead. Timeouts and
//! connection errors are retried.

use std::time::Duration;

/// How the delay grows between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `initial_delay * multiplier^(n-1)`.
    Exponential,
    /// `initial_delay * n`.
    Linear,
    /// Always `initial_delay`.
    Fixed,
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// Factor for exponential backoff.
    pub multiplier: f64,
    /// Status codes that are retried.
    pub retry_on: Vec<u16>,
    /// Status codes that are never retried (checked first).
    pub dont_retry_on: Vec<u16>,
    /// Spread of computed delays, as a fraction: 0.2 makes each delay
    /// 80% to 120% of the backoff value, so receivers that failed together
    /// are not hit again all at once.
    pub jitter: f64,
}

/// What the receiver said about retrying, and the random draw for jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hints {
    /// `Retry-After` of a 429 or 503, already parsed.
    pub retry_after: Option<Duration>,
    /// Uniform in [0, 1); 0.5 means no jitter.
    pub draw: f64,
}

impl Default for Hints {
    fn default() -> Self {
        Hints {
            retry_after: None,
            draw: 0.5,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::Exponential,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            retry_on: vec![408, 429, 500, 502, 503, 504],
            dont_retry_on: vec![400, 401, 403, 404, 422],
            jitter: 0.2,
        }
    }
}

/// What one HTTP attempt produced, as far as the policy cares.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: timeout, refused or reset connection, TLS failure.
    Transport(String),
    /// The request could not be sent at all (a rendered header value that
    /// HTTP forbids): retrying would fail the same way.
    Unsendable(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAction {
    /// The receiver accepted it.
    Delivered,
    /// Try again after this delay.
    RetryIn(Duration),
    /// Stop; the reason goes into the DLQ entry.
    Dead(String),
}

impl RetryPolicy {
    /// Decides after attempt number `attempts_made` (1 for the first),
    /// without a `Retry-After` and without jitter.
    pub fn decide(&self, attempts_made: u32, result: &AttemptResult) -> RetryAction {
        self.decide_with(attempts_made, result, Hints::default())
    }

    /// Decides after attempt number `attempts_made`: a `Retry-After` on 429
    /// or 503 replaces the computed delay (bounded by `max_delay`); otherwise
    /// the computed delay gets its jitter.
    pub fn decide_with(
        &self,
        attempts_made: u32,
        result: &AttemptResult,
        hints: Hints,
    ) -> RetryAction {
        let retryable = match result {
            AttemptResult::Status(code) if (200..300).contains(code) => {
                return RetryAction::Delivered
            }
            AttemptResult::Status(code) => {
                if self.dont_retry_on.contains(code) {
                    return RetryAction::Dead(format!(
                        "HTTP {code} is not retried (dont_retry_on)"
                    ));
                }
                self.retry_on.contains(code) || (500..600).contains(code)
            }
            AttemptResult::Transport(_) => true,
            AttemptResult::Unsendable(reason) => return RetryAction::Dead(reason.clone()),
        };
        if !retryable {
            let AttemptResult::Status(code) = result else {
                unreachable!("transport errors are retryable")
            };
            let why = if (300..400).contains(code) {
                "redirects are not followed; update the webhook url"
            } else {
                "not a retryable status"
            };
            return RetryAction::Dead(format!("HTTP {code}: {why}"));
        }
        if attempts_made >= self.max_attempts {
            let last = match result {
                AttemptResult::Status(code) => format!("HTTP {code}"),
                AttemptResult::Transport(error) | AttemptResult::Unsendable(error) => error.clone(),
            };
            return RetryAction::Dead(format!(
                "gave up after {attempts_made} attempts; last: {last}"
            ));
        }
        let told = match (result, hints.retry_after) {
            (AttemptResult::Status(429 | 503), Some(after)) => Some(after.min(self.max_delay)),
            _ => None,
        };
        RetryAction::RetryIn(told.unwrap_or_else(|| self.jittered(attempts_made, hints.draw)))
    }

    /// [`RetryPolicy::delay_after`] spread by `jitter`, still at most `max_delay`.
    pub fn jittered(&self, attempts_made: u32, draw: f64) -> Duration {
        let base = self.delay_after(attempts_made).as_secs_f64();
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * draw.clamp(0.0, 1.0) - 1.0);
        at_most(base * (1.0 + spread), self.max_delay)
    }

    /// The wait after attempt number `attempts_made` (1-based) failed.
    pub fn delay_after(&self, attempts_made: u32) -> Duration {
        let n = attempts_made.max(1);
        let initial = self.initial_delay.as_secs_f64();
        let seconds = match self.backoff {
            Backoff::Fixed => initial,
            Backoff::Linear => initial * f64::from(n),
            Backoff::Exponential => {
                initial * self.multiplier.powi(n.saturating_sub(1).min(1000) as i32)
            }
        };
        at_most(seconds, self.max_delay)
    }
}

/// `seconds` as a delay of at most `max`. NaN (from a NaN multiplier),
/// overflow (a huge one) and negative values fall back to `max`, and the
/// cap is applied to the `Duration`, not to the float: near
/// `Duration::MAX`, `max.as_secs_f64()` rounds up past what a `Duration`
/// holds, and `Duration::from_secs_f64` of it panics.
fn at_most(seconds: f64, max: Duration) -> Duration {
    Duration::try_from_secs_f64(seconds).map_or(max, |delay| delay.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            backoff,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.5,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn delays_follow_the_backoff_and_stop_at_max_delay() {
        let ms = |b, n| policy(b).delay_after(n).as_millis();
        assert_eq!(
            [1, 2, 3, 4].map(|n| ms(Backoff::Exponential, n)),
            [100, 250, 625, 1000]
        );
        assert_eq!(
            [1, 2, 3, 20].map(|n| ms(Backoff::Linear, n)),
            [100, 200, 300, 1000]
        );
        assert_eq!([1, 2, 9].map(|n| ms(Backoff::Fixed, n)), [100, 100, 100]);
        assert_eq!(ms(Backoff::Exponential, u32::MAX), 1000);
    }

    #[test]
    fn status_rules() {
        let p = RetryPolicy::default();
        let d = |code| p.decide(1, &AttemptResult::Status(code));
        assert_eq!(d(200), RetryAction::Delivered);
        assert_eq!(d(204), RetryAction::Delivered);
        for code in [408, 429, 500, 502, 503, 504, 507] {
            assert_eq!(
                d(code),
                RetryAction::RetryIn(Duration::from_secs(1)),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 422, 405, 301, 302, 101] {
            assert!(matches!(d(code), RetryAction::Dead(_)), "{code}");
        }
        let RetryAction::Dead(reason) = d(302) else {
            panic!()
        };
        assert!(reason.contains("redirects are not followed"), "{reason}");
    }

    #[test]
    fn dont_retry_on_wins_and_retry_on_extends() {
        let p = RetryPolicy {
            retry_on: vec![409, 500],
            dont_retry_on: vec![500],
            ..RetryPolicy::default()
        };
        assert!(matches!(
            p.decide(1, &AttemptResult::Status(500)),
            RetryAction::Dead(_)
        ));
        assert!(matches!(
            p.decide(1, &AttemptResult::Status(409)),
            RetryAction::RetryIn(_)
        ));
    }

    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1000.0).round()
    }

    #[test]
    fn retry_after_on_429_and_503_replaces_the_delay_within_max_delay() {
        let p = policy(Backoff::Exponential);
        let hints = |secs| Hints {
            retry_after: Some(Duration::from_secs(secs)),
            draw: 0.9,
        };
        let wait = |code, h| p.decide_with(1, &AttemptResult::Status(code), h);
        assert_eq!(wait(429, hints(0)), RetryAction::RetryIn(Duration::ZERO));
        assert_eq!(
            wait(503, hints(1)),
            RetryAction::RetryIn(Duration::from_secs(1))
        );
        // Bounded: a receiver cannot park a delivery for a day.
        assert_eq!(
            wait(429, hints(86_400)),
            RetryAction::RetryIn(Duration::from_secs(1))
        );
        // Other statuses keep the backoff (with jitter: 100ms * 1.16).
        let RetryAction::RetryIn(delay) = wait(500, hints(0)) else {
            panic!("500 is retried")
        };
        assert_eq!(ms(delay), 116.0);
    }

    #[test]
    fn jitter_spreads_within_its_fraction_and_max_delay() {
        let p = policy(Backoff::Exponential);
        assert_eq!(ms(p.jittered(1, 0.0)), 80.0);
        assert_eq!(ms(p.jittered(1, 0.5)), 100.0);
        assert_eq!(ms(p.jittered(2, 0.75)), 275.0);
        // At the cap, jitter only goes down.
        assert_eq!(p.jittered(10, 0.99), Duration::from_secs(1));
        assert!(p.jittered(10, 0.0) >= Duration::from_millis(800));
    }

    #[test]
    fn gives_up_after_max_attempts_naming_the_last_error() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let refused = AttemptResult::Transport("connection refused".into());
        assert!(matches!(p.decide(2, &refused), RetryAction::RetryIn(_)));
        assert_eq!(
            p.decide(3, &refused),
            RetryAction::Dead("gave up after 3 attempts; last: connection refused".into())
        );
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of the delays for any policy: bounded by `max_delay`
    //! whatever the numbers (even ones the config rejects), and, for the
    //! policies the config accepts, never shrinking from one attempt to the
    //! next and spread by jitter only within its fraction.

    use super::*;
    use proptest::prelude::*;

    /// Mostly realistic durations, sometimes anything up to `Duration::MAX`.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            6 => (0u64..86_400_000).prop_map(Duration::from_millis),
            2 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            1 => Just(Duration::ZERO),
            1 => Just(Duration::MAX),
        ]
    }

    fn backoff() -> impl Strategy<Value = Backoff> {
        prop_oneof![
            Just(Backoff::Exponential),
            Just(Backoff::Linear),
            Just(Backoff::Fixed)
        ]
    }

    /// Policies as `config::resolve` accepts them: a finite multiplier of
    /// at least 1, jitter from 0 to 1, `max_delay` not below `initial_delay`.
    fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
        let multiplier = prop_oneof![Just(1.0), 1.0..4.0f64, 1.0..1.000_001f64, 1.0..f64::MAX,];
        (
            backoff(),
            duration(),
            duration(),
            multiplier,
            0.0..=1.0f64,
            1u32..=100,
        )
            .prop_map(
                |(backoff, a, b, multiplier, jitter, max_attempts)| RetryPolicy {
                    max_attempts,
                    backoff,
                    initial_delay: a.min(b),
                    max_delay: a.max(b),
                    multiplier,
                    jitter,
                    ..RetryPolicy::default()
                },
            )
    }

    /// Any numbers at all: NaN and negative multipliers, jitter outside
    /// [0, 1], `max_delay` below `initial_delay`.
    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            backoff(),
            duration(),
            duration(),
            any::<f64>(),
            any::<f64>(),
        )
            .prop_map(|(backoff, initial_delay, max_delay, multiplier, jitter)| {
                RetryPolicy {
                    backoff,
                    initial_delay,
                    max_delay,
                    multiplier,
                    jitter,
                    ..RetryPolicy::default()
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn delays_never_exceed_max_delay(
            policy in any_policy(),
            attempt in any::<u32>(),
            draw in any::<f64>(),
        ) {
            prop_assert!(policy.delay_after(attempt) <= policy.max_delay);
            prop_assert!(policy.jittered(attempt, draw) <= policy.max_delay);
        }

        #[test]
        fn delays_never_shrink_as_attempts_grow(
            policy in valid_policy(),
            a in any::<u32>(),
            b in any::<u32>(),
        ) {
            let (early, late) = (a.min(b), a.max(b));
            prop_assert!(policy.delay_after(early) <= policy.delay_after(late));
            let mut previous = Duration::ZERO;
            for attempt in 1..=policy.max_attempts {
                let delay = policy.delay_after(attempt);
                prop_assert!(delay >= previous, "attempt {}: {:?} < {:?}", attempt, delay, previous);
                previous = delay;
            }
        }

        #[test]
        fn jitter_stays_within_its_fraction(
            policy in valid_policy(),
            attempt in any::<u32>(),
            draw in 0.0..1.0f64,
        ) {
            let delay = policy.delay_after(attempt).as_secs_f64();
            let cap = policy.max_delay.as_secs_f64();
            let low = delay * (1.0 - policy.jitter);
            let high = (delay * (1.0 + policy.jitter)).min(cap);
            let got = policy.jittered(attempt, draw);
            // f64 seconds carry about 16 digits: allow that much rounding,
            // and a nanosecond for the conversion to a Duration.
            let slack = 1e-9 + high * 1e-12;
            let seconds = got.as_secs_f64();
            prop_assert!(seconds >= low - slack, "{:?} below {}", got, low);
            prop_assert!(seconds <= high + slack, "{:?} above {}", got, high);
            prop_assert!(got <= policy.max_delay);
        }
    }
}
