//! The command line: the binary's edge, where errors become messages
//! (anyhow with context) and exit codes. `main.rs` only calls [`main`].

mod access;
mod decrypt;
mod deliveries;
mod dlq;
mod dry_run;
mod listen;
mod pg;
mod plugin;
mod schedule;
mod storage;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;

/// Signed, reliable webhooks from database-mutation events.
#[derive(Debug, Parser)]
#[command(name = "wasmhook", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the processor until SIGINT or SIGTERM.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a config file, load its plugins and print its observers.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show what one event would become: the observers and webhooks it
    /// matches and the exact requests (headers, body, signature), plugins
    /// run; nothing is sent or stored. Exit status 2 when a matched
    /// webhook's delivery would go to the DLQ.
    DryRun {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: dry_run::DryRunArgs,
    },
    /// Inspect and replay the dead-letter queue (works while `run` is running).
    Dlq {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// List, show and resend deliveries, delivered ones too (works while
    /// `run` is running).
    Deliveries {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: deliveries::DeliveriesCommand,
    },
    /// Add, list and cancel one-off scheduled deliveries (works while `run`
    /// is running).
    Schedule {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// Switch a webhook off and on (works while `run` is running).
    Webhook {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: webhook::WebhookCommand,
    },
    /// List the plugins folder, or run one plugin against an event.
    Plugin {
        #[command(flatten)]
        config: ConfigArg,
        /// Plugins folder, instead of the config's.
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Decrypt the encrypted fields of a webhook body (for receivers).
    Decrypt(decrypt::DecryptArgs),
    /// A development receiver: prints each delivery, checks its signature,
    /// fails on purpose when asked.
    Listen(listen::ListenArgs),
    /// Apply the storage's migrations, or show what it holds.
    Storage {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: storage::StorageCommand,
    },
    /// Install or remove the PostgreSQL event log and triggers (`postgres-log`).
    Pg {
        #[command(subcommand)]
        command: pg::PgCommand,
    },
}

/// `--config FILE`, shared by every command.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Config file.
    #[arg(
        long = "config",
        short = 'c',
        value_name = "FILE",
        env = "WASMHOOK_CONFIG",
        default_value = "wasmhook.toml",
        global = true
    )]
    path: PathBuf,
}

/// Parses the command line and runs it; errors print as `error: ...` and
/// exit with status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run { config } => {
            let config = load(&config.path)?;
            init_logging(&config)?;
            runtime.block_on(run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = load(&config.path)?;
            let plugins = crate::load_plugins(&config, crate::metrics::Metrics::default())?;
            print!("{}", describe(&config));
            let list = plugins.list();
            if !list.is_empty() {
                println!("plugins ({}): {}", config.plugins.dir.display(), list.len());
                for p in list {
                    println!("  {} : {} ({} bytes)", p.name, p.role, p.size);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DryRun { config, args } => {
            let config = load(&config.path)?;
            dry_run::execute(&config, &args)
        }
        Command::Plugin {
            config,
            dir,
            command,
        } => plugin::execute(&config.path, dir, command),
        Command::Webhook { config, command } => {
            let config = load(&config.path)?;
            runtime.block_on(webhook::execute(&config, command))
        }
        Command::Dlq { config, command } => {
            let config = load(&config.path)?;
            runtime.block_on(dlq::execute(&config, command))
        }
        Command::Schedule { config, command } => {
            let config = load(&config.path)?;
            runtime.block_on(schedule::execute(&config, command))
        }
        Command::Deliveries { config, command } => {
            let config = load(&config.path)?;
            runtime.block_on(deliveries::execute(&config, command))
        }
        Command::Storage { config, command } => {
            let config = load(&config.path)?;
            runtime.block_on(storage::execute(&config, command))
        }
        Command::Decrypt(args) => decrypt::execute(args),
        Command::Listen(args) => {
            runtime.block_on(listen::execute(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pg { command } => runtime.block_on(pg::execute(command)),
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

fn init_logging(config: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .with_context(|| format!("log.level {:?} is not a valid filter", config.log.level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if config.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn run(config: Config) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    let storage = config.storage.location();
    crate::run(config, listener, shutdown_signal())
        .await
        .with_context(|| format!("wasmhook stopped with an error (storage: {storage})"))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested");
}

/// The `check` report: every observer, what it selects and where it sends.
fn describe(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.file.display());
    let source = match &config.source {
        crate::config::SourceConfig::Http => {
            format!("http (POST http://{}/events)", config.server.listen)
        }
        other => other.to_string(),
    };
    let _ = writeln!(out, "source: {source}");
    let _ = writeln!(out, "storage: {}", config.storage.location());
    let signing = match &config.signer {
        Some(s) => format!("{} {:?} in {}", s.scheme(), s.algorithm(), s.header),
        None => "off".into(),
    };
    let _ = writeln!(out, "signing: {signing}");
    let observers: Vec<_> = config.observers.iter().filter(|o| !o.scheduled).collect();
    let _ = writeln!(out, "observers: {}", observers.len());
    for o in observers {
        let events = if o.events.is_empty() {
            "any".to_string()
        } else {
            o.events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("|")
        };
        let _ = writeln!(out, "  {} : {} {}", o.name, o.entity, events);
        if let Some(c) = &o.condition {
            let _ = writeln!(out, "    when {}", c.source());
        }
        let _ = writeln!(
            out,
            "    retry: {} attempts, {:?} from {:?} to {:?}",
            o.retry.max_attempts, o.retry.backoff, o.retry.initial_delay, o.retry.max_delay
        );
        for w in &o.webhooks {
            let when = w
                .condition
                .as_ref()
                .map(|c| format!(" when {}", c.source()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    -> {} {}{when}",
                w.method,
                crate::store::redact::url(&w.url)
            );
            if let Some(egress) = w.egress.describe() {
                let _ = writeln!(out, "       {egress}");
            }
        }
    }
    let _ = writeln!(out, "schedules: {}", config.schedules.len());
    for s in &config.schedules {
        let next = s
            .next_after(chrono::Utc::now())
            .map_or("never".into(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        let _ = writeln!(
            out,
            "  {} : {:?} {}, next {next}",
            s.name, s.expression, s.timezone
        );
        for w in config
            .observer(&s.observer)
            .iter()
            .flat_map(|o| &o.webhooks)
        {
            let _ = writeln!(
                out,
                "    -> {} {}",
                w.method,
                crate::store::redact::url(&w.url)
            );
        }
    }
    out
}
