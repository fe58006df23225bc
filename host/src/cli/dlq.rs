//! `wasmhook dlq ...`. sled lets one process hold the database: when no
//! `run` holds it the command opens it directly, otherwise it goes through
//! the running process's admin API at `server.listen`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::access::Access;
use crate::config::{parse_duration, parse_instant, Config};
use crate::store::{DeadLetter, Filter, Summary};

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
    /// List entries, oldest first.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this observer's entries.
        #[arg(long)]
        observer: Option<String>,
        /// Only entries that died at least this long ago (e.g. 1h).
        #[arg(long)]
        older_than: Option<String>,
        #[command(flatten)]
        window: Window,
    },
    /// Show one entry in full: the event, the request, every attempt.
    Show {
        /// Entry id.
        id: String,
    },
    /// Deliver one entry again.
    Retry {
        /// Entry id.
        id: String,
    },
    /// Deliver every matching entry again.
    RetryAll {
        /// Only entries that died at least this long ago (e.g. 1h).
        #[arg(long)]
        older_than: Option<String>,
        /// Only this observer's entries.
        #[arg(long)]
        observer: Option<String>,
        #[command(flatten)]
        window: Window,
        /// Spread the replays: one every DELAY (e.g. 30s), not all at once.
        #[arg(long)]
        delay: Option<String>,
    },
    /// Delete matching entries.
    Purge {
        /// Only entries that died at least this long ago (e.g. 7d).
        #[arg(long)]
        older_than: Option<String>,
        /// Only this observer's entries.
        #[arg(long)]
        observer: Option<String>,
    },
}

/// `--since` / `--until`: a time (RFC 3339) or an age ("2h" = two hours ago).
#[derive(Debug, clap::Args)]
pub(super) struct Window {
    /// Only entries that died at or after this time (RFC 3339, or an age like 2h).
    #[arg(long)]
    since: Option<String>,
    /// Only entries that died before this time (RFC 3339, or an age like 30m).
    #[arg(long)]
    until: Option<String>,
}

fn instant_ms(text: &str, flag: &str) -> Result<u64> {
    parse_instant(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

fn filter(
    observer: Option<String>,
    older_than: Option<String>,
    window: Option<Window>,
) -> Result<Filter> {
    let older_than_ms = older_than
        .map(|text| parse_duration(&text).map(|d| d.as_millis() as u64))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
    let (since, until) = window.map_or((None, None), |w| (w.since, w.until));
    Ok(Filter {
        observer,
        older_than_ms,
        since_ms: since.map(|t| instant_ms(&t, "--since")).transpose()?,
        until_ms: until.map(|t| instant_ms(&t, "--until")).transpose()?,
    })
}

fn filter_body(f: &Filter) -> Value {
    serde_json::to_value(f).unwrap_or(Value::Null)
}

pub(super) async fn execute(config: &Config, command: DlqCommand) -> Result<ExitCode> {
    let access = Access::open(config).await?;
    match command {
        DlqCommand::List {
            json,
            observer,
            older_than,
            window,
        } => {
            let f = filter(observer, older_than, Some(window))?;
            let summaries: Vec<Summary> = match &access {
                Access::Direct(store) => store
                    .dlq_list(&f)
                    .await?
                    .iter()
                    .map(DeadLetter::summary)
                    .collect(),
                Access::Admin { .. } => {
                    let mut query = Vec::new();
                    if let Some(o) = &f.observer {
                        query.push(("observer", o.clone()));
                    }
                    for (name, value) in [
                        ("older_than_ms", f.older_than_ms),
                        ("since_ms", f.since_ms),
                        ("until_ms", f.until_ms),
                    ] {
                        if let Some(ms) = value {
                            query.push((name, ms.to_string()));
                        }
                    }
                    serde_json::from_value(
                        access
                            .call(reqwest::Method::GET, "/dlq", &query, None)
                            .await?,
                    )?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&summaries)?);
            } else {
                print_table(&summaries);
            }
        }
        DlqCommand::Show { id } => {
            let letter: Value = match &access {
                Access::Direct(store) => {
                    serde_json::to_value(store.dlq_get(&id).await?.redacted())?
                }
                Access::Admin { .. } => {
                    access
                        .call(reqwest::Method::GET, &format!("/dlq/{id}"), &[], None)
                        .await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DlqCommand::Retry { id } => match &access {
            Access::Direct(store) => {
                store.requeue(&id).await?;
                store.flush().await?;
                println!("requeued {id}; it is delivered when wasmhook runs");
            }
            Access::Admin { .. } => {
                access
                    .call(
                        reqwest::Method::POST,
                        &format!("/dlq/{id}/retry"),
                        &[],
                        None,
                    )
                    .await?;
                println!("requeued {id}");
            }
        },
        DlqCommand::RetryAll {
            older_than,
            observer,
            window,
            delay,
        } => {
            let f = filter(observer, older_than, Some(window))?;
            let spacing = delay
                .map(|d| parse_duration(&d))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--delay: {e}"))?
                .unwrap_or_default();
            match &access {
                Access::Direct(store) => {
                    let n = store.requeue_all(&f, spacing).await?.len();
                    store.flush().await?;
                    println!("requeued {n} entries; they are delivered when wasmhook runs");
                }
                Access::Admin { .. } => {
                    let answer = access
                        .call(
                            reqwest::Method::POST,
                            "/dlq/retry-all",
                            &[("delay_ms", spacing.as_millis().to_string())],
                            Some(filter_body(&f)),
                        )
                        .await?;
                    println!("requeued {} entries", answer["requeued"]);
                }
            }
        }
        DlqCommand::Purge {
            older_than,
            observer,
        } => {
            let f = filter(observer, older_than, None)?;
            let n = match &access {
                Access::Direct(store) => store.dlq_purge(&f).await?.to_string(),
                Access::Admin { .. } => access
                    .call(
                        reqwest::Method::POST,
                        "/dlq/purge",
                        &[],
                        Some(filter_body(&f)),
                    )
                    .await?["purged"]
                    .to_string(),
            };
            println!("purged {n} entries");
        }
    }
    access.close().await?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(summaries: &[Summary]) {
    if summaries.is_empty() {
        println!("the DLQ is empty");
        return;
    }
    println!(
        "{:<36}  {:<24}  {:>8}  {:>6}  {:<24}  reason",
        "id", "observer", "attempts", "status", "failed at"
    );
    for s in summaries {
        let status = s
            .last_status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<36}  {:<24}  {:>8}  {:>6}  {:<24}  {}",
            s.id, s.observer, s.attempts, status, s.failed_at, s.reason
        );
    }
}
