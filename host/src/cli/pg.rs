//! `wasmhook pg install|uninstall`: the event log and row triggers that the
//! `postgres-log` source reads. The SQL lives in
//! [`crate::source::postgres_log`]; this only parses arguments and reports.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::source::postgres::display_dsn;
use crate::source::postgres_log::{self, TriggerChange, DEFAULT_CHANNEL, DEFAULT_TABLE};

#[derive(Debug, Subcommand)]
pub(super) enum PgCommand {
    /// Create (idempotently) the event-log table and a row trigger on each table.
    Install {
        /// Connection string, e.g. postgres://app@127.0.0.1:5432/app.
        #[arg(long, env = "WASMHOOK_PG_DSN", hide_env_values = true)]
        dsn: String,
        /// A table to record changes of (repeatable), optionally schema.table.
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        /// The event-log table.
        #[arg(long, default_value = DEFAULT_TABLE)]
        log_table: String,
        /// Channel the triggers NOTIFY on.
        #[arg(long, default_value = DEFAULT_CHANNEL)]
        channel: String,
    },
    /// Drop the triggers (and, without --table, the event log too).
    Uninstall {
        /// Connection string.
        #[arg(long, env = "WASMHOOK_PG_DSN", hide_env_values = true)]
        dsn: String,
        /// Only remove the triggers of these tables.
        #[arg(long = "table")]
        tables: Vec<String>,
        /// The event-log table.
        #[arg(long, default_value = DEFAULT_TABLE)]
        log_table: String,
    },
}

pub(super) async fn execute(command: PgCommand) -> Result<ExitCode> {
    match command {
        PgCommand::Install {
            dsn,
            tables,
            log_table,
            channel,
        } => {
            let done = postgres_log::install(&dsn, &log_table, &channel, &tables)
                .await
                .with_context(|| format!("pg install on {}", display_dsn(&dsn)))?;
            if done.created_schema {
                println!("schema {}: created", schema_of(&done.log_table));
            }
            let log = if done.created_log {
                "created"
            } else {
                "already there"
            };
            println!("event log {}: {log}", done.log_table);
            println!(
                "trigger function {}: notifies channel {}",
                done.function, done.channel
            );
            for (table, change) in &done.triggers {
                println!("trigger on {table}: {}", describe(*change));
            }
        }
        PgCommand::Uninstall {
            dsn,
            tables,
            log_table,
        } => {
            let whole = tables.is_empty();
            let done = postgres_log::uninstall(&dsn, &log_table, &tables)
                .await
                .with_context(|| format!("pg uninstall on {}", display_dsn(&dsn)))?;
            for (table, change) in &done.triggers {
                println!("trigger on {table}: {}", describe(*change));
            }
            if whole {
                if done.triggers.is_empty() {
                    println!("no triggers fed {}", done.log_table);
                }
                if done.dropped_function {
                    println!("trigger function: dropped");
                }
                match done.dropped_log {
                    Some(0) => println!("event log {}: dropped", done.log_table),
                    Some(undone) => println!(
                        "event log {}: dropped, with {undone} rows not yet delivered",
                        done.log_table
                    ),
                    None => println!("event log {}: not there", done.log_table),
                }
                if done.dropped_schema {
                    println!("schema {}: dropped", schema_of(&done.log_table));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn schema_of(table: &str) -> &str {
    table.split_once('.').map_or(table, |(schema, _)| schema)
}

fn describe(change: TriggerChange) -> &'static str {
    match change {
        TriggerChange::Created => "created",
        TriggerChange::AlreadyThere => "already there",
        TriggerChange::Removed => "removed",
        TriggerChange::Absent => "none to remove",
        TriggerChange::NoSuchTable => "no such table",
    }
}
