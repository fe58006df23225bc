//! `wasmhook dry-run`: one event through the stages a real run takes it
//! through, up to the wire (envelope, observers, payload with its plugins,
//! the signed request), and the requests printed. Nothing is sent, the
//! storage is never opened, and the ids and signatures are made as a real
//! first attempt makes them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::clock::{new_id, now_ms};
use crate::config::Config;
use crate::delivery::{Sender, SignedRequest};
use crate::event::Event;
use crate::observer::{self, Match, Skip, Skipped};
use crate::payload::{self, BuildError};
use crate::source::{envelope, http};
use crate::store::redact;

/// `wasmhook dry-run`'s own flags.
#[derive(Debug, clap::Args)]
pub(super) struct DryRunArgs {
    /// The event: one JSON object in any envelope `POST /events` accepts
    /// (FraiseQL, Hasura, native), read as that endpoint reads it; `-`
    /// reads stdin. An event without an id or timestamp gets fresh ones.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Print one JSON document, with each body in base64 too, for scripts.
    #[arg(long)]
    json: bool,
    /// Show credentials (headers such as Authorization, URL passwords and
    /// tokens) instead of `***`.
    #[arg(long)]
    show_secrets: bool,
}

/// What the event would become.
#[derive(Debug, Serialize)]
struct Report {
    event: EventView,
    /// One per matched webhook whose request could be built, in the order
    /// a real run stores them.
    requests: Vec<RequestView>,
    /// Matched webhooks whose delivery would go straight to the DLQ.
    dead: Vec<DeadView>,
    /// Observers and webhooks that leave the event alone.
    skipped: Vec<SkippedView>,
}

#[derive(Debug, Serialize)]
struct EventView {
    id: String,
    entity: String,
    operation: String,
    entity_id: Option<String>,
    envelope: crate::event::Envelope,
}

#[derive(Debug, Serialize)]
struct RequestView {
    observer: String,
    webhook: String,
    method: String,
    url: String,
    /// `[name, value]` pairs in the order they are set; names lower case.
    headers: Vec<(String, String)>,
    /// The names of the headers that change with every attempt: the
    /// delivery id (one per delivery) and the signature's.
    per_attempt: Vec<String>,
    /// The body as text, when it is UTF-8.
    body: Option<String>,
    body_base64: String,
}

