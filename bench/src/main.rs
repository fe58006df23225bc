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
mod raw;
mod receiver;
mod report;
mod scenarios;
mod servers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::{Provenance, Row};
use scenarios::{Bench, Problem, Sizes, ALL};

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
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in ALL {
            println!("{:<20} {}{}", s.name, if s.quick { "[quick] " } else { "" }, s.what);
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
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe.parent().context("the bench executable has no directory")?;
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
        ALL.iter().filter(|s| s.quick || !args.quick).copied().collect()
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
    let (rows, versions) = runtime.block_on(async {
        let mut bench = Bench::new(binary, root.clone(), sizes).await?;
        let mut rows = Vec::new();
        for scenario in selected {
            eprintln!("wasmhook-bench: {} ...", scenario.name);
            let started = std::time::Instant::now();
            let outcome = bench.run(&scenario).await;
            match &outcome {
                Ok(m) => eprintln!(
                    "wasmhook-bench: {} done in {:.1} s: {}",
                    scenario.name,
                    started.elapsed().as_secs_f64(),
                    m.rate.map_or_else(
                        || format!("peak RSS {:.0} MB", m.rss_mb.unwrap_or(0.0)),
                        |r| format!("{r:.0} deliveries/s")
                    )
                ),
                Err(Problem::Skip(why)) => eprintln!("wasmhook-bench: {} skipped: {why}", scenario.name),
                Err(Problem::Fail(error)) => eprintln!("wasmhook-bench: {} FAILED: {error:#}", scenario.name),
            }
            rows.push(Row { scenario, outcome });
        }
        anyhow::Ok((rows, bench.versions()))
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

/// The invocation as a user would type it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect();
    let mut line = String::from("cargo run --release -p wasmhook-bench");
    if !args.is_empty() {
        line.push_str(" -- ");
        line.push_str(&args.join(" "));
    }
    line
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
