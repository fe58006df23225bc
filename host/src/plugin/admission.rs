//! Whether and when a plugin call may run: at most `max_concurrency` calls
//! of one plugin at a time ([`Slots`]), none while it is suspended
//! ([`Suspension`]), and on which thread ([`Pace`]).
//!
//! Slots keep one plugin from taking every core: a plugin spending its
//! whole budget on every call would otherwise be run by as many threads as
//! deliveries in flight.
//!
//! The sandbox stops a hostile call within its budget, but a plugin that
//! loops, hogs memory or overruns its timeout on every event would still
//! spend a whole budget of CPU per event, on the same cores every healthy
//! observer needs. After `suspend_after` failed calls in a row (traps and
//! refused output: what costs the host, not a plugin's own `error` answer)
//! the plugin is suspended: calls fail at once with a reason that names the
//! last failure, so their deliveries still reach the DLQ, where `dlq retry`
//! replays them once the plugin is fixed. When the back-off ends, one probe
//! call runs; a success lifts the suspension, a failure doubles the
//! back-off. Replacing the file starts a new version with a clean record.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::PluginError;

/// The first suspension; each failed probe doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest suspension.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Concurrent calls of one plugin version.
///
/// A semaphore that async code can wait on ([`Slots::reserve`]) as well as
/// a blocking thread ([`Slots::take`]): a delivery waiting for a busy
/// plugin must not hold a thread while it waits. Behind a plugin that
/// spends its whole budget on every call, each attempt waiting in
/// `block_in_place` would hold one, and the runtime would start another
/// thread to replace each: a thread per waiting attempt.
#[derive(Debug)]
pub(crate) struct Slots(Arc<Semaphore>);

/// A taken slot, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    /// `None` only if the semaphore was closed, which nothing does.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Slots {
    pub(crate) fn new(count: usize) -> Slots {
        Slots(Arc::new(Semaphore::new(count.max(1))))
    }

    /// Waits for a free slot. Blocking: callers run on a thread that may
    /// block (see [`super::blocking`]).
    pub(crate) fn take(&self) -> Slot {
        match self.0.clone().try_acquire_owned() {
            Ok(permit) => Slot {
                _permit: Some(permit),
            },
            Err(_) => Slot {
                _permit: futures::executor::block_on(self.0.clone().acquire_owned()).ok(),
            },
        }
    }

    /// Waits for a free slot without holding a thread.
    pub(crate) async fn reserve(&self) -> Slot {
        Slot {
            _permit: self.0.clone().acquire_owned().await.ok(),
        }
    }
}

/// A poisoned lock still holds consistent counters: every critical
/// section here is a few assignments that cannot panic halfway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Guest work (fuel: about one unit per Wasm instruction) a call may do and
/// still count as quick: well under a millisecond of CPU. Fuel, not the
/// clock, because on a busy machine any call can be preempted for
/// milliseconds.
const QUICK_FUEL: u64 = 1_000_000;
/// A call that takes longer than this by the clock was not quick whatever
/// its fuel says: it waited in a host call, or the machine is overloaded.
const SLOW_WALL: Duration = Duration::from_millis(50);
/// Calls a new version makes off the async workers before it may run on
/// them: its first calls include instantiation and show how it behaves.
const PROVEN_AFTER: u32 = 8;

/// Whether a plugin version's calls may run on the async worker that needs
/// them, rather than behind `block_in_place`.
///
/// Handing the worker's other tasks to another thread costs a thread
/// wake-up per call (tokio spawns the worker loop on its blocking pool):
/// measured end to end, more CPU than the warm calls themselves, and far
/// more threads, so more concurrent instances and memory. A call that may
/// take its whole budget must still not hold a worker, so a version runs in
/// place only once its first [`PROVEN_AFTER`] calls were quick (at most
/// [`QUICK_FUEL`] of guest work, instantiation included, and at most
/// [`SLOW_WALL`] by the clock), and never again after a call that was not:
/// a plugin can hold a worker that way at most once per version (or once
/// per concurrent call, up to `max_concurrency`, if they start together).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    quick_calls: AtomicU32,
    slow: AtomicBool,
    /// [`Pace::took`] has reported the version slow.
    reported: AtomicBool,
}

impl Pace {
    /// Records the fuel a call (or an instantiation) used; true when this
    /// made the version slow.
    pub(crate) fn used(&self, fuel: u64) -> bool {
        fuel > QUICK_FUEL && self.mark_slow()
    }

