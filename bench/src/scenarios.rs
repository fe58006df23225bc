//! The scenarios: what each row runs, how big it is, what it is judged
//! against, and how the rounds of one row become its result. How a row is
//! run is in [`crate::runner`].

use std::time::Duration;

use anyhow::anyhow;

use crate::config::{Work, HOSTILE_MODES};
use crate::events::Pace;

/// A scenario's bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Http,
    Nats,
    JetStream,
    RedisStreams,
    PostgresLog,
}

/// What a scenario runs.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The raw ceiling for bodies rendered from entities of this size.
    Raw { entity_bytes: usize },
    /// The Python reference subscriber.
    Reference { client_per_event: bool },
    /// wasmhook delivering.
    Wasmhook(Run),
    /// Events queued behind a receiver that never answers.
    Memory,
}

/// A wasmhook delivery scenario.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub bus: Bus,
    pub work: Work,
    pub entity_bytes: usize,
    /// Observers selecting every event, one webhook each.
    pub observers: usize,
    pub pace: Pace,
    /// Events per request with `[webhooks.batching]` on.
    pub batch: Option<usize>,
    /// `[delivery_log] enabled` (on by default).
    pub delivery_log: bool,
}

/// The target a row is judged against (issue 7, issue 4 "Speed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// >= 60% of the raw ceiling and >= 50x the reference subscriber.
    RawAndReference,
    /// >= 80% of `nats-template`.
    WasmVsTemplate,
    /// >= 90% of `nats-wasm` (issue 8, hostile plugins).
    HealthyVsWasm,
    /// >= 50% of `nats-template` (the core NATS path).
    DurableVsCore,
    /// p99 < 5 ms.
    P99Under5ms,
    /// Peak RSS < 150 MB.
    RssUnder150,
    /// >= 90% of `nats-unlogged`: what the delivery log may cost.
    LogCost,
}

