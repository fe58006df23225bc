//! The end-to-end benchmark harness (issue 7): wasmhook against the raw
//! HTTP ceiling and a reference subscriber, side by side in one run,
//! because on a shared machine only numbers taken together compare.
//!
//! It builds nothing: it runs the release binary next to itself
//! (`target/release/wasmhook`), and starts its own nats-server, redis-server,
//! PostgreSQL cluster and receiver. See docs/BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release -p wasmhook
//! cargo run --release -p wasmhook-bench -- [--quick] [--scenario NAME]... [--events N] [--write]
//! ```

mod config;
mod events;
mod flow;
mod needs;
mod processes;
mod raw;
mod receiver;
mod report;
mod runner;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::{Provenance, Row};
use runner::Bench;
use scenarios::{Measured, Problem, Sizes, ALL};

/// End-to-end benchmark of wasmhook: throughput, latency and memory against
/// the raw HTTP ceiling and the FraiseQL docs' reference subscriber.
#[derive(Debug, Parser)]
#[command(name = "wasmhook-bench")]
struct Args {
    /// A smoke run: small N and a subset of scenarios, well under a minute.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (repeatable; `--list` shows them).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Events per scenario (1 KB, one observer; others scale from it).
    #[arg(long, value_name = "N")]
    events: Option<u64>,
    /// Write the table into docs/BENCHMARKS.md (the default for a full run
    /// of every scenario; quick and partial runs only write when asked).
    #[arg(long, conflicts_with = "no_write")]
    write: bool,
    /// Never write docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
    /// The wasmhook binary (default: `wasmhook` next to this executable).
    #[arg(long, value_name = "PATH", env = "WASMHOOK_BIN")]
    wasmhook: Option<PathBuf>,
    /// Runs of each scenario, round-robin; the table shows the median
    /// (default 3, or 1 with --quick). A row judged against another runs
    /// between two runs of it in every round.
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// Runs of each row judged against another row, and of the runs of
    /// that row beside it (default: 10, at least --rounds; with --quick,
    /// --rounds). Such a verdict is the ratio of two runs that each spread
    /// by ±10% on a shared machine: 3 rounds cannot tell 88% from 95%.
    #[arg(long, value_name = "N")]
    compared_rounds: Option<u32>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in ALL {
            println!(
                "{:<20} {}{}",
                s.name,
                if s.quick { "[quick] " } else { "" },
                s.what
            );
        }
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wasmhook-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (this crate lives in `bench/`).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The wasmhook binary cargo built beside this one, as `CARGO_BIN_EXE_*`
/// would give a test: `target/<profile>/wasmhook`.
fn find_wasmhook(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--wasmhook {}: no such file", path.display());
        }
        // wasmhook runs in a scratch directory: a relative path must not
        // change meaning there.
        return path
            .canonicalize()
            .with_context(|| format!("--wasmhook {}", path.display()));
    }
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .context("the bench executable has no directory")?;
    let candidate = dir.join("wasmhook");
    if !candidate.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release -p wasmhook` \
             (the harness runs the release binary next to itself and builds nothing), \
             or pass --wasmhook PATH",
            candidate.display()
        );
    }
    if dir.ends_with("debug") {
        eprintln!(
            "wasmhook-bench: warning: using a debug build ({}); numbers mean little. \
             Use `cargo run --release -p wasmhook-bench`.",
            candidate.display()
        );
    }
    Ok(candidate)
}

fn run(args: Args) -> Result<ExitCode> {
    let selected: Vec<_> = if args.scenarios.is_empty() {
        ALL.iter()
            .filter(|s| s.quick || !args.quick)
            .copied()
            .collect()
    } else {
        for name in &args.scenarios {
            if !ALL.iter().any(|s| s.name == name) {
                let names: Vec<_> = ALL.iter().map(|s| s.name).collect();
                bail!("unknown scenario {name:?}; known: {}", names.join(", "));
            }
        }
        ALL.iter()
            .filter(|s| args.scenarios.iter().any(|n| n == s.name))
            .copied()
            .collect()
    };
    let write = !args.no_write && (args.write || (!args.quick && args.scenarios.is_empty()));
    let binary = find_wasmhook(args.wasmhook.clone())?;
    let root = workspace_root();
    let sizes = Sizes::new(args.quick, args.events);

    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let compared_rounds = args
        .compared_rounds
        .unwrap_or(if args.quick { rounds } else { 10 })
        .max(rounds);
    let all = async {
        let mut bench = Bench::new(binary, root.clone(), sizes).await?;
        // Round-robin, so a burst of load from others on a shared machine
        // lands on one run of several scenarios, not on every run of one.
        let mut runs: Vec<Vec<Result<Measured, Problem>>> =
            selected.iter().map(|_| Vec::new()).collect();
        let mut fractions: Vec<Vec<f64>> = selected.iter().map(|_| Vec::new()).collect();
        let plan = scenarios::bracketed(&selected);
        let extra = scenarios::compared_only(&selected, &plan);
        for round in 1..=compared_rounds {
            let steps = if round <= rounds { &plan } else { &extra };
            if steps.is_empty() {
                break;
            }
            let mut timeline = Vec::with_capacity(steps.len());
            for &step in steps {
                let scenario = &selected[step.index];
                let done = &mut runs[step.index];
                if done
                    .first()
                    .is_some_and(|first| !scenarios::worth_repeating(scenario, first))
                {
                    continue;
                }
                eprintln!(
                    "wasmhook-bench: {} (round {round}/{}{}) ...",
                    scenario.name,
                    if round <= rounds {
                        rounds
                    } else {
                        compared_rounds
                    },
                    if step.bracket {
                        ", beside a row compared with it"
                    } else {
                        ""
                    }
                );
                let started = std::time::Instant::now();
                let outcome = bench.run(scenario).await;
                log_outcome(scenario.name, started.elapsed(), &outcome);
                timeline.push((step, outcome.as_ref().ok().and_then(|m| m.rate)));
                // A run beside another row counts only for that row's
                // comparison, unless it broke: that is the base's failure.
                if !step.bracket || matches!(outcome, Err(Problem::Fail(_))) {
                    done.push(outcome);
                }
            }
            for (index, fraction) in scenarios::bracketed_fractions(&selected, &timeline) {
                fractions[index].push(fraction);
            }
        }
        let rows = selected
            .into_iter()
            .zip(runs)
            .zip(fractions)
            .map(|((scenario, outcomes), fractions)| Row {
                outcome: scenarios::median(&scenario, outcomes),
                fractions,
                scenario,
            })
            .collect::<Vec<_>>();
        anyhow::Ok((rows, bench.versions()))
    };
    // On Ctrl-C or SIGTERM (a CI timeout) the run is dropped, and with it
    // every server it started, the PostgreSQL cluster and the temporary
    // directories; the kernel would only kill the direct children.
    let (rows, versions) = runtime.block_on(async {
        tokio::select! {
            result = all => result,
            signal = interrupted() => bail!("interrupted by {signal}; servers stopped"),
        }
    })?;
    // Children are stopped by now; sleeping `/stall` handlers must not
    // hold up the exit.
    runtime.shutdown_background();

    println!("\n{}", report::table(&rows));
    let notes = report::notes(&rows);
    if !notes.is_empty() {
        println!("{notes}");
    }
    if write {
        let provenance = Provenance {
            command: command_line(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model(),
            date: humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .chars()
                .take(10)
                .collect(),
            versions,
            revision: revision(&root),
        };
        let path = root.join("docs/BENCHMARKS.md");
        report::write_section(&path, &report::section(&rows, &provenance))?;
        eprintln!("wasmhook-bench: wrote {}", path.display());
    }
    // Missed targets are results; only a broken run is a failure.
    Ok(if rows.iter().any(Row::failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default (exit) applies; never resolve.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn log_outcome(name: &str, took: std::time::Duration, outcome: &Result<Measured, Problem>) {
    match outcome {
        Ok(m) => eprintln!(
            "wasmhook-bench: {name} done in {:.1} s: {}",
            took.as_secs_f64(),
            match (m.rate, m.rss_mb) {
                (Some(rate), _) => format!("{rate:.0} deliveries/s"),
                (None, Some(rss)) => format!("peak RSS {rss:.0} MB"),
                (None, None) => "no rate".into(),
            }
        ),
        Err(Problem::Skip(why)) => eprintln!("wasmhook-bench: {name} skipped: {why}"),
        Err(Problem::Fail(error)) => eprintln!("wasmhook-bench: {name} FAILED: {error:#}"),
    }
}

/// The invocation as a user would type it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect();
    let mut line = String::from("cargo run --release -p wasmhook-bench");
    if !args.is_empty() {
        line.push_str(" -- ");
        line.push_str(&args.join(" "));
    }
    line
}

fn revision(root: &Path) -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("`{}`", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| "an unknown revision".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