    /// Records a finished call that took `took`. True once per version: at
    /// the first call that ends with the version slow, by this call's time
    /// or by the fuel it (or its instantiation) used, so that the caller
    /// reports it in one place.
    pub(crate) fn took(&self, took: Duration) -> bool {
        if took > SLOW_WALL {
            self.mark_slow();
        }
        if self.slow.load(Ordering::Relaxed) {
            return !self.reported.swap(true, Ordering::Relaxed);
        }
        if self.quick_calls.load(Ordering::Relaxed) < PROVEN_AFTER {
            self.quick_calls.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    fn mark_slow(&self) -> bool {
        !self.slow.swap(true, Ordering::Relaxed)
    }

    /// Whether its calls may run on an async worker.
    pub(crate) fn proven_quick(&self) -> bool {
        !self.slow.load(Ordering::Relaxed)
            && self.quick_calls.load(Ordering::Relaxed) >= PROVEN_AFTER
    }
}

/// The nice value of the threads that run calls of versions not proven
/// quick (see [`aside`]). 10 gives such a thread a tenth of the CPU share
/// of the pipeline's own threads (CFS weight 110 against 1024) while they
/// compete, and the whole of a core that nobody else wants.
const ASIDE_NICE: i32 = 10;

/// Runs `call` on a thread of its own at a lower CPU priority, and waits
/// for it. For calls of versions not proven quick ([`Pace`]): a plugin that
/// spends its whole budget on every call (loops to its fuel, busy-waits to
/// its timeout) would otherwise take a full share of the cores that ingest,
/// deliveries and healthy plugins need, until it is suspended. Its calls
/// still end within their budgets: fuel counts work, not time, and the
/// timeout is wall-clock time, so a call starved of CPU only meets its
/// deadline sooner.
///
/// A thread per call costs tens of microseconds, small beside a call that
/// was not quick. The priority cannot be raised back without
/// `CAP_SYS_NICE`, which is why the thread is not one of tokio's. Where a
/// thread cannot be started, the call runs on the caller's.
pub(crate) fn aside<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    // Shared with the thread, so that the caller still holds the call if
    // the thread never starts.
    let call = Mutex::new(Some(call));
    let take = || lock(&call).take();
    std::thread::scope(|scope| {
        let started = std::thread::Builder::new()
            .name("wasmhook-plugin-aside".into())
            .spawn_scoped(scope, || {
                lower_priority();
                take().map(|call| call())
            });
        let ran = match started {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot start a thread for a plugin call; running it in place");
                None
            }
        };
        // The thread took the call and ran it, or never started and left it.
        ran.or_else(|| take().map(|call| call()))
            .unwrap_or_else(|| unreachable!("the call is taken once, and ran where it was taken"))
    })
}

/// Lowers the calling thread's CPU priority to [`ASIDE_NICE`]. Linux keeps
/// a nice value per thread, and `setpriority(PRIO_PROCESS, 0, ..)` sets the
/// calling thread's (not the process's, as POSIX would have it).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ASIDE_NICE) } != 0;
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a plugin thread's priority");
    }
}

/// Elsewhere the call runs at the caller's priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// One plugin version's failure record.
#[derive(Debug, Default)]
pub(crate) struct Suspension {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failed calls in a row.
    failures: u32,
    /// Set while suspended: calls are refused until then.
    until: Option<Instant>,
    /// The current suspension's length.
    backoff: Duration,
    /// A probe call is running: others are still refused.
    probing: bool,
    /// When [`Suspension::refusal`] last let work through to be the probe
    /// (during this suspension).
    let_through: Option<Instant>,
    /// The last failure, for the reason of refused calls.
    last: String,
}

/// Whether a call may run.
#[derive(Debug, PartialEq)]
pub(crate) enum Admission {
    /// Run it; `probe` when it decides whether a suspension ends.
    Run {
        /// The call ends or extends a suspension.
        probe: bool,
    },
    /// Suspended: fail the call with this error.
    Refused(PluginError),
}

/// What [`Suspension::record`] changed, for logs.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Nothing to report.
    Unchanged,
    /// The plugin was suspended for this long.
    Suspended(Duration),
    /// A probe succeeded: the plugin serves again.
    Resumed,
}

impl Suspension {
    /// Decides whether a call of `plugin` may run at `now`.
    pub(crate) fn admit(&self, plugin: &str, now: Instant) -> Admission {
        let mut state = self.lock();
        if let Some(refused) = Self::refusal_of(&state, plugin, now) {
            return Admission::Refused(refused);
        }
        if state.until.is_none() {
            return Admission::Run { probe: false };
        }
        state.probing = true;
        Admission::Run { probe: true }
    }

