//! `wasmhook deliveries ...`: the delivery log, read and replayed directly
//! or through a running wasmhook's admin API (see `access`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use super::access::Access;
use crate::config::{parse_duration, Config};
use crate::delivery::dispatcher::webhook_name;
use crate::server::deliveries::query_of;
use crate::store::{Detail, Entry, Logged};

#[derive(Debug, Subcommand)]
pub(super) enum DeliveriesCommand {
    /// List deliveries, newest first: finished ones from the delivery log,
    /// pending ones from the outbox.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filter: Filter,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only ids below this one: the page after a listing that ended there.
        #[arg(long)]
        before: Option<String>,
    },
    /// Show one delivery: its event, its request, its attempts as a timeline.
    Show {
        /// Delivery id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a delivered or dead delivery again (the same delivery id, a
    /// fresh attempt budget, signed anew); with filters instead of an id,
    /// every finished delivery they pick.
    Resend {
        /// Delivery id.
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Spread the resends: one every DELAY (e.g. 1s), not all at once.
        #[arg(long)]
        delay: Option<String>,
    },
}

/// The filters `list` and `resend` share.
#[derive(Debug, Default, clap::Args)]
pub(super) struct Filter {
    /// Only this event's deliveries.
    #[arg(long)]
    event: Option<String>,
    /// Only this observer's.
    #[arg(long)]
    observer: Option<String>,
    /// Only delivered, pending or dead ones.
    #[arg(long)]
    status: Option<String>,
    /// Only events accepted at or after this time (RFC 3339, or an age like 2h).
    #[arg(long)]
    since: Option<String>,
    /// Only events accepted before this time (RFC 3339, or an age like 30m).
    #[arg(long)]
    until: Option<String>,
}

