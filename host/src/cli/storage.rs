//! `wasmhook storage migrate|status`: the PostgreSQL schema's migrations
//! (applied at every start too; `migrate` applies them ahead of a rollout)
//! and what the storage holds. The work is [`crate::store::migrate`] and
//! [`crate::store::status`]; this only reports.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::config::Config;
use crate::store::{self, BackendSettings, MigrationInfo};

#[derive(Debug, Subcommand)]
pub(super) enum StorageCommand {
    /// Apply the migrations the PostgreSQL schema lacks (creating it if
    /// needed), print them, and exit.
    Migrate,
    /// Print the backend, the schema's migrations (applied and pending) and
    /// the sizes of the outbox and the DLQ.
    Status,
}

pub(super) async fn execute(config: &Config, command: StorageCommand) -> Result<ExitCode> {
    let settings = &config.storage;
    let location = settings.location();
    match command {
        StorageCommand::Migrate => {
            let applied = store::migrate(settings)
                .await
                .with_context(|| format!("storage migrate on {location}"))?;
            let Some(applied) = applied else {
                println!("{location}: nothing to migrate (sled has no schema)");
                return Ok(ExitCode::SUCCESS);
            };
            if applied.is_empty() {
                println!("{location}: up to date, nothing applied");
            }
            for migration in &applied {
                println!("applied {migration}");
            }
            let status = store::status(settings)
                .await
                .with_context(|| format!("storage status on {location}"))?;
            println!("schema at: {}", versions(&status.applied));
        }
        StorageCommand::Status => {
            let status = store::status(settings)
                .await
                .with_context(|| format!("storage status on {location}"))?;
            println!("backend: {}", status.backend);
            match &settings.backend {
                BackendSettings::Sled { .. } => println!("path: {}", status.location),
                BackendSettings::Postgres(_) => println!("server: {}", status.location),
            }
            if let Some(schema) = &status.schema {
                println!("schema: {schema}");
                println!("applied migrations: {}", versions(&status.applied));
                println!("pending migrations: {}", versions(&status.pending));
            }
            let count = |n: Option<u64>| match n {
                Some(n) => n.to_string(),
                None if status.backend == "sled" => {
                    "unknown (a running wasmhook holds the database; see /metrics)".into()
                }
                None => "unknown (the tables are not created yet)".into(),
            };
            println!("outbox: {}", count(status.outbox_len));
            println!("dlq: {}", count(status.dlq_len));
            if let Some(bytes) = status.size_on_disk {
                println!("size on disk: {bytes} bytes");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn versions(migrations: &[MigrationInfo]) -> String {
    if migrations.is_empty() {
        return "none".into();
    }
    migrations
        .iter()
        .map(MigrationInfo::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
