//! Scheduled webhooks: the clock as a source.
//!
//! Each `[[schedule]]` fires at the times of its cron expression (UTC). A
//! firing becomes an [`Event`] for the schedule's own observer and goes
//! through [`Pipeline::accept_scheduled`], so the run is in the outbox before
//! anything is sent and shares signing, retries and the DLQ with every other
//! webhook. In: the schedules and the wall clock. Out: stored deliveries.
//!
//! The last run each schedule handled is kept by the store, so a restart fires
//! the latest run it missed, once, if that run is within the schedule's
//! tolerance; older runs are skipped, as Hasura does with cron triggers.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::event::{Envelope, Event, Operation};
use crate::pipeline::Pipeline;
use crate::store::{Store, StoreError};

/// The operation of every scheduled event, for templates and plugins.
pub const OPERATION: &str = "SCHEDULED";

/// The observer name of one-off scheduled deliveries; no configured
/// observer may take it.
pub const ONE_OFF: &str = "one-off";

/// A one-off scheduled delivery, as Hasura's one-off scheduled events: one
/// request to `url` at `at_ms`, signed, retried and dead-lettered like
/// every delivery (with `[webhooks]`'s signing and retry).
#[derive(Debug, Clone)]
pub struct OneOff {
    /// When to send it, unix milliseconds.
    pub at_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Where to.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (JSON, or any text).
    pub body: Vec<u8>,
}

impl OneOff {
    /// The delivery that sends it, pending until `at_ms`.
    pub fn delivery(self, now_ms: u64) -> crate::store::Delivery {
        let data = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&self.body)));
        let event = Event {
            id: crate::clock::new_id(),
            entity: ONE_OFF.into(),
            operation: Operation::Other(OPERATION.into()),
            entity_id: None,
            timestamp: crate::clock::now_rfc3339(),
            envelope: Envelope::Native,
            source: "schedule".into(),
            data,
            old: None,
            meta: serde_json::Map::new(),
        };
        crate::store::Delivery {
            id: crate::clock::new_id(),
            observer: ONE_OFF.into(),
            webhook: 0,
            event: event.into(),
            payload: Some(crate::store::Payload {
                method: self.method,
                url: self.url,
                headers: self.headers,
                content_type: None,
                body: self.body,
            }),
            attempts: Vec::new(),
            earlier_attempts: Vec::new(),
            due_ms: self.at_ms.max(now_ms),
            accepted_ms: now_ms,
            after: None,
            next: None,
            held: false,
        }
    }
}

/// How late a missed run may still be fired when none is configured.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(3600);

/// The longest sleep between looks at the clock, so a wall clock that was
/// set or a machine that was suspended is noticed within this time.
const MAX_NAP: Duration = Duration::from_secs(30);

/// After a failed outbox write, the pause before the run is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Why a cron expression cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// Not an expression croner reads with 5 fields (or 6, seconds first).
    #[error("{expression:?} is not a cron expression like \"0 9 * * *\" (5 fields; 6 with seconds first): {reason}")]
    Syntax {
        /// The expression as configured.
        expression: String,
        /// croner's explanation.
        reason: String,
    },
    /// A valid expression that matches no time from now on, e.g. `0 0 31 2 *`.
    #[error("{0:?} never matches a time from now on")]
    Never(String),
}

/// One `[[schedule]]`: when it fires, and the observer its runs go to.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The schedule's name: the entity of its events and the key of its mark.
    pub name: String,
    /// The observer holding its webhook and retry policy ([`observer_name`]).
    pub observer: String,
    /// The expression as configured, for `check` and logs.
    pub expression: String,
    /// The wall clock the expression is read in (daylight saving included).
    pub timezone: chrono_tz::Tz,
    /// After downtime, the latest missed run is fired if it is at most this
    /// old; it also bounds how late an ordinary run may be stored.
    pub tolerance: Duration,
    cron: croner::Cron,
}

/// What is due when the scheduler looks at the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No run since the last one handled.
    Nothing,
    /// Fire this run (the latest one not yet handled).
    Fire(DateTime<Utc>),
    /// The latest run not yet handled is older than the tolerance: skip it,
    /// and with it every run before.
    Missed(DateTime<Utc>),
}

/// The name of a schedule's observer: in metrics, logs, the DLQ (`dlq list
/// --observer schedule:NAME`) and the admin webhook switches.
pub fn observer_name(schedule: &str) -> String {
    format!("schedule:{schedule}")
}