    /// The error a call made now would fail with, for work that can skip
    /// the call (acceptance, which would otherwise store a delivery only to
    /// bury it at its first attempt). Once the plugin is due for a probe,
    /// it lets one piece of work through per back-off period to carry the
    /// probe, and refuses the rest.
    pub(crate) fn refusal(&self, plugin: &str, now: Instant) -> Option<PluginError> {
        let mut state = self.lock();
        if let Some(refused) = Self::refusal_of(&state, plugin, now) {
            return Some(refused);
        }
        state.until?;
        if state.let_through.is_some_and(|at| now < at + state.backoff) {
            return Some(Self::refused(&state, plugin, Duration::ZERO));
        }
        state.let_through = Some(now);
        None
    }

    /// The error a call would fail with now, letting nothing through: for
    /// work already on its way to the call (a delivery's attempt), where
    /// [`Suspension::admit`] makes the call the probe when one is due. Had
    /// the attempt of a delivery that [`Suspension::refusal`] let through
    /// asked that again, it would be refused, and no probe would ever run.
    pub(crate) fn refused_now(&self, plugin: &str, now: Instant) -> Option<PluginError> {
        Self::refusal_of(&self.lock(), plugin, now)
    }

    /// Suspended, and either not yet due for a probe or with one running.
    fn refusal_of(state: &State, plugin: &str, now: Instant) -> Option<PluginError> {
        let until = state.until?;
        (now < until || state.probing)
            .then(|| Self::refused(state, plugin, until.saturating_duration_since(now)))
    }

    fn refused(state: &State, plugin: &str, remaining: Duration) -> PluginError {
        PluginError::Suspended {
            plugin: plugin.to_string(),
            remaining,
            failures: state.failures,
            last: state.last.clone(),
        }
    }

