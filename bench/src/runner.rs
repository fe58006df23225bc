//! How each kind of scenario is run: the servers one invocation shares
//! (started on first use, see [`crate::needs`]), and the raw, reference,
//! wasmhook and memory runs built on them.
//!
//! Every delivery scenario has the same shape: connect, publish a warm-up
//! and wait for it (and for wasmhook's outbox to empty), then reset the
//! receiver, take the time, publish, wait until the expected number of
//! events arrived (or nothing arrived for a while), and divide. The
//! publish-and-wait loop and what it measured are in [`crate::flow`].

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{self, Source, Work, SECRET};
use crate::events::{self, Events, Pace, Publisher, PG_TABLE};
use crate::flow::{settle, Flow};
use crate::needs::{broken, copy_plugins, on_path, python_ready, started, Unavailable};
use crate::processes::{LineReady, ProcStats, Wasmhook};
use crate::receiver::{now_ns, Receiver};
use crate::scenarios::{Bus, Kind, Measured, Problem, Run, Scenario, Sizes, KB};
use wasmhook_testkit::process::tail;
use wasmhook_testkit::{
    free_port, postgres, Fsync, NatsOptions, NatsServer, PgCluster, PgOptions, RedisServer,
};

/// The servers and state one invocation shares across scenarios. Servers
/// start on first use, so a subset runs only what it needs.
pub struct Bench {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub sizes: Sizes,
    pub receiver: Receiver,
    seq: u32,
    nats: Option<Result<NatsServer, Unavailable>>,
    redis: Option<Result<RedisServer, Unavailable>>,
    postgres: Option<Result<PgCluster, Unavailable>>,
    python: Option<Result<(), Unavailable>>,
    plugins: Option<Result<PathBuf, Unavailable>>,
    hostile_plugins: Option<Result<PathBuf, Unavailable>>,
    // Last, so it is removed after the servers using it have stopped.
    dir: tempfile::TempDir,
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
            hostile_plugins: None,
        })
    }

    /// Versions of the servers that ran, for the report.
    pub fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Ok(_)) = &self.nats {
            out.push(NatsServer::version());
        }
        if let Some(Ok(_)) = &self.redis {
            out.push(format!(
                "{} (AOF on, fsync every second)",
                short_redis(&RedisServer::version())
            ));
        }
        if let Some(Ok(p)) = &self.postgres {
            out.push(format!(
                "{} (default settings)",
                short_postgres(&p.version())
            ));
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

    /// `nats-server` with JetStream storing in the run's directory, and
    /// limits raised for full-speed runs (see
    /// [`NatsOptions::bench_limits`]).
    async fn nats(&mut self) -> Result<&NatsServer, Problem> {
        let store = self.dir.path().join("jetstream");
        started(&mut self.nats, async {
            on_path("nats-server")?;
            NatsOptions::new()
                .jetstream(store)
                .bench_limits()
                .start()
                .await
                .map_err(broken)
        })
        .await
    }

    /// Runs one scenario.
    pub async fn run(&mut self, scenario: &Scenario) -> Result<Measured, Problem> {
        match scenario.kind {
            Kind::Raw { entity_bytes } => self.raw(entity_bytes).await,
            Kind::Reference { client_per_event } => {
                self.reference(scenario.name, client_per_event).await
            }
            Kind::Wasmhook(run) => self.wasmhook(scenario.name, run).await,
            Kind::Memory => self.memory().await,
        }
    }

    async fn raw(&mut self, entity_bytes: usize) -> Result<Measured, Problem> {
        let n = self.sizes.for_entity(entity_bytes, 1);
        let client =
            crate::raw::RawClient::new(&self.receiver.hook_url(), &Events::new(entity_bytes))?;
        let warm = self.sizes.warmup.min(n);
        self.flow(warm, client.send(warm), || Ok(())).await?;
        let flow = self.flow(n, client.send(n), || Ok(())).await?;
        Ok(flow.measured(n.to_string(), None, false))
    }

    async fn reference(&mut self, name: &str, client_per_event: bool) -> Result<Measured, Problem> {
        started(&mut self.python, async {
            python_ready().map_err(|e| Unavailable::Missing(format!("{e:#}")))
        })
        .await?;
        let nats_url = self.nats().await?.url();
        let dir = self.scenario_dir(name)?;
        let script = dir.join("reference_subscriber.py");
        fs::write(&script, include_str!("../reference_subscriber.py"))
            .context("writing the reference subscriber")?;
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
        let mut publisher = Publisher::nats(&nats_url, subject).await?;
        let events = Events::new(KB);
        // Python's first requests pay for imports and connections (the
        // verbatim variant pays for a connection on every event anyway).
        let warm = if client_per_event {
            5
        } else {
            self.sizes.warmup / 5
        }
        .min(n);
        self.flow(warm, publisher.send(&events, 0..warm, Pace::Flood), || {
            python.check_alive(&log)
        })
        .await?;
        let before = ProcStats::of(python.pid())?;
        let flow = self
            .flow(
                n,
                publisher.send(&events, warm..warm + n, Pace::Flood),
                || python.check_alive(&log),
            )
            .await?;
        let after = ProcStats::of(python.pid())?;
        let mut measured = flow.measured(n.to_string(), Some((before, after)), true);
        if measured.incomplete {
            measured
                .notes
                .push("core NATS is at most once; the Python client fell behind".into());
        }
        Ok(measured)
    }

    async fn wasmhook(&mut self, name: &str, run: Run) -> Result<Measured, Problem> {
        let Run {
            bus,
            work,
            entity_bytes,
            observers,
            pace,
            batch,
            delivery_log,
        } = run;
        let plugins = match work {
            Work::Wasm => Some(self.plugins().await?),
            Work::Hostile(_) => Some(self.hostile_plugins().await?),
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
                    url: self.nats().await?.url(),
                    subject: format!("fraiseql.s{seq}.>"),
                },
                "Order",
            ),
            Bus::JetStream => (
                Source::JetStream {
                    url: self.nats().await?.url(),
                    subject: format!("fraiseql.s{seq}.>"),
                    stream: format!("BENCH_{seq}"),
                },
                "Order",
            ),
            Bus::RedisStreams => {
                // The append-only file fsynced every second: Redis' own
                // durable setting, comparable to JetStream's file store,
                // since the Redis Streams source is measured as durable.
                let redis_dir = self.dir.path().join("redis");
                let redis = started(&mut self.redis, async {
                    on_path("redis-server")?;
                    RedisServer::start_with(free_port(), &redis_dir, Fsync::EverySec)
                        .await
                        .map_err(broken)
                })
                .await?;
                (
                    Source::RedisStreams {
                        url: redis.url(),
                        key: format!("bench_events_{seq}"),
                    },
                    "Order",
                )
            }
            Bus::PostgresLog => {
                let postgres = started(&mut self.postgres, async {
                    if postgres::bin_dir().is_none() {
                        return Err(Unavailable::Missing(
                            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin, no pg_ctl on PATH)".into(),
                        ));
                    }
                    // PostgreSQL's own durability (fsync on), as measured.
                    PgOptions::new()
                        .fsync(true)
                        .max_connections(50)
                        .start()
                        .await
                        .map_err(broken)
                })
                .await?;
                let dsn = postgres.url();
                self.pg_install(&dsn, &dir).await?;
                (Source::PostgresLog { dsn }, PG_TABLE)
            }
        };
        let listen = ([127, 0, 0, 1], free_port()).into();
        let url = match batch {
            Some(_) => self.receiver.batch_url(),
            None => self.receiver.hook_url(),
        };
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
            batch,
            delivery_log,
        });
        let config_path = dir.join("wasmhook.toml");
        fs::write(&config_path, text).context("writing wasmhook's config")?;
        let mut wasmhook = Wasmhook::start(&self.binary, &config_path, &dir, listen).await?;

        let events = Events::new(entity_bytes);
        let subject = format!("fraiseql.s{seq}.order.updated");
        let mut publisher = match &source {
            Source::Http => Publisher::http(format!("http://{listen}/events"))?,
            Source::Nats { url, .. } => Publisher::nats(url, subject).await?,
            Source::JetStream { url, .. } => Publisher::jetstream(url, subject).await?,
            Source::RedisStreams { url, key } => Publisher::redis_streams(url, key.clone()).await?,
            Source::PostgresLog { dsn } => Publisher::postgres(dsn).await?,
        };
        let fail = |error: anyhow::Error, log: &Path| {
            Problem::Fail(error.context(format!("wasmhook's log ends:\n{}", tail(log, 10))))
        };
        // Connections, caches and the first sled segments are set up
        // before the clock starts.
        let warm = self.sizes.warmup.min(n);
        let log = wasmhook.log.clone();
        let warm_up = self
            .flow(
                warm * observers as u64,
                publisher.send(&events, 0..warm, Pace::Flood),
                || wasmhook.check_alive(),
            )
            .await
            .map_err(|e| fail(e, &log))?;
        let unsettled = match warm_up.stuck {
            None => settle(&wasmhook, self.sizes.stall).await,
            Some(_) => None,
        };
        let before = wasmhook.stats()?;
        let flow = if warm_up.stuck.is_some() {
            // It is not going to get better; report the warm-up.
            warm_up
        } else {
            self.flow(
                n * observers as u64,
                publisher.send(&events, warm..warm + n, pace),
                || wasmhook.check_alive(),
            )
            .await
            .map_err(|e| fail(e, &log))?
        };
        let after = wasmhook.stats()?;
        let healthy = wasmhook.answers_health().await;
        wasmhook.stop();
        let label = if observers > 1 {
            format!("{n} × {observers}")
        } else {
            n.to_string()
        };
        let flooded = matches!(pace, Pace::Flood);
        let mut measured = flow.measured(label, Some((before, after)), flooded);
        measured.notes.extend(unsettled);
        if !healthy {
            measured.notes.push(
                "wasmhook stopped answering /healthz: its runtime is blocked (a deadlock; \
                 `gdb -p PID -batch -ex 'thread apply all bt'` shows where)"
                    .into(),
            );
        }
        if measured.incomplete && !measured.stuck {
            let tail = tail(&wasmhook.log, 5);
            measured.notes.push(match bus {
                Bus::Nats => "core NATS is at most once: the rest was dropped on the way".into(),
                _ => "deliveries missing on an at-least-once path".into(),
            });
            if !tail.trim().is_empty() {
                measured.notes.push(format!("wasmhook's log ends:\n{tail}"));
            }
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
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            return Err(Problem::Skip(format!(
                "`wasmhook pg install --table {PG_TABLE}` failed ({}): {first}",
                output.status
            )));
        }
        Ok(())
    }

    /// The example plugins from `plugins/build.sh`, copied into a folder of
    /// the run's own with their sample configs.
    async fn plugins(&mut self) -> Result<PathBuf, Problem> {
        let dist = self.root.join("plugins/dist");
        let target = self.dir.path().join("plugins");
        started(&mut self.plugins, async {
            copy_plugins(&dist, &target, false)?;
            Ok(target.clone())
        })
        .await
        .cloned()
    }

    /// The same, plus a `misbehave-MODE` copy of the test component for
    /// each hostile mode, in a folder of its own so that the plain Wasm rows
    /// do not load them.
    async fn hostile_plugins(&mut self) -> Result<PathBuf, Problem> {
        let dist = self.root.join("plugins/dist");
        let target = self.dir.path().join("plugins-hostile");
        started(&mut self.hostile_plugins, async {
            copy_plugins(&dist, &target, true)?;
            Ok(target.clone())
        })
        .await
        .cloned()
    }

    async fn memory(&mut self) -> Result<Measured, Problem> {
        let n = self.sizes.memory;
        let dir = self.scenario_dir("memory")?;
        let listen = ([127, 0, 0, 1], free_port()).into();
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
            batch: None,
            delivery_log: true,
        });
        let config_path = dir.join("wasmhook.toml");
        fs::write(&config_path, text).context("writing wasmhook's config")?;
        self.receiver.reset();
        let mut wasmhook = Wasmhook::start(&self.binary, &config_path, &dir, listen).await?;
        let before = wasmhook.stats()?;
        let start = now_ns();
        events::http_batches(&format!("http://{listen}/events"), &Events::new(KB), n, 500)
            .await
            .map_err(|e| Problem::Fail(e.context(tail(&wasmhook.log, 10))))?;
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
            stuck: false,
        })
    }

    /// [`Flow::watch`] on this run's receiver, giving up after
    /// [`Sizes::stall`] without a new delivery.
    async fn flow(
        &self,
        expected: u64,
        publish: impl Future<Output = Result<()>>,
        alive: impl FnMut() -> Result<()>,
    ) -> Result<Flow> {
        Flow::watch(&self.receiver, self.sizes.stall, expected, publish, alive).await
    }
}

/// `postgres (PostgreSQL) 15.14` -> `PostgreSQL 15`: the major version,
/// which names the server binaries' directory.
fn short_postgres(version: &str) -> String {
    version
        .split_whitespace()
        .last()
        .and_then(|v| v.split('.').next())
        .filter(|major| major.parse::<u32>().is_ok())
        .map_or_else(
            || version.to_string(),
            |major| format!("PostgreSQL {major}"),
        )
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
    fn server_versions_are_shortened_for_the_report() {
        assert_eq!(
            short_postgres("postgres (PostgreSQL) 15.14"),
            "PostgreSQL 15"
        );
        assert_eq!(short_postgres("/usr/bin/postgres"), "/usr/bin/postgres");
        assert_eq!(
            short_redis("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            "Redis 7.0.15"
        );
    }
}