impl CronSchedule {
    /// Reads `expression`: 5 fields, or 6 with seconds first; no year field,
    /// so a 6-field expression is never mistaken for one. Its times are
    /// `timezone`'s wall clock: a run in the hour skipped in spring runs
    /// right after the gap, and a fixed-time run in the hour repeated in
    /// autumn runs once (croner's rules, those of Vixie cron).
    pub fn new(
        name: &str,
        expression: &str,
        tolerance: Duration,
        timezone: chrono_tz::Tz,
    ) -> Result<Self, CronError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| CronError::Syntax {
                expression: expression.to_string(),
                reason: e.to_string(),
            })?;
        let schedule = CronSchedule {
            name: name.to_string(),
            observer: observer_name(name),
            expression: expression.to_string(),
            timezone,
            tolerance,
            cron,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(CronError::Never(expression.to_string()));
        }
        Ok(schedule)
    }

    /// The first run strictly after `time`.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&time.with_timezone(&self.timezone), false)
            .ok()
            .map(|t| t.to_utc())
    }

    /// Only the latest run in `(after, now]` is considered: after downtime
    /// one catch-up run is useful, a burst of stale ones is not.
    pub fn due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Due {
        let Ok(latest) = self
            .cron
            .find_previous_occurrence(&now.with_timezone(&self.timezone), true)
            .map(|t| t.to_utc())
        else {
            return Due::Nothing;
        };
        if latest <= after {
            return Due::Nothing;
        }
        let late = (now - latest).to_std().unwrap_or_default();
        if late <= self.tolerance {
            Due::Fire(latest)
        } else {
            Due::Missed(latest)
        }
    }

    /// The event of the run at `at`. Its id is derived from the name and the
    /// time, so a run stored twice (a crash between the outbox write and the
    /// mark) is recognisable by receivers.
    pub fn event(&self, at: DateTime<Utc>) -> Event {
        let at = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        Event {
            id: format!("{}@{at}", self.observer),
            entity: self.name.clone(),
            operation: Operation::Other(OPERATION.into()),
            entity_id: Some(at.clone()),
            timestamp: at.clone(),
            envelope: Envelope::Native,
            source: "schedule".into(),
            data: json!({"name": self.name, "scheduled_at": at}),
            old: None,
            meta: Default::default(),
        }
    }
}

/// The last run each schedule handled (fired, or skipped as too old).
#[derive(Clone)]
struct Marks(Store);