    /// Records a call's result; `threshold` is the manifest's
    /// `suspend_after` (0: never suspend).
    pub(crate) fn record<T>(
        &self,
        result: &Result<T, PluginError>,
        probe: bool,
        threshold: u32,
        now: Instant,
    ) -> Outcome {
        let failed = match result {
            Err(e @ (PluginError::Trap { .. } | PluginError::Output { .. })) => Some(e),
            _ => None,
        };
        let mut state = self.lock();
        if probe {
            state.probing = false;
        }
        let Some(error) = failed else {
            let was_suspended = state.until.is_some();
            *state = State::default();
            return if was_suspended {
                Outcome::Resumed
            } else {
                Outcome::Unchanged
            };
        };
        state.failures = state.failures.saturating_add(1);
        state.last = error.to_string();
        if threshold == 0 || state.failures < threshold {
            return Outcome::Unchanged;
        }
        if state.until.is_some() && !probe {
            // A call admitted before the suspension began; the suspension
            // already counts it.
            return Outcome::Unchanged;
        }
        state.backoff = if probe {
            (state.backoff * 2).min(MAX_BACKOFF)
        } else {
            FIRST_BACKOFF
        };
        state.until = Some(now + state.backoff);
        state.let_through = None;
        Outcome::Suspended(state.backoff)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::TrapKind;

    #[cfg(target_os = "linux")]
    fn nice() -> i32 {
        // SAFETY: plain integers in and out.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    /// The call runs on a thread of its own, at a lower priority than its
    /// caller's, which keeps its own; its result comes back.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_aside_call_runs_on_its_own_thread_at_a_lower_priority() {
        let caller = nice();
        let borrowed = String::from("borrowed");
        let (name, ran_at) = aside(|| {
            let name = std::thread::current().name().map(str::to_string);
            (name.map(|n| format!("{n}:{borrowed}")), nice())
        });
        assert_eq!(name.as_deref(), Some("wasmhook-plugin-aside:borrowed"));
        assert!(
            ran_at >= ASIDE_NICE.max(caller),
            "nice {ran_at}, caller {caller}"
        );
        assert_eq!(nice(), caller, "the caller's priority is untouched");
    }

    #[test]
    fn a_panic_in_an_aside_call_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| aside(|| panic!("guest host bug")));
        let message = caught.expect_err("the panic is passed on");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"guest host bug"));
    }

    fn trap() -> Result<(), PluginError> {
        Err(PluginError::Trap {
            plugin: "spin".into(),
            during: "transform".into(),
            kind: TrapKind::OutOfFuel { fuel: 10 },
        })
    }

    fn guest_error() -> Result<(), PluginError> {
        Err(PluginError::Guest {
            plugin: "spin".into(),
            kind: "invalid-input",
            message: "no total".into(),
        })
    }

    #[test]
    fn suspends_after_failures_in_a_row_and_a_probe_lifts_it() {
        let s = Suspension::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(s.admit("spin", t0), Admission::Run { probe: false });
            assert_eq!(s.record(&trap(), false, 3, t0), Outcome::Unchanged);
        }
        // A plugin's own error answer is not a failure of the sandbox's
        // kind: it resets the count.
        assert_eq!(s.record(&guest_error(), false, 3, t0), Outcome::Unchanged);
        for _ in 0..2 {
            assert_eq!(s.record(&trap(), false, 3, t0), Outcome::Unchanged);
        }
        assert_eq!(
            s.record(&trap(), false, 3, t0),
            Outcome::Suspended(FIRST_BACKOFF)
        );
        let Admission::Refused(refused) = s.admit("spin", t0 + Duration::from_millis(400)) else {
            panic!("not refused");
        };
        let reason = refused.to_string();
        assert!(
            reason.contains("plugin \"spin\" is suspended for another 600 ms")
                && reason.contains("3 failed calls in a row")
                && reason.contains("ran out of fuel (10 units) during transform"),
            "{reason}"
        );
        // After the back-off one probe runs; others wait for its verdict.
        let later = t0 + FIRST_BACKOFF;
        assert_eq!(s.admit("spin", later), Admission::Run { probe: true });
        assert!(matches!(s.admit("spin", later), Admission::Refused(_)));
        assert_eq!(
            s.record(&trap(), true, 3, later),
            Outcome::Suspended(2 * FIRST_BACKOFF)
        );
        let again = later + 2 * FIRST_BACKOFF;
        assert_eq!(s.admit("spin", again), Admission::Run { probe: true });
        assert_eq!(s.record(&Ok(()), true, 3, again), Outcome::Resumed);
        assert_eq!(s.admit("spin", again), Admission::Run { probe: false });
        // The record starts over.
        assert_eq!(s.record(&trap(), false, 3, again), Outcome::Unchanged);
    }

    #[test]
    fn refusal_lets_one_through_per_backoff_to_carry_the_probe() {
        let s = Suspension::default();
        let t0 = Instant::now();
        assert!(s.refusal("spin", t0).is_none());
        assert!(
            s.refusal("spin", t0).is_none(),
            "not suspended: never refused"
        );
        s.record(&trap(), false, 1, t0);
        let Some(PluginError::Suspended { remaining, .. }) = s.refusal("spin", t0) else {
            panic!("a suspended plugin's calls are refused");
        };
        assert_eq!(remaining, FIRST_BACKOFF);
        // Due for a probe: one piece of work goes through, the rest is
        // refused until the back-off passes again.
        let due = t0 + FIRST_BACKOFF;
        assert!(s.refusal("spin", due).is_none());
        assert!(s.refusal("spin", due).is_some());
        assert!(s.refusal("spin", due + FIRST_BACKOFF / 2).is_some());
        assert!(s.refusal("spin", due + FIRST_BACKOFF).is_none());
        // While the probe runs, everything is refused.
        assert_eq!(s.admit("spin", due), Admission::Run { probe: true });
        assert!(s.refusal("spin", due + 3 * FIRST_BACKOFF).is_some());
        // A failed probe starts a new suspension, with its own let-through.
        let failed = due + FIRST_BACKOFF;
        s.record(&trap(), true, 1, failed);
        assert!(s.refusal("spin", failed + FIRST_BACKOFF).is_some());
        let due = failed + 2 * FIRST_BACKOFF;
        assert!(s.refusal("spin", due).is_none());
        assert!(s.refusal("spin", due).is_some());
        // A successful call ends it.
        assert_eq!(s.admit("spin", due), Admission::Run { probe: true });
        s.record(&Ok(()), true, 1, due);
        assert!(s.refusal("spin", due).is_none());
        assert!(s.refusal("spin", due).is_none());
    }

    /// The attempt of the delivery that acceptance let through must reach
    /// the call, which becomes the probe; it is refused only while the
    /// back-off runs or another probe does.
    #[test]
    fn the_work_let_through_reaches_the_probe() {
        let s = Suspension::default();
        let t0 = Instant::now();
        assert!(s.refused_now("spin", t0).is_none(), "not suspended");
        s.record(&trap(), false, 1, t0);
        assert!(s.refused_now("spin", t0).is_some(), "suspended");
        let due = t0 + FIRST_BACKOFF;
        assert!(
            s.refusal("spin", due).is_none(),
            "acceptance lets one through"
        );
        assert!(s.refusal("spin", due).is_some(), "and only one");
        assert!(
            s.refused_now("spin", due).is_none(),
            "its attempt goes on to the call"
        );
        assert_eq!(s.admit("spin", due), Admission::Run { probe: true });
        assert!(s.refused_now("spin", due).is_some(), "the probe is running");
    }

    #[test]
    fn backoff_is_capped_and_zero_never_suspends() {
        let s = Suspension::default();
        let mut now = Instant::now();
        assert_eq!(
            s.record(&trap(), false, 1, now),
            Outcome::Suspended(FIRST_BACKOFF)
        );
        let mut last = FIRST_BACKOFF;
        for _ in 0..10 {
            now += last;
            assert_eq!(s.admit("spin", now), Admission::Run { probe: true });
            let Outcome::Suspended(next) = s.record(&trap(), true, 1, now) else {
                panic!("probe failure must extend the suspension");
            };
            assert!(next <= MAX_BACKOFF && next >= last);
            last = next;
        }
        assert_eq!(last, MAX_BACKOFF);

        let never = Suspension::default();
        for _ in 0..100 {
            assert_eq!(never.record(&trap(), false, 0, now), Outcome::Unchanged);
            assert_eq!(never.admit("spin", now), Admission::Run { probe: false });
        }
    }

    #[test]
    fn pace_proves_quick_after_quick_calls_and_one_slow_call_revokes_it_for_good() {
        let quick = Duration::from_micros(5);
        let pace = Pace::default();
        for _ in 0..PROVEN_AFTER - 1 {
            assert!(!pace.used(5_000));
            assert!(!pace.took(quick));
            assert!(!pace.proven_quick());
        }
        assert!(!pace.used(QUICK_FUEL));
        assert!(!pace.took(SLOW_WALL));
        assert!(pace.proven_quick());
        assert!(pace.used(QUICK_FUEL + 1), "the first slow call flips it");
        assert!(!pace.proven_quick());
        assert!(!pace.used(u64::MAX), "already slow");
        for _ in 0..1000 {
            pace.took(quick);
        }
        assert!(!pace.proven_quick());

        let waited = Pace::default();
        for _ in 0..PROVEN_AFTER {
            waited.took(quick);
        }
        assert!(waited.proven_quick());
        assert!(
            waited.took(SLOW_WALL + Duration::from_millis(1)),
            "slow by the clock"
        );
        assert!(!waited.proven_quick());

        let early = Pace::default();
        early.used(50_000_000);
        for _ in 0..PROVEN_AFTER * 2 {
            early.took(quick);
        }
        assert!(!early.proven_quick(), "slow before it was proven");
    }

    #[test]
    fn slots_bound_concurrent_calls() {
        let slots = std::sync::Arc::new(Slots::new(2));
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, running, peak) = (slots.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _slot = slots.take();
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// Async code waits for a busy plugin's slot without a thread, and
    /// gets it when the call holding it gives it back.
    #[tokio::test]
    async fn a_reservation_waits_for_the_slot_given_back() {
        let slots = Slots::new(1);
        let taken = slots.take();
        let early = tokio::time::timeout(Duration::from_millis(50), slots.reserve()).await;
        assert!(early.is_err(), "the only slot is taken");
        drop(taken);
        let reserved = slots.reserve().await;
        assert!(slots.0.try_acquire().is_err(), "the reservation holds it");
        drop(reserved);
        assert!(slots.0.try_acquire().is_ok(), "given back on drop");
    }

    #[test]
    fn calls_admitted_before_the_suspension_do_not_extend_it() {
        let s = Suspension::default();
        let now = Instant::now();
        assert_eq!(s.record(&trap(), false, 2, now), Outcome::Unchanged);
        assert_eq!(
            s.record(&trap(), false, 2, now),
            Outcome::Suspended(FIRST_BACKOFF)
        );
        let late = now + Duration::from_millis(10);
        assert_eq!(s.record(&trap(), false, 2, late), Outcome::Unchanged);
        assert!(matches!(s.admit("spin", late), Admission::Refused(_)));
        assert_eq!(
            s.admit("spin", now + FIRST_BACKOFF),
            Admission::Run { probe: true }
        );
    }
}