#[derive(Debug, Serialize)]
struct DeadView {
    observer: String,
    webhook: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct SkippedView {
    observer: String,
    /// `None` when the whole observer leaves the event alone.
    webhook: Option<String>,
    /// `entity`, `operation`, `condition` or `webhook-condition`.
    reason: &'static str,
    /// The same, in words.
    detail: String,
}

/// Runs the dry run. Exit status: 0 when every matched webhook's request
/// could be built (or nothing matches), 2 when one would go to the DLQ.
pub(super) fn execute(config: &Config, args: &DryRunArgs) -> Result<ExitCode> {
    let event = read_event(&args.event)?;
    // Loaded as `check` and `run` load them, but the compile cache is
    // used only where it already is: by default it lives under the
    // storage's folder, which a dry run does not create.
    let cache = &config.plugins.cache_dir;
    let plugins = crate::load_plugins_cached(
        config,
        cache.is_dir().then(|| cache.clone()),
        crate::metrics::Metrics::default(),
    )?;
    let sender = Sender::new(&config.http, config.signer.clone())?;
    let (matched, skipped) = observer::explain(&config.observers, &event, &plugins);
    let mut report = Report {
        event: EventView {
            id: event.id.clone(),
            entity: event.entity.clone(),
            operation: event.operation.to_string(),
            entity_id: event.entity_id.clone(),
            envelope: event.envelope,
        },
        requests: Vec::new(),
        dead: Vec::new(),
        skipped: skipped.iter().map(|s| skipped_view(s, &event)).collect(),
    };
    for m in &matched {
        match request(&sender, m, &event, &plugins) {
            Ok(signed) => report
                .requests
                .push(request_view(m, &signed, args.show_secrets)),
            Err(reason) => report.dead.push(DeadView {
                observer: m.observer.name.clone(),
                webhook: m.webhook.name.clone(),
                reason,
            }),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    Ok(if report.dead.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Reads the event file as `POST /events` reads a body, requiring one
/// event.
fn read_event(path: &Path) -> Result<Event> {
    let (bytes, name) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the event from stdin")?;
        (bytes, "stdin".to_string())
    } else {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the event file {}", path.display()))?;
        (bytes, path.display().to_string())
    };
    let mut documents = http::documents(&bytes).map_err(|e| anyhow!("{name}: {e}"))?;
    if documents.len() != 1 {
        bail!(
            "{name}: holds {} events; dry-run takes one",
            documents.len()
        );
    }
    let document = documents.pop().unwrap_or_default();
    envelope::parse(document, "http").map_err(|e| anyhow!("{name}: {e}"))
}

/// The request a matched webhook's first attempt would send, or why its
/// delivery would go to the DLQ instead. The same calls as acceptance
/// (`payload::build`) and the attempt (`Sender::prepare`); a request a
/// plugin builds is built here at once rather than at its first attempt.
fn request(
    sender: &Sender,
    m: &Match<'_>,
    event: &Event,
    plugins: &crate::plugin::Plugins,
) -> Result<SignedRequest, String> {
    if let Some(failed) = &m.failed {
        return Err(BuildError::Plugin(failed.clone()).to_string());
    }
    let payload = payload::build(m, event, plugins).map_err(|e| e.to_string())?;
    sender
        .prepare(
            &new_id(),
            &event.id,
            &payload,
            Some(m.webhook),
            now_ms() / 1000,
        )
        .map_err(|e| e.to_string())
}

fn request_view(m: &Match<'_>, signed: &SignedRequest, show_secrets: bool) -> RequestView {
    use base64::Engine;
    let shown = |name: &str, value: &str| {
        // As `dlq show` hides them, but for the signature: it is made to
        // be sent and gives no key away.
        let signature = signed.signature.iter().any(|s| s.as_str() == name);
        if show_secrets || signature || !redact::sensitive(name) {
            value.to_string()
        } else {
            redact::HIDDEN.to_string()
        }
    };
    let headers = signed
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            (name.to_string(), shown(name.as_str(), &value))
        })
        .collect();
    let url = signed.url.to_string();
    let mut per_attempt = vec![crate::delivery::DELIVERY_HEADER.to_ascii_lowercase()];
    per_attempt.extend(signed.signature.iter().map(|n| n.to_string()));
    RequestView {
        observer: m.observer.name.clone(),
        webhook: m.webhook.name.clone(),
        method: signed.method.to_string(),
        url: if show_secrets { url } else { redact::url(&url) },
        headers,
        per_attempt,
        body: std::str::from_utf8(&signed.body).ok().map(str::to_string),
        body_base64: base64::engine::general_purpose::STANDARD.encode(&signed.body),
    }
}

fn skipped_view(skipped: &Skipped<'_>, event: &Event) -> SkippedView {
    let o = skipped.observer;
    let rule = |rule: Option<&observer::Rule>| rule.map(|r| r.source()).unwrap_or_default();
    let webhook = skipped.webhook.and_then(|i| o.webhooks.get(i));
    let (reason, detail) = match skipped.reason {
        Skip::Entity => (
            "entity",
            format!("the event is about {}, not {}", event.entity, o.entity),
        ),
        Skip::Operation => (
            "operation",
            format!(
                "its operation is {}, not {}",
                event.operation,
                o.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ),
        Skip::Condition => (
            "condition",
            format!("condition false: {}", rule(o.condition.as_ref())),
        ),
        Skip::WebhookCondition => (
            "webhook-condition",
            format!(
                "webhook condition false: {}",
                rule(webhook.and_then(|w| w.condition.as_ref()))
            ),
        ),
    };
    SkippedView {
        observer: o.name.clone(),
        webhook: webhook.map(|w| w.name.clone()),
        reason,
        detail,
    }
}

/// The report for people.
fn describe(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let e = &report.event;
    // The envelope's name as the JSON output spells it.
    let envelope = serde_json::to_value(e.envelope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "event {} ({} {}{}, {envelope} envelope)",
        e.id,
        e.entity,
        e.operation,
        e.entity_id
            .as_deref()
            .map(|id| format!(" {id}"))
            .unwrap_or_default(),
    );
    if report.requests.is_empty() && report.dead.is_empty() {
        let _ = writeln!(out, "no observer matches this event: nothing would be sent");
    }
    for r in &report.requests {
        let _ = writeln!(out, "\n{} / webhook {}: would send", r.observer, r.webhook);
        let _ = writeln!(out, "  {} {}", r.method, r.url);
        for (name, value) in &r.headers {
            let _ = writeln!(out, "  {name}: {value}");
        }
        let body = match &r.body {
            Some(text) => text.clone(),
            None => format!("base64:{}", r.body_base64),
        };
        let _ = writeln!(out, "\n  {body}");
    }
    for d in &report.dead {
        let _ = writeln!(
            out,
            "\n{} / webhook {}: would go to the DLQ: {}",
            d.observer, d.webhook, d.reason
        );
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(out, "\nnot matched:");
        for s in &report.skipped {
            let who = match &s.webhook {
                Some(w) => format!("{} / webhook {w}", s.observer),
                None => s.observer.clone(),
            };
            let _ = writeln!(out, "  {who}: {}", s.detail);
        }
    }
    if !report.requests.is_empty() {
        let _ = write!(
            out,
            "\n({} and the signature change with every attempt; the HTTP client adds \
             host, content-length and accept",
            crate::delivery::DELIVERY_HEADER.to_ascii_lowercase()
        );
        let hidden = report.requests.iter().any(|r| {
            r.url.contains(redact::HIDDEN) || r.headers.iter().any(|(_, v)| v == redact::HIDDEN)
        });
        if hidden {
            let _ = write!(out, "; {}: hidden, --show-secrets shows it", redact::HIDDEN);
        }
        let _ = writeln!(out, ")");
    }
    out
}
