//! `wasmhook schedule ...`: one-off scheduled deliveries (as Hasura's
//! one-off scheduled events), added, listed and cancelled directly or
//! through a running wasmhook's admin API (see `access`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::access::Access;
use crate::config::Config;
use crate::schedule::ONE_OFF;
use crate::server::deliveries::ScheduleRequest;
use crate::store::{DeliveryStatus, Entry, Query};

#[derive(Debug, Subcommand)]
pub(super) enum ScheduleCommand {
    /// Send one request at a time: signed, retried and dead-lettered like
    /// every delivery.
    Add {
        /// When: an RFC 3339 time, or a wait like +30s.
        #[arg(long)]
        at: String,
        /// Where to.
        #[arg(long)]
        url: String,
        /// The body (JSON is sent as it is, other text as text).
        #[arg(long)]
        body: Option<String>,
        /// HTTP method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// An extra header, NAME=VALUE (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// List the one-off deliveries still to be sent.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending delivery (one-off or any other): it goes to the
    /// DLQ with the reason, from where it can still be retried.
    Cancel {
        /// Delivery id.
        id: String,
    },
}

pub(super) async fn execute(config: &Config, command: ScheduleCommand) -> Result<ExitCode> {
    let access = Access::open(config).await?;
    match command {
        ScheduleCommand::Add {
            at,
            url,
            body,
            method,
            headers,
        } => {
            let mut header_map = std::collections::BTreeMap::new();
            for header in headers {
                let Some((name, value)) = header.split_once('=') else {
                    bail!("--header: {header:?} is not NAME=VALUE");
                };
                header_map.insert(name.trim().to_string(), value.to_string());
            }
            let body = match body {
                None => Value::Null,
                Some(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            };
            let request = json!({"at": at, "url": url, "method": method, "headers": header_map, "body": body});
            // Checked here either way, so that errors name the flag.
            let parsed: ScheduleRequest = serde_json::from_value(request.clone())?;
            let one_off = parsed.one_off().map_err(|e| anyhow::anyhow!("--{e}"))?;
            let (id, at) = match &access {
                Access::Direct(store) => {
                    let at = crate::store::rfc3339(one_off.at_ms);
                    let delivery = one_off.delivery(crate::clock::now_ms());
                    let id = delivery.id.clone();
                    store.write(vec![delivery], Vec::new()).await?;
                    store.flush().await?;
                    (id, at)
                }
                Access::Admin { .. } => {
                    let answer = access
                        .call(reqwest::Method::POST, "/schedule", &[], Some(request))
                        .await?;
                    (
                        answer["id"].as_str().unwrap_or_default().to_string(),
                        answer["at"].as_str().unwrap_or_default().to_string(),
                    )
                }
            };
            println!("scheduled {id} at {at}");
        }
        ScheduleCommand::List { json } => {
            let query = Query {
                observer: Some(ONE_OFF.into()),
                status: Some(DeliveryStatus::Pending),
                limit: crate::server::deliveries::MAX_LIMIT,
                ..Query::default()
            };
            let entries: Vec<Entry> = match &access {
                Access::Direct(store) => store
                    .deliveries(&query)
                    .await?
                    .iter()
                    .map(|l| l.entry("0".into()))
                    .collect(),
                Access::Admin { .. } => {
                    let params = [
                        ("observer", ONE_OFF.to_string()),
                        ("status", "pending".to_string()),
                        ("limit", query.limit.to_string()),
                    ];
                    serde_json::from_value(
                        access
                            .call(reqwest::Method::GET, "/deliveries", &params, None)
                            .await?["deliveries"]
                            .take(),
                    )?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no one-off deliveries are waiting");
            } else {
                println!("{:<36}  {:<24}  {:>8}  url", "id", "due at", "attempts");
                for e in &entries {
                    println!(
                        "{:<36}  {:<24}  {:>8}  {}",
                        e.id,
                        e.due_at.as_deref().unwrap_or("-"),
                        e.attempts,
                        e.url
                    );
                }
            }
        }
        ScheduleCommand::Cancel { id } => {
            match &access {
                Access::Direct(store) => {
                    store.cancel(&id, "cancelled by an operator").await?;
                    store.flush().await?;
                }
                Access::Admin { .. } => {
                    let path = format!("/deliveries/{id}/cancel");
                    access.call(reqwest::Method::POST, &path, &[], None).await?;
                }
            }
            println!("cancelled {id}; it is in the DLQ, from where `dlq retry` sends it");
        }
    }
    access.close().await?;
    Ok(ExitCode::SUCCESS)
}