impl Filter {
    /// As query parameters, named as the admin API names them.
    fn params(&self) -> Vec<(&'static str, String)> {
        [
            ("event", &self.event),
            ("observer", &self.observer),
            ("status", &self.status),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.params().is_empty()
    }
}

/// Reads the filters as the admin API would; errors name the flag.
fn query(params: &[(&'static str, String)]) -> Result<crate::store::Query> {
    query_of(params.iter().map(|(k, v)| (*k, v.as_str()))).map_err(|e| anyhow::anyhow!("--{e}"))
}

pub(super) async fn execute(config: &Config, command: DeliveriesCommand) -> Result<ExitCode> {
    let access = Access::open(config).await?;
    let name = |logged: &Logged| {
        webhook_name(
            config
                .observers
                .iter()
                .find(|o| o.name == logged.delivery.observer),
            logged.delivery.webhook,
        )
    };
    match command {
        DeliveriesCommand::List {
            json,
            filter,
            limit,
            before,
        } => {
            let mut params = filter.params();
            params.push(("limit", limit.to_string()));
            if let Some(before) = before {
                params.push(("before", before));
            }
            let q = query(&params)?;
            let entries: Vec<Entry> = match &access {
                Access::Direct(store) => store
                    .deliveries(&q)
                    .await?
                    .iter()
                    .map(|l| l.entry(name(l)))
                    .collect(),
                Access::Admin { .. } => serde_json::from_value(
                    access
                        .call(reqwest::Method::GET, "/deliveries", &params, None)
                        .await?["deliveries"]
                        .take(),
                )?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print_table(&entries, config.delivery_log.enabled);
            }
        }
        DeliveriesCommand::Show { id, json } => {
            let detail: Detail = match &access {
                Access::Direct(store) => {
                    let logged = store.delivery(&id).await?;
                    logged.detail(name(&logged))
                }
                Access::Admin { .. } => serde_json::from_value(
                    access
                        .call(
                            reqwest::Method::GET,
                            &format!("/deliveries/{id}"),
                            &[],
                            None,
                        )
                        .await?,
                )?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
        }
        DeliveriesCommand::Resend { id, filter, delay } => match id {
            Some(id) => {
                if !filter.is_empty() || delay.is_some() {
                    bail!("give a delivery id or filters, not both");
                }
                match &access {
                    Access::Direct(store) => {
                        store.resend(&id, crate::clock::now_ms()).await?;
                        store.flush().await?;
                        println!("resent {id}; it is delivered when wasmhook runs");
                    }
                    Access::Admin { .. } => {
                        let path = format!("/deliveries/{id}/resend");
                        access.call(reqwest::Method::POST, &path, &[], None).await?;
                        println!("resent {id}");
                    }
                }
            }
            None => {
                if filter.is_empty() {
                    bail!(
                        "give a delivery id, or filters that pick the deliveries to resend \
                         (--observer, --event, --status, --since, --until)"
                    );
                }
                let params = filter.params();
                let q = query(&params)?;
                let spacing = delay
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--delay: {e}"))?
                    .unwrap_or_default();
                match &access {
                    Access::Direct(store) => {
                        let n = store.resend_all(&q, spacing).await?.len();
                        store.flush().await?;
                        println!("resent {n} deliveries; they are delivered when wasmhook runs");
                    }
                    Access::Admin { .. } => {
                        let mut body = serde_json::Map::new();
                        for (name, value) in params {
                            body.insert(name.into(), json!(value));
                        }
                        if let Some(delay) = delay {
                            body.insert("delay".into(), json!(delay));
                        }
                        let answer = access
                            .call(
                                reqwest::Method::POST,
                                "/deliveries/resend",
                                &[],
                                Some(Value::Object(body)),
                            )
                            .await?;
                        println!("resent {} deliveries", answer["resent"]);
                    }
                }
            }
        },
    }
    access.close().await?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(entries: &[Entry], logging: bool) {
    if entries.is_empty() {
        if logging {
            println!("no deliveries match");
        } else {
            println!("no pending deliveries match (the delivery log is off: [delivery_log] enabled = false)");
        }
        return;
    }
    println!(
        "{:<36}  {:<9}  {:<20}  {:>8}  {:>6}  {:<24}  event",
        "id", "status", "observer", "attempts", "last", "created at"
    );
    for e in entries {
        let last = e
            .last_status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<36}  {:<9}  {:<20}  {:>8}  {:>6}  {:<24}  {}",
            e.id,
            e.status.as_str(),
            e.observer,
            e.attempts,
            last,
            e.created_at,
            e.event_id
        );
    }
}

fn print_detail(d: &Detail) {
    let e = &d.entry;
    println!("delivery  {}", e.id);
    println!("status    {}", e.status.as_str());
    println!("event     {}", e.event_id);
    println!(
        "observer  {} / webhook {} (#{})",
        e.observer, e.webhook, e.webhook_index
    );
    println!("created   {}", e.created_at);
    if let Some(finished) = &e.finished_at {
        println!("finished  {finished}");
    }
    if let Some(reason) = &d.reason {
        println!("reason    {reason}");
    }
    match &d.request {
        Some(r) => {
            println!("\n{} {}", r.method, r.url);
            for (name, value) in &r.headers {
                println!("{name}: {value}");
            }
            println!("\n{}", r.body);
        }
        None => println!("\n(no request yet: a plugin builds it at the first attempt)"),
    }
    println!("\nattempts:");
    if d.timeline.is_empty() {
        println!("  none yet");
    }
    for (n, step) in d.timeline.iter().enumerate() {
        let outcome = match (step.status, &step.error) {
            (Some(code), _) => format!("HTTP {code}"),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".into(),
        };
        println!(
            "  {:>2}. {}  {:>6} ms  {}",
            n + 1,
            step.at,
            step.duration_ms,
            outcome
        );
        if let (Some(_), Some(body)) = (step.status, step.error.as_ref().or(step.response.as_ref()))
        {
            println!("      {}", body.replace('\n', " "));
        }
    }
}