impl Target {
    /// The row this target compares with and the fraction of its rate it
    /// asks for, if it compares with one.
    pub fn compared_with(self) -> Option<(&'static str, f64)> {
        match self {
            Target::WasmVsTemplate => Some(("nats-template", 0.8)),
            Target::DurableVsCore => Some(("nats-template", 0.5)),
            Target::HealthyVsWasm => Some(("nats-wasm", 0.9)),
            Target::LogCost => Some(("nats-unlogged", 0.9)),
            Target::RawAndReference | Target::P99Under5ms | Target::RssUnder150 => None,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line and in the table.
    pub name: &'static str,
    /// One line for the report.
    pub what: &'static str,
    pub kind: Kind,
    /// Part of `--quick`.
    pub quick: bool,
    pub target: Option<Target>,
}

/// A kilobyte, for entity sizes.
pub const KB: usize = 1024;

const fn wasmhook(bus: Bus, work: Work, entity_bytes: usize, observers: usize, pace: Pace) -> Kind {
    Kind::Wasmhook(Run {
        bus,
        work,
        entity_bytes,
        observers,
        pace,
        batch: None,
        delivery_log: true,
    })
}

/// Every scenario, in the order they run (ceilings and references first,
/// so the rows that are judged against them can be).
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "raw-1k",
        what: "raw ceiling: the harness POSTs pre-built, pre-signed bodies (as `nats-template` renders them) to the receiver over keep-alive connections, 100 at a time",
        kind: Kind::Raw { entity_bytes: KB },
        quick: true,
        target: None,
    },
    Scenario {
        name: "raw-64k",
        what: "raw ceiling for the 64 KB entity's bodies",
        kind: Kind::Raw { entity_bytes: 64 * KB },
        quick: false,
        target: None,
    },
    Scenario {
        name: "reference",
        what: "reference subscriber: Python, nats-py + httpx, the FraiseQL docs' subscriber signing with hmac, one reused `httpx.AsyncClient`",
        kind: Kind::Reference { client_per_event: false },
        quick: true,
        target: None,
    },
    Scenario {
        name: "reference-verbatim",
        what: "the docs' subscriber verbatim: a new `httpx.AsyncClient` per event",
        kind: Kind::Reference { client_per_event: true },
        quick: true,
        target: None,
    },
    Scenario {
        name: "nats-template",
        what: "core NATS -> condition `total > 1000` -> `body_template` with `{{_json}}` -> HMAC-SHA256 -> receiver; 1 KB entity, 1 observer",
        kind: wasmhook(Bus::Nats, Work::Template, KB, 1, Pace::Flood),
        quick: true,
        target: Some(Target::RawAndReference),
    },
    Scenario {
        name: "http-template",
        what: "the same, events in by `POST /events` (one event per request, 32 connections; 202 after the outbox write)",
        kind: wasmhook(Bus::Http, Work::Template, KB, 1, Pace::Flood),
        quick: true,
        target: None,
    },
    Scenario {
        name: "nats-wasm",
        what: "core NATS -> Wasm condition `high-value-order` -> Wasm transform `slack-message` -> HMAC -> receiver",
        kind: wasmhook(Bus::Nats, Work::Wasm, KB, 1, Pace::Flood),
        quick: true,
        target: Some(Target::WasmVsTemplate),
    },
    Scenario {
        name: "nats-hostile-loop",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform spins until its fuel (50M) runs out; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["loop"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-memory",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform grows its memory to the 32 MiB cap; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["memory"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-recursion",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform recurses until the stack is exhausted; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["recursion"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-trap",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform traps at once; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["trap"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-huge",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform returns a 64 MiB body (limit 1 MiB); its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["huge"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-slow",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform busy-waits 2 s against a 200 ms timeout; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["slow"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-start",
        what: "`nats-wasm` (the healthy observer) beside a hostile observer on the same events whose transform panics while it is instantiated; its deliveries go to the DLQ; the rate counts the healthy observer's",
        kind: wasmhook(Bus::Nats, Work::Hostile(&["start"]), KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::HealthyVsWasm),
    },
    Scenario {
        name: "nats-hostile-all",
        what: "`nats-wasm` beside all seven hostile observers at once (8 deliveries per event, 7 of them to the DLQ); for information",
        kind: wasmhook(Bus::Nats, Work::Hostile(HOSTILE_MODES), KB, 1, Pace::Flood),
        quick: false,
        target: None,
    },
    Scenario {
        name: "jetstream",
        what: "`nats-template` from a JetStream stream (file store; ack after the outbox write); published with up to 1,000 acks outstanding",
        kind: wasmhook(Bus::JetStream, Work::Template, KB, 1, Pace::Flood),
        quick: true,
        target: Some(Target::DurableVsCore),
    },
    Scenario {
        name: "redis-streams",
        what: "`nats-template` from a Redis stream (consumer group, XACK after the outbox write; Redis with AOF, fsync every second); XADD pipelined 100 at a time",
        kind: wasmhook(Bus::RedisStreams, Work::Template, KB, 1, Pace::Flood),
        quick: true,
        target: Some(Target::DurableVsCore),
    },
    Scenario {
        name: "postgres-log",
        what: "`nats-template` from the trigger-fed PostgreSQL event log (`wasmhook pg install`); rows inserted 100 per statement",
        kind: wasmhook(Bus::PostgresLog, Work::Template, KB, 1, Pace::Flood),
        quick: true,
        target: Some(Target::DurableVsCore),
    },
    Scenario {
        name: "nats-64k",
        what: "`nats-template` with a 64 KB entity (so a ~64 KB body); judged against `raw-64k`",
        kind: wasmhook(Bus::Nats, Work::Template, 64 * KB, 1, Pace::Flood),
        quick: false,
        target: None,
    },
    Scenario {
        name: "nats-10-observers",
        what: "`nats-template` with 10 observers on the same events (10 deliveries per event)",
        kind: wasmhook(Bus::Nats, Work::Template, KB, 10, Pace::Flood),
        quick: false,
        target: None,
    },
    Scenario {
        name: "nats-100-observers",
        what: "`nats-template` with 100 observers on the same events",
        kind: wasmhook(Bus::Nats, Work::Template, KB, 100, Pace::Flood),
        quick: false,
        target: None,
    },
    Scenario {
        name: "nats-batch",
        what: "`nats-template` with `[webhooks.batching] batch_size = 50` (timeout 100 ms): one request per 50 events; rates count events",
        kind: Kind::Wasmhook(Run {
            bus: Bus::Nats,
            work: Work::Template,
            entity_bytes: KB,
            observers: 1,
            pace: Pace::Flood,
            batch: Some(50),
            delivery_log: true,
        }),
        quick: false,
        target: None,
    },
    Scenario {
        name: "nats-unlogged",
        what: "`nats-template` with `[delivery_log] enabled = false`: no record of finished deliveries",
        kind: Kind::Wasmhook(Run {
            bus: Bus::Nats,
            work: Work::Template,
            entity_bytes: KB,
            observers: 1,
            pace: Pace::Flood,
            batch: None,
            delivery_log: false,
        }),
        quick: false,
        target: None,
    },
    Scenario {
        name: "nats-logged",
        what: "`nats-template` again (its delivery log on, the default), judged against `nats-unlogged` in the same rounds: the log's cost",
        kind: wasmhook(Bus::Nats, Work::Template, KB, 1, Pace::Flood),
        quick: false,
        target: Some(Target::LogCost),
    },
    Scenario {
        name: "nats-latency",
        what: "`nats-template` at a fixed 1,000 events/s: publish-to-receipt latency",
        kind: wasmhook(Bus::Nats, Work::Template, KB, 1, Pace::PerSecond(1000)),
        quick: true,
        target: Some(Target::P99Under5ms),
    },
    Scenario {
        name: "memory",
        what: "events queued behind a receiver that never answers (100 requests held open, the rest in the outbox); peak RSS",
        kind: Kind::Memory,
        quick: true,
        target: Some(Target::RssUnder150),
    },
];

/// How many events each kind of run publishes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// The main N (1 KB, one observer).
    pub events: u64,
    pub reference: u64,
    pub verbatim: u64,
    pub latency: u64,
    pub memory: u64,
    /// Events published and delivered before each measurement.
    pub warmup: u64,
    /// How long without a new arrival counts as "stuck".
    pub stall: Duration,
}

impl Sizes {
    /// The full run, or `--quick`; `--events` overrides the main N.
    pub fn new(quick: bool, events: Option<u64>) -> Sizes {
        let mut sizes = if quick {
            Sizes {
                events: 2_000,
                reference: 500,
                verbatim: 30,
                latency: 2_000,
                memory: 5_000,
                warmup: 200,
                stall: Duration::from_secs(10),
            }
        } else {
            Sizes {
                events: 20_000,
                reference: 3_000,
                verbatim: 150,
                latency: 10_000,
                memory: 100_000,
                warmup: 1_000,
                stall: Duration::from_secs(20),
            }
        };
        if let Some(n) = events {
            sizes.events = n.max(1);
            sizes.reference = sizes.reference.min(sizes.events);
            sizes.verbatim = sizes.verbatim.min(sizes.events);
        }
        sizes
    }

    /// Events for a scenario, so every delivery row moves about the same
    /// number of requests (and bytes stay bounded for 64 KB).
    pub fn for_entity(&self, entity_bytes: usize, observers: usize) -> u64 {
        let scale = (entity_bytes / (8 * KB)).max(1) as u64 * observers.max(1) as u64;
        (self.events / scale).max(50)
    }
}

/// One run of a round's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Index into the selected scenarios.
    pub index: usize,
    /// A run of a base row beside a row compared with it: it counts for
    /// that comparison only, not for the base's own row.
    pub bracket: bool,
}

/// The index of the row `scenario` is compared with, if it is selected.
fn base_index(selected: &[Scenario], scenario: &Scenario) -> Option<usize> {
    let (base, _) = scenario.target?.compared_with()?;
    selected
        .iter()
        .position(|s| s.name == base)
        .filter(|&i| selected[i].name != scenario.name)
}

/// A round's runs in order: each selected scenario once, and each row
/// that is compared with another between two runs of that other, so that
/// it is judged against its neighbours in time. Runs last seconds here and
/// a shared machine's speed moves on that scale: in one round of
/// 2026-12-04 the hostile rows read 72-125% of a `nats-wasm` run a minute
/// away. Consecutive rows with the same base share the run between them.
pub fn bracketed(selected: &[Scenario]) -> Vec<Step> {
    let mut plan: Vec<Step> = Vec::new();
    for (index, scenario) in selected.iter().enumerate() {
        let own = Step {
            index,
            bracket: false,
        };
        let Some(base) = base_index(selected, scenario) else {
            plan.push(own);
            continue;
        };
        let around = Step {
            index: base,
            bracket: true,
        };
        if plan.last().map(|s| s.index) != Some(base) {
            plan.push(around);
        }
        plan.push(own);
        plan.push(around);
    }
    plan
}

/// The runs of a round past `--rounds`, which only the compared rows get
/// (`--compared-rounds`): their own runs and the base runs beside them. A
/// comparison is the ratio of two runs that each spread by ±10% here, so a
/// median of 3 cannot tell 88% from 95%; 10 runs give the median an
/// interval (`report::median_interval`). A base's own run that sits beside
/// a compared row runs as a bracket, since the base's row has its rounds.
pub fn compared_only(selected: &[Scenario], plan: &[Step]) -> Vec<Step> {
    let compared =
        |step: &Step| !step.bracket && base_index(selected, &selected[step.index]).is_some();
    plan.iter()
        .enumerate()
        .filter_map(|(at, step)| {
            if step.bracket || compared(step) {
                return Some(*step);
            }
            let beside = [at.checked_sub(1), Some(at + 1)]
                .into_iter()
                .flatten()
                .filter_map(|i| plan.get(i))
                .any(|s| {
                    compared(s) && base_index(selected, &selected[s.index]) == Some(step.index)
                });
            beside.then_some(Step {
                index: step.index,
                bracket: true,
            })
        })
        .collect()
}

/// The fraction each compared row's run reached of the mean of the base
/// runs on either side of it (or the one side that has a rate), from one
/// round's runs in order: each step with the rate it measured.
pub fn bracketed_fractions(
    selected: &[Scenario],
    timeline: &[(Step, Option<f64>)],
) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    for (at, (step, rate)) in timeline.iter().enumerate() {
        let (false, Some(rate)) = (step.bracket, rate) else {
            continue;
        };
        let Some(base) = base_index(selected, &selected[step.index]) else {
            continue;
        };
        let beside = |i: Option<usize>| {
            i.and_then(|i| timeline.get(i))
                .filter(|(s, _)| s.index == base)
                .and_then(|(_, r)| *r)
                .filter(|r| *r > 0.0)
        };
        let sides: Vec<f64> = [beside(at.checked_sub(1)), beside(Some(at + 1))]
            .into_iter()
            .flatten()
            .collect();
        if !sides.is_empty() {
            let mean = sides.iter().sum::<f64>() / sides.len() as f64;
            out.push((step.index, rate / mean));
        }
    }
    out
}

