//! The scenarios, and how each is run and measured.
//!
//! Every delivery scenario has the same shape: reset the receiver, take the
//! time, publish, wait until the expected number of requests arrived (or
//! nothing arrived for a while), and divide. The start of the clock is the
//! first publish, the end the last arrival, so the rate covers the whole
//! path: bus, wasmhook (or the reference subscriber) and the receiver.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::config::{self, Source, Work, SECRET};
use crate::events::{self, Events, Pace, PG_TABLE};
use crate::receiver::{now_ns, Receiver};
use crate::servers::{self, LineReady, Nats, Postgres, ProcStats, Redis, Wasmhook};

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
    Wasmhook {
        bus: Bus,
        work: Work,
        entity_bytes: usize,
        observers: usize,
        pace: Pace,
    },
    /// Events queued behind a receiver that never answers.
    Memory,
}

/// The target a row is judged against (issue 7, issue 4 "Speed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// >= 60% of the raw ceiling and >= 50x the reference subscriber.
    RawAndReference,
    /// >= 80% of `nats-template`.
    WasmVsTemplate,
    /// >= 50% of `nats-template` (the core NATS path).
    DurableVsCore,
    /// p99 < 5 ms.
    P99Under5ms,
    /// Peak RSS < 150 MB.
    RssUnder150,
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

const KB: usize = 1024;

const fn wasmhook(bus: Bus, work: Work, entity_bytes: usize, observers: usize, pace: Pace) -> Kind {
    Kind::Wasmhook {
        bus,
        work,
        entity_bytes,
        observers,
        pace,
    }
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
                stall: Duration::from_secs(10),
            }
        } else {
            Sizes {
                events: 20_000,
                reference: 3_000,
                verbatim: 150,
                latency: 10_000,
                memory: 100_000,
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
    fn for_entity(&self, entity_bytes: usize, observers: usize) -> u64 {
        let scale = (entity_bytes / (8 * KB)).max(1) as u64 * observers.max(1) as u64;
        (self.events / scale).max(50)
    }
}

/// Publish-to-receipt latency.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    fn of(sorted_ns: &[u64]) -> Option<Latency> {
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

/// The servers and state one invocation shares across scenarios. Servers
/// start on first use, so a subset runs only what it needs.
pub struct Bench {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub sizes: Sizes,
    pub receiver: Receiver,
    dir: tempfile::TempDir,
    seq: u32,
    nats: Option<Result<Nats, Unavailable>>,
    redis: Option<Result<Redis, Unavailable>>,
    postgres: Option<Result<Postgres, Unavailable>>,
    python: Option<Result<(), Unavailable>>,
    plugins: Option<Result<PathBuf, Unavailable>>,
}

/// Why something a scenario needs is not there.
#[derive(Debug, Clone)]
enum Unavailable {
    /// Not installed or not built: the scenario is skipped.
    Missing(String),
    /// Installed but it did not start: the scenario fails.
    Broken(String),
}

/// `Missing` unless `program` is on PATH.
fn on_path(program: &str) -> Result<(), Unavailable> {
    match servers::which(program) {
        Some(_) => Ok(()),
        None => Err(Unavailable::Missing(format!("{program} is not on PATH"))),
    }
}

fn broken(error: anyhow::Error) -> Unavailable {
    Unavailable::Broken(format!("{error:#}"))
}

/// Starts something on first use and keeps the outcome, so a start-up
/// error is reported for every scenario that needs it, not retried.
fn started<'a, T>(
    slot: &'a mut Option<Result<T, Unavailable>>,
    start: impl FnOnce() -> Result<T, Unavailable>,
) -> Result<&'a T, Problem> {
    match slot.get_or_insert_with(start) {
        Ok(value) => Ok(value),
        Err(Unavailable::Missing(why)) => Err(Problem::Skip(why.clone())),
        Err(Unavailable::Broken(why)) => Err(Problem::Fail(anyhow!("{why}"))),
    }
}