impl Marks {
    async fn get(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms = self.0.schedule_mark(name).await?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    async fn set(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.0.save_schedule_mark(name, at.timestamp_millis()).await
    }
}

/// Starts the scheduler: one loop per schedule until `stop`. `None` without
/// schedules. (The marks' storage opens with the store, so a storage error
/// stops start-up there instead of a schedule silently never firing.)
pub fn spawn(
    schedules: Vec<CronSchedule>,
    pipeline: Pipeline,
    store: &Store,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if schedules.is_empty() {
        return None;
    }
    let marks = Marks(store.clone());
    let loops: Vec<_> = schedules
        .into_iter()
        .map(|schedule| drive(schedule, pipeline.clone(), marks.clone(), stop.clone()))
        .collect();
    Some(tokio::spawn(async move {
        futures::future::join_all(loops).await;
    }))
}

async fn drive(
    schedule: CronSchedule,
    pipeline: Pipeline,
    marks: Marks,
    mut stop: watch::Receiver<bool>,
) {
    let name = schedule.name.as_str();
    let mut after = match marks.get(name).await {
        Ok(Some(at)) => at,
        Ok(None) => {
            // A new schedule missed nothing; the mark lets a restart before
            // its first run catch that run up.
            let now = Utc::now();
            record(&marks, name, now).await;
            now
        }
        Err(e) => {
            error!(schedule = %name, error = %e, "cannot read the last run; runs missed while stopped are not caught up");
            Utc::now()
        }
    };
    info!(schedule = %name, cron = %schedule.expression, next = ?schedule.next_after(after), "schedule started");
    loop {
        let mut pause = None;
        match schedule.due(after, Utc::now()) {
            Due::Nothing => {}
            Due::Fire(at) => {
                if schedule.next_after(after).is_some_and(|first| first < at) {
                    warn!(schedule = %name, run = %at, since = %after, "runs were missed; firing only the latest");
                }
                match pipeline
                    .accept_scheduled(&schedule.observer, schedule.event(at))
                    .await
                {
                    Ok(deliveries) => {
                        info!(schedule = %name, run = %at, deliveries, "scheduled run stored");
                        record(&marks, name, at).await;
                        after = at;
                    }
                    Err(e) => {
                        // Not marked: the next look fires it again while it
                        // is within the tolerance.
                        error!(schedule = %name, run = %at, error = %e, "cannot store the scheduled run; trying again");
                        pause = Some(RETRY_PAUSE);
                    }
                }
            }
            Due::Missed(at) => {
                warn!(schedule = %name, run = %at, tolerance = ?schedule.tolerance, "missed run is older than the tolerance; skipped");
                record(&marks, name, at).await;
                after = at;
            }
        }
        let wait = pause.unwrap_or_else(|| {
            schedule.next_after(after).map_or(MAX_NAP, |next| {
                (next - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(MAX_NAP)
            })
        });
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A mark that cannot be written only costs a repeated run after a restart
/// (at least once), so it is logged, not fatal.
async fn record(marks: &Marks, name: &str, at: DateTime<Utc>) {
    if let Err(e) = marks.set(name, at).await {
        error!(schedule = %name, run = %at, error = %e, "cannot record the last run; a restart may fire it again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn schedule(expression: &str, tolerance: Duration) -> CronSchedule {
        CronSchedule::new("daily-report", expression, tolerance, chrono_tz::UTC).unwrap()
    }

    #[test]
    fn next_runs_of_five_and_six_field_expressions() {
        for (expression, from, next) in [
            ("0 9 * * *", "2026-03-02T08:59:59Z", "2026-03-02T09:00:00Z"),
            // Strictly after: a run exactly at `from` is not next.
            ("0 9 * * *", "2026-03-02T09:00:00Z", "2026-03-03T09:00:00Z"),
            (
                "*/15 * * * *",
                "2026-03-02T09:07:30Z",
                "2026-03-02T09:15:00Z",
            ),
            (
                "0 9 * * MON-FRI",
                "2026-03-06T10:00:00Z",
                "2026-03-09T09:00:00Z",
            ),
            ("@daily", "2026-03-02T12:00:00Z", "2026-03-03T00:00:00Z"),
            // Six fields: seconds first.
            (
                "* * * * * *",
                "2026-03-02T09:00:00.250Z",
                "2026-03-02T09:00:01Z",
            ),
            (
                "*/10 * * * * *",
                "2026-03-02T09:00:01Z",
                "2026-03-02T09:00:10Z",
            ),
            (
                "30 0 9 * * *",
                "2026-03-02T09:00:00Z",
                "2026-03-02T09:00:30Z",
            ),
        ] {
            let s = schedule(expression, DEFAULT_TOLERANCE);
            assert_eq!(
                s.next_after(at(from)),
                Some(at(next)),
                "{expression} after {from}"
            );
        }
    }

    /// Europe/Berlin moves from UTC+1 to UTC+2 on 2026-03-29 and back on
    /// 2026-10-25: a 09:30 run keeps to the wall clock, a 02:30 run on the
    /// spring day (a time that does not exist) runs right after the gap,
    /// and on the autumn day (a time that happens twice) runs once.
    #[test]
    fn a_time_zone_keeps_runs_on_the_wall_clock_across_daylight_saving() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let zoned = |expression: &str| {
            CronSchedule::new("berlin", expression, DEFAULT_TOLERANCE, berlin).unwrap()
        };
        let morning = zoned("30 9 * * *");
        for (from, next) in [
            ("2026-03-28T00:00:00Z", "2026-03-28T08:30:00Z"),
            ("2026-03-28T08:30:00Z", "2026-03-29T07:30:00Z"),
            ("2026-10-24T12:00:00Z", "2026-10-25T08:30:00Z"),
        ] {
            assert_eq!(morning.next_after(at(from)), Some(at(next)), "after {from}");
        }
        let night = zoned("30 2 * * *");
        // 02:30 does not exist on 2026-03-29: the run is at 03:00 CEST.
        assert_eq!(
            night.next_after(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // 02:30 happens twice on 2026-10-25: once, the first time (CEST).
        let first = night.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        assert_eq!(night.next_after(first), Some(at("2026-10-26T01:30:00Z")));
        // `due` reads the same clock.
        assert_eq!(
            morning.due(at("2026-03-28T08:30:00Z"), at("2026-03-29T07:30:05Z")),
            Due::Fire(at("2026-03-29T07:30:00Z"))
        );
        assert_eq!(
            morning.due(at("2026-03-28T08:30:00Z"), at("2026-03-29T07:29:59Z")),
            Due::Nothing
        );
    }

    #[test]
    fn due_fires_only_the_latest_run_within_the_tolerance() {
        let hour = Duration::from_secs(3600);
        let daily = schedule("0 9 * * *", hour);
        let last = at("2026-03-02T09:00:00Z");
        for (now, due) in [
            // Before the next run, and a clock set back: nothing.
            ("2026-03-03T08:59:59Z", Due::Nothing),
            ("2026-03-02T08:00:00Z", Due::Nothing),
            // On time, late within the tolerance, at its edge.
            (
                "2026-03-03T09:00:00Z",
                Due::Fire(at("2026-03-03T09:00:00Z")),
            ),
            (
                "2026-03-03T09:00:00.400Z",
                Due::Fire(at("2026-03-03T09:00:00Z")),
            ),
            (
                "2026-03-03T09:59:00Z",
                Due::Fire(at("2026-03-03T09:00:00Z")),
            ),
            (
                "2026-03-03T10:00:00Z",
                Due::Fire(at("2026-03-03T09:00:00Z")),
            ),
            // Too late: skipped, not fired.
            (
                "2026-03-03T10:00:01Z",
                Due::Missed(at("2026-03-03T09:00:00Z")),
            ),
            // Down for three days: only the latest run counts.
            (
                "2026-03-05T09:30:00Z",
                Due::Fire(at("2026-03-05T09:00:00Z")),
            ),
            (
                "2026-03-05T12:00:00Z",
                Due::Missed(at("2026-03-05T09:00:00Z")),
            ),
        ] {
            assert_eq!(daily.due(last, at(now)), due, "now {now}");
        }
        let every_second = schedule("* * * * * *", Duration::from_secs(1));
        let last = at("2026-03-02T09:00:00Z");
        assert_eq!(
            every_second.due(last, at("2026-03-02T09:00:00.900Z")),
            Due::Nothing
        );
        assert_eq!(
            every_second.due(last, at("2026-03-02T09:00:05.500Z")),
            Due::Fire(at("2026-03-02T09:00:05Z"))
        );
    }

    #[test]
    fn a_run_is_an_event_with_a_stable_id() {
        let s = schedule("0 9 * * *", DEFAULT_TOLERANCE);
        let event = s.event(at("2026-03-02T09:00:00Z"));
        assert_eq!(event.id, "schedule:daily-report@2026-03-02T09:00:00Z");
        assert_eq!(event.id, s.event(at("2026-03-02T09:00:00Z")).id);
        assert_eq!(event.entity, "daily-report");
        assert_eq!(event.operation.as_str(), "SCHEDULED");
        assert_eq!(event.timestamp, "2026-03-02T09:00:00Z");
        assert_eq!(
            event.data,
            json!({"name": "daily-report", "scheduled_at": "2026-03-02T09:00:00Z"})
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expression, expected) in [
            ("0 9 * *", "is not a cron expression"),
            ("0 25 * * *", "is not a cron expression"),
            ("every day", "is not a cron expression"),
            // A year field is not accepted: seven fields are an error.
            ("0 0 9 * * * 2030", "is not a cron expression"),
            ("0 0 30 2 *", "never matches a time"),
        ] {
            let e =
                CronSchedule::new("x", expression, DEFAULT_TOLERANCE, chrono_tz::UTC).unwrap_err();
            assert!(e.to_string().contains(expected), "{expression}: {e}");
        }
    }

    #[tokio::test]
    async fn marks_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let run = at("2026-03-02T09:00:00Z");
        {
            let marks = Marks(crate::store::open_in(dir.path()).await);
            assert_eq!(marks.get("daily-report").await.unwrap(), None);
            marks.set("daily-report", run).await.unwrap();
        }
        let marks = Marks(crate::store::open_in(dir.path()).await);
        assert_eq!(marks.get("daily-report").await.unwrap(), Some(run));
        assert_eq!(marks.get("other").await.unwrap(), None);
    }
}