/// Whether another round of `scenario` is worth its time: not after a
/// skip, a failure or a stuck run, and not for the memory scenario, whose
/// peak is a property of the backlog rather than a rate that drifts.
pub fn worth_repeating(scenario: &Scenario, first: &Result<Measured, Problem>) -> bool {
    !matches!(scenario.kind, Kind::Memory) && matches!(first, Ok(m) if !m.stuck)
}

/// The median run: by rate, or by p99 for a paced (latency) row. A failure
/// in any round is the row's outcome; the note lists every round.
pub fn median(
    scenario: &Scenario,
    outcomes: Vec<Result<Measured, Problem>>,
) -> Result<Measured, Problem> {
    let paced =
        matches!(scenario.kind, Kind::Wasmhook(run) if matches!(run.pace, Pace::PerSecond(_)));
    let mut measured = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(m) => measured.push(m),
            Err(problem) => return Err(problem),
        }
    }
    let key = |m: &Measured| {
        if paced {
            m.latency.map_or(f64::MAX, |l| l.p99.as_secs_f64())
        } else {
            m.rate.unwrap_or(0.0)
        }
    };
    measured.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let rounds: Vec<String> = measured
        .iter()
        .map(|m| {
            if paced {
                m.latency.map_or("–".into(), |l| {
                    format!("{:.1} ms", l.p99.as_secs_f64() * 1e3)
                })
            } else {
                m.rate.map_or("–".into(), |r| format!("{r:.0}"))
            }
        })
        .collect();
    let count = measured.len();
    let mut middle = measured
        .into_iter()
        .nth(count / 2)
        .ok_or_else(|| Problem::Fail(anyhow!("no run of {}", scenario.name)))?;
    if count > 1 {
        middle.notes.insert(
            0,
            format!(
                "median of {count} rounds ({}: {})",
                if paced { "p99" } else { "deliveries/s" },
                rounds.join(", ")
            ),
        );
    }
    Ok(middle)
}