impl Bench {
    /// Starts the receiver; everything else waits until needed.
    pub async fn new(binary: PathBuf, root: PathBuf, sizes: Sizes) -> Result<Bench> {
        Ok(Bench {
            binary,
            root,
            sizes,
            receiver: Receiver::start(SECRET.as_bytes()).await?,
            dir: tempfile::Builder::new()
                .prefix("wasmhook-bench-")
                .tempdir()
                .context("creating the work directory")?,
            seq: 0,
            nats: None,
            redis: None,
            postgres: None,
            python: None,
            plugins: None,
        })
    }

    /// Versions of the servers that ran, for the report.
    pub fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Ok(n)) = &self.nats {
            out.push(n.version.clone());
        }
        if let Some(Ok(r)) = &self.redis {
            out.push(format!("{} (AOF on, fsync every second)", short_redis(&r.version)));
        }
        if let Some(Ok(p)) = &self.postgres {
            out.push(format!("{} (default settings)", p.version));
        }
        out
    }

    /// A fresh directory for one scenario.
    fn scenario_dir(&mut self, name: &str) -> Result<PathBuf> {
        self.seq += 1;
        let dir = self.dir.path().join(format!("{:02}-{name}", self.seq));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn nats(&mut self) -> Result<&Nats, Problem> {
        let dir = self.dir.path().to_path_buf();
        started(&mut self.nats, || {
            on_path("nats-server")?;
            Nats::start(&dir).map_err(broken)
        })
    }

    /// Runs one scenario.
    pub async fn run(&mut self, scenario: &Scenario) -> Result<Measured, Problem> {
        match scenario.kind {
            Kind::Raw { entity_bytes } => self.raw(entity_bytes).await,
            Kind::Reference { client_per_event } => self.reference(scenario.name, client_per_event).await,
            Kind::Wasmhook {
                bus,
                work,
                entity_bytes,
                observers,
                pace,
            } => {
                self.wasmhook(scenario.name, bus, work, entity_bytes, observers, pace)
                    .await
            }
            Kind::Memory => self.memory().await,
        }
    }

    async fn raw(&mut self, entity_bytes: usize) -> Result<Measured, Problem> {
        let n = self.sizes.for_entity(entity_bytes, 1);
        let events = Events::new(entity_bytes);
        let url = self.receiver.hook_url();
        let flow = self
            .flow(n, crate::raw::run(&url, &events, n), || Ok(()))
            .await?;
        Ok(flow.measured(n.to_string(), None))
    }

    async fn reference(&mut self, name: &str, client_per_event: bool) -> Result<Measured, Problem> {
        started(&mut self.python, || python_ready().map_err(|e| Unavailable::Missing(format!("{e:#}"))))?;
        let nats_url = self.nats()?.url.clone();
        let dir = self.scenario_dir(name)?;
        let script = dir.join("reference_subscriber.py");
        fs::write(&script, include_str!("../reference_subscriber.py"))?;
        let subject = format!("fraiseql.r{}.order.updated", self.seq);
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .args(["--nats", &nats_url, "--subject", &subject])
            .args(["--url", &self.receiver.hook_url(), "--secret", SECRET]);
        if client_per_event {
            command.arg("--client-per-event");
        }
        let log = dir.join("reference.log");
        let mut python = LineReady::start(command, "ready", &log)?;
        let n = if client_per_event {
            self.sizes.verbatim
        } else {
            self.sizes.reference
        };
        let client = nats_client(&nats_url).await?;
        let events = Events::new(KB);
        let before = ProcStats::of(python.pid())?;
        let flow = self
            .flow(
                n,
                events::nats(&client, &subject, &events, n, Pace::Flood),
                || python.check_alive(&log),
            )
            .await?;
        let after = ProcStats::of(python.pid())?;
        let mut measured = flow.measured(n.to_string(), Some((before, after)));
        if measured.incomplete {
            measured
                .notes
                .push("core NATS is at most once; the Python client fell behind".into());
        }
        Ok(measured)
    }

    #[allow(clippy::too_many_arguments)]
    async fn wasmhook(
        &mut self,
        name: &str,
        bus: Bus,
        work: Work,
        entity_bytes: usize,
        observers: usize,
        pace: Pace,
    ) -> Result<Measured, Problem> {
        let plugins = match work {
            Work::Wasm => Some(self.plugins()?),
            Work::Template => None,
        };
        let n = match pace {
            Pace::PerSecond(_) => self.sizes.latency,
            Pace::Flood => self.sizes.for_entity(entity_bytes, observers),
        };
        let dir = self.scenario_dir(name)?;
        let seq = self.seq;
        let (source, entity) = match bus {
            Bus::Http => (Source::Http, "Order"),
            Bus::Nats => (
                Source::Nats {
                    url: self.nats()?.url.clone(),
                    subject: format!("fraiseql.s{seq}.>"),
                },
                "Order",
            ),
            Bus::JetStream => (
                Source::JetStream {
                    url: self.nats()?.url.clone(),
                    subject: format!("fraiseql.s{seq}.>"),
                    stream: format!("BENCH_{seq}"),
                },
                "Order",
            ),
            Bus::RedisStreams => {
                let redis_dir = self.dir.path().to_path_buf();
                let redis = started(&mut self.redis, || {
                    on_path("redis-server")?;
                    Redis::start(&redis_dir).map_err(broken)
                })?;
                (
                    Source::RedisStreams {
                        url: redis.url.clone(),
                        key: format!("bench_events_{seq}"),
                    },
                    "Order",
                )
            }
            Bus::PostgresLog => {
                let postgres = started(&mut self.postgres, || {
                    if servers::postgres_bin_dir().is_none() {
                        return Err(Unavailable::Missing(
                            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin, no pg_ctl on PATH)".into(),
                        ));
                    }
                    Postgres::start().map_err(broken)
                })?;
                let dsn = postgres.dsn.clone();
                self.pg_install(&dsn, &dir).await?;
                (Source::PostgresLog { dsn }, PG_TABLE)
            }
        };
        let listen = ([127, 0, 0, 1], servers::free_port()?).into();
        let url = self.receiver.hook_url();
        // One compile cache for the run: only the first Wasm start compiles.
        let cache = self.dir.path().join("plugin-cache");
        let text = config::render(&config::Spec {
            listen,
            data_dir: &dir.join("data"),
            plugins: plugins.as_deref().map(|d| (d, cache.as_path())),
            source: &source,
            work,
            observers,
            entity,
            url: &url,
            request_timeout_ms: 30_000,
        });
        let config_path = dir.join("wasmhook.toml");
        fs::write(&config_path, text)?;
        let mut wasmhook = Wasmhook::start(&self.binary, &config_path, &dir, listen).await?;

        let events = Events::new(entity_bytes);
        let expected = n * observers as u64;
        let before = wasmhook.stats()?;
        let publish = async {
            match &source {
                Source::Http => events::http(&format!("http://{listen}/events"), &events, n).await,
                Source::Nats { url, .. } => {
                    let client = nats_client(url).await?;
                    let subject = format!("fraiseql.s{seq}.order.updated");
                    events::nats(&client, &subject, &events, n, pace).await
                }
                Source::JetStream { url, .. } => {
                    let client = nats_client(url).await?;
                    let subject = format!("fraiseql.s{seq}.order.updated");
                    events::jetstream(&client, &subject, &events, n).await
                }
                Source::RedisStreams { url, key } => events::redis_streams(url, key, &events, n).await,
                Source::PostgresLog { dsn } => {
                    let client = events::pg_connect(dsn).await?;
                    events::postgres(&client, &events, n).await
                }
            }
        };
        let flow = self.flow(expected, publish, || wasmhook.check_alive()).await;
        let flow = match flow {
            Ok(flow) => flow,
            Err(error) => {
                let log = servers::tail(&wasmhook.log, 10);
                return Err(Problem::Fail(error.context(format!("wasmhook's log ends:\n{log}"))));
            }
        };
        let after = wasmhook.stats()?;
        wasmhook.stop();
        let label = if observers > 1 {
            format!("{n} × {observers}")
        } else {
            n.to_string()
        };
        let mut measured = flow.measured(label, Some((before, after)));
        if measured.incomplete {
            measured.notes.push(match bus {
                Bus::Nats => "core NATS is at most once: the rest was dropped on the way (see wasmhook's log)".into(),
                _ => format!("a durable/acknowledged path lost deliveries; wasmhook's log ends:\n{}", servers::tail(&wasmhook.log, 5)),
            });
        }
        Ok(measured)
    }

    /// `wasmhook pg install` on a fresh table; a failure means the source
    /// is not there yet (or broken), which the row reports as a skip.
    async fn pg_install(&self, dsn: &str, dir: &Path) -> Result<(), Problem> {
        let client = events::pg_connect(dsn).await?;
        events::pg_create_table(&client).await?;
        let output = Command::new(&self.binary)
            .args(["pg", "install", "--dsn", dsn, "--table", PG_TABLE])
            .current_dir(dir)
            .output()
            .context("running wasmhook pg install")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            return Err(Problem::Skip(format!(
                "`wasmhook pg install --table {PG_TABLE}` failed ({}): {first}",
                output.status
            )));
        }
        Ok(())
    }

    /// The example plugins from `plugins/build.sh`, copied into a folder of
    /// the run's own with their sample configs.
    fn plugins(&mut self) -> Result<PathBuf, Problem> {
        let dist = self.root.join("plugins/dist");
        let target = self.dir.path().join("plugins");
        started(&mut self.plugins, || {
            for name in ["high-value-order", "slack-message"] {
                let wasm = dist.join(format!("{name}.wasm"));
                if !wasm.exists() {
                    return Err(Unavailable::Missing(format!(
                        "{} is missing: run plugins/build.sh first",
                        wasm.display()
                    )));
                }
            }
            copy_plugins(&dist, &target).map_err(broken)?;
            Ok(target.clone())
        })
        .cloned()
    }

    async fn memory(&mut self) -> Result<Measured, Problem> {
        let n = self.sizes.memory;
        let dir = self.scenario_dir("memory")?;
        let listen = ([127, 0, 0, 1], servers::free_port()?).into();
        let url = self.receiver.stall_url();
        let text = config::render(&config::Spec {
            listen,
            data_dir: &dir.join("data"),
            plugins: None,
            source: &Source::Http,
            work: Work::Template,
            observers: 1,
            entity: "Order",
            url: &url,
            request_timeout_ms: 600_000,
        });
        let config_path = dir.join("wasmhook.toml");
        fs::write(&config_path, text)?;
        self.receiver.reset();
        let mut wasmhook = Wasmhook::start(&self.binary, &config_path, &dir, listen).await?;
        let before = wasmhook.stats()?;
        let start = now_ns();
        events::http_batches(&format!("http://{listen}/events"), &Events::new(KB), n, 500)
            .await
            .map_err(|e| Problem::Fail(e.context(servers::tail(&wasmhook.log, 10))))?;
        let ingest_s = (now_ns() - start) as f64 / 1e9;
        // Give the dispatcher time to pick up the backlog and fill its
        // concurrency against the stalled receiver.
        let mut outbox = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wasmhook.check_alive()?;
            outbox = wasmhook.metric("wasmhook_outbox_size").await.ok();
            if outbox.is_some_and(|o| o >= n as f64) && self.receiver.stalled() > 0 {
                break;
            }
        }
        let after = wasmhook.stats()?;
        let held = self.receiver.stalled();
        wasmhook.stop();
        self.receiver.release();
        let mut notes = vec![format!(
            "ingested at {:.0} events/s (POST /events, 500 per request); outbox {}; {held} requests held open by the receiver",
            n as f64 / ingest_s,
            outbox.map_or("size unknown".into(), |o| format!("{o:.0}")),
        )];
        if outbox.is_some_and(|o| o < n as f64) {
            notes.push("fewer deliveries in the outbox than events ingested".into());
        }
        Ok(Measured {
            events: format!("{n} queued"),
            rate: None,
            latency: None,
            rss_mb: Some(after.peak_rss as f64 / 1e6),
            cpu_s: Some(after.cpu_s - before.cpu_s),
            notes,
            incomplete: false,
        })
    }

    /// Publishes, then waits for `expected` requests at the receiver;
    /// `alive` reports a process that died meanwhile.
    async fn flow(
        &self,
        expected: u64,
        publish: impl Future<Output = Result<()>>,
        mut alive: impl FnMut() -> Result<()>,
    ) -> Result<Flow> {
        self.receiver.reset();
        let start_ns = now_ns();
        publish.await?;
        let publish_s = (now_ns() - start_ns) as f64 / 1e9;
        let mut last_count = 0;
        let mut last_change = tokio::time::Instant::now();
        loop {
            let count = self.receiver.count();
            if count >= expected {
                break;
            }
            alive()?;
            if count != last_count {
                last_count = count;
                last_change = tokio::time::Instant::now();
            } else if last_change.elapsed() > self.sizes.stall {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Stragglers (duplicates, over-delivery) would show up here.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(Flow {
            expected,
            start_ns,
            publish_s,
            snapshot: self.receiver.snapshot(),
        })
    }
}

/// What arrived for one publish.
struct Flow {
    expected: u64,
    start_ns: u64,
    publish_s: f64,
    snapshot: crate::receiver::Snapshot,
}

impl Flow {
    fn measured(self, events: String, stats: Option<(ProcStats, ProcStats)>) -> Measured {
        let s = &self.snapshot;
        let elapsed = s.last_ns.saturating_sub(self.start_ns) as f64 / 1e9;
        let mut notes = Vec::new();
        let incomplete = s.count < self.expected;
        if incomplete {
            notes.push(format!("only {} of {} deliveries arrived", s.count, self.expected));
        } else if s.count > self.expected {
            notes.push(format!("{} deliveries for {} expected (duplicates)", s.count, self.expected));
        }
        if s.bad > 0 {
            notes.push(format!("{} of {} sampled signatures did NOT verify", s.bad, s.checked));
        }
        if self.publish_s > 0.0 && self.publish_s > elapsed * 0.9 {
            notes.push(format!("publishing took {:.2} s of {:.2} s: the publisher may bound this row", self.publish_s, elapsed));
        }
        Measured {
            events,
            rate: (elapsed > 0.0 && s.count > 0).then(|| s.count as f64 / elapsed),
            latency: Latency::of(&s.latencies),
            rss_mb: stats.map(|(_, after)| after.peak_rss as f64 / 1e6),
            cpu_s: stats.map(|(before, after)| after.cpu_s - before.cpu_s),
            notes,
            incomplete,
        }
    }
}

fn copy_plugins(dist: &Path, target: &Path) -> Result<()> {
    fs::create_dir_all(target)?;
    for name in ["high-value-order", "slack-message"] {
        for file in [format!("{name}.wasm"), format!("{name}.toml")] {
            if dist.join(&file).exists() {
                fs::copy(dist.join(&file), target.join(&file))
                    .with_context(|| format!("copying {file}"))?;
            }
        }
    }
    Ok(())
}

async fn nats_client(url: &str) -> Result<async_nats::Client> {
    async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Python 3 with nats-py and httpx, or why not.
fn python_ready() -> Result<()> {
    let output = Command::new("python3")
        .args(["-c", "import nats, httpx"])
        .output()
        .context("python3 is not on PATH")?;
    if !output.status.success() {
        anyhow::bail!(
            "python3 cannot import nats-py and httpx (pip install nats-py httpx): {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(())
}

/// `Redis server v=7.0.15 sha=... ` -> `Redis 7.0.15`.
fn short_redis(version: &str) -> String {
    version
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map_or_else(|| version.to_string(), |v| format!("Redis {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let ns: Vec<u64> = (1..=100).collect();
        let l = Latency::of(&ns).unwrap();
        assert_eq!((l.p50.as_nanos(), l.p99.as_nanos(), l.max.as_nanos()), (50, 99, 100));
        assert!(Latency::of(&[]).is_none());
        assert_eq!(Latency::of(&[7]).unwrap().p99.as_nanos(), 7);
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
}