/// Publish-to-receipt latency.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(sorted_ns: &[u64]) -> Option<Latency> {
        let at = |q: f64| {
            let i = ((sorted_ns.len() as f64 * q).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
            Duration::from_nanos(sorted_ns[i])
        };
        (!sorted_ns.is_empty()).then(|| Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// The "events" column (`20000`, `200 × 100`, `100000 queued`).
    pub events: String,
    /// Deliveries per second.
    pub rate: Option<f64>,
    pub latency: Option<Latency>,
    pub rss_mb: Option<f64>,
    pub cpu_s: Option<f64>,
    /// Everything else worth knowing (losses, bad signatures, ...).
    pub notes: Vec<String>,
    /// Fewer deliveries arrived than expected.
    pub incomplete: bool,
    /// Deliveries stopped while the publisher was still blocked.
    pub stuck: bool,
}

/// Why a scenario has no numbers.
#[derive(Debug)]
pub enum Problem {
    /// Something optional is missing (a server, Python packages, plugins,
    /// `wasmhook pg install`): noted, not a failure.
    Skip(String),
    /// The harness or wasmhook broke.
    Fail(anyhow::Error),
}

impl From<anyhow::Error> for Problem {
    fn from(error: anyhow::Error) -> Problem {
        Problem::Fail(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let ns: Vec<u64> = (1..=100).collect();
        let l = Latency::of(&ns).unwrap();
        assert_eq!(
            (l.p50.as_nanos(), l.p99.as_nanos(), l.max.as_nanos()),
            (50, 99, 100)
        );
        assert!(Latency::of(&[]).is_none());
        assert_eq!(Latency::of(&[7]).unwrap().p99.as_nanos(), 7);
    }

    #[test]
    fn the_median_round_is_reported_with_all_rounds() {
        let scenario = ALL.iter().find(|s| s.name == "nats-template").unwrap();
        let run = |rate: f64| {
            Ok(Measured {
                rate: Some(rate),
                ..Measured::default()
            })
        };
        let m = median(scenario, vec![run(3.0), run(1.0), run(2.0)]).unwrap();
        assert_eq!(m.rate, Some(2.0));
        assert_eq!(m.notes[0], "median of 3 rounds (deliveries/s: 1, 2, 3)");
        let failed = median(scenario, vec![run(1.0), Err(Problem::Skip("x".into()))]);
        assert!(matches!(failed, Err(Problem::Skip(_))));
    }

    #[test]
    fn scenario_names_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn big_entities_and_fan_out_publish_fewer_events() {
        let sizes = Sizes::new(false, Some(20_000));
        assert_eq!(sizes.for_entity(KB, 1), 20_000);
        assert_eq!(sizes.for_entity(64 * KB, 1), 2_500);
        assert_eq!(sizes.for_entity(KB, 100), 200);
    }

    fn named(names: &[&str]) -> Vec<Scenario> {
        names
            .iter()
            .map(|n| {
                *ALL.iter()
                    .find(|s| s.name == *n)
                    .unwrap_or_else(|| panic!("no scenario {n}"))
            })
            .collect()
    }

    fn plan_names(selected: &[Scenario]) -> Vec<String> {
        names_of(selected, &bracketed(selected))
    }

    fn names_of(selected: &[Scenario], plan: &[Step]) -> Vec<String> {
        plan.iter()
            .map(|s| {
                let name = selected[s.index].name;
                if s.bracket {
                    format!("({name})")
                } else {
                    name.to_string()
                }
            })
            .collect()
    }

    #[test]
    fn extra_rounds_run_only_the_compared_rows_and_their_brackets() {
        let selected = named(&[
            "raw-1k",
            "nats-template",
            "nats-wasm",
            "nats-hostile-loop",
            "nats-hostile-all",
            "jetstream",
            "nats-latency",
        ]);
        assert_eq!(
            names_of(&selected, &compared_only(&selected, &bracketed(&selected))),
            [
                // nats-template's own run is nats-wasm's left neighbour.
                "(nats-template)",
                "nats-wasm",
                "(nats-template)",
                "(nats-wasm)",
                "nats-hostile-loop",
                "(nats-wasm)",
                "(nats-template)",
                "jetstream",
                "(nats-template)",
            ]
        );
        // Nothing compared, nothing to repeat.
        let plain = named(&["raw-1k", "nats-template"]);
        assert!(compared_only(&plain, &bracketed(&plain)).is_empty());
    }

    #[test]
    fn a_compared_row_runs_between_two_runs_of_its_base() {
        let selected = named(&[
            "nats-template",
            "nats-wasm",
            "nats-hostile-loop",
            "nats-hostile-trap",
            "nats-hostile-all",
            "jetstream",
        ]);
        assert_eq!(
            plan_names(&selected),
            [
                "nats-template",
                "nats-wasm",
                "(nats-template)",
                "(nats-wasm)",
                "nats-hostile-loop",
                "(nats-wasm)",
                "nats-hostile-trap",
                "(nats-wasm)",
                "nats-hostile-all",
                "(nats-template)",
                "jetstream",
                "(nats-template)",
            ]
        );
        // Without its base selected, a row runs alone.
        assert_eq!(
            plan_names(&named(&["nats-hostile-loop"])),
            ["nats-hostile-loop"]
        );
    }

    #[test]
    fn a_run_is_judged_against_the_mean_of_the_base_runs_beside_it() {
        let selected = named(&["nats-wasm", "nats-hostile-loop", "nats-hostile-trap"]);
        let plan = bracketed(&selected);
        // nats-wasm, loop, (nats-wasm), trap, (nats-wasm)
        let rates = [
            Some(10_000.0),
            Some(9_000.0),
            Some(8_000.0),
            Some(8_000.0),
            None,
        ];
        let timeline: Vec<_> = plan.iter().copied().zip(rates).collect();
        assert_eq!(
            bracketed_fractions(&selected, &timeline),
            // loop: 9,000 / mean(10,000, 8,000); trap: only the run before
            // it has a rate.
            [(1, 1.0), (2, 1.0)]
        );
    }
}
