//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/` and the
//! corpus replay test (`tests/it/fuzz_corpus.rs`), so CI replays exactly what
//! the fuzzer ran, without nightly.
//!
//! Not an API: each function takes arbitrary bytes and panics when an
//! invariant breaks, because a panic is how a fuzzer reports a finding. The
//! stages they drive must never panic on any input; the assertions here add
//! what "correct" means beyond "did not crash":
//!
//! - [`condition`]: a syntax error points inside the text; `!(c)` evaluates
//!   to the negation of `c`, and `(c) && (c)` to `c`.
//! - [`template`]: a template that is valid JSON around its holes renders
//!   valid JSON whose holes hold exactly the event's values, whatever the
//!   values contain (no injection); a body table always renders valid JSON.
//! - [`envelope`]: an accepted document has an entity and non-empty ids and
//!   survives the serde round trip of the outbox and the DLQ.
//! - [`signature`]: a header is never accepted, nor reported `Stale`, under a
//!   secret the input cannot know; whatever is accepted under the known
//!   secret is an authentic HMAC, recomputed here independently.
//! - [`config`]: a config that loads can be used: its conditions evaluate,
//!   its templates render, its retry delays stay within `max_delay`.
//!
//! Multi-part inputs are lines, so corpus files stay readable: the event's
//! row and old row as one-line JSON documents, then the text under test
//! (which may span lines).
//!
//! Here: the five targets, the events they use, and the envelope and retry
//! checks; `templates` and `signatures` hold the longer checks of theirs.
//! Built only with the `fuzzing` feature (fuzz/ and this crate's tests).

mod signatures;
mod templates;

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::delivery::retry::RetryPolicy;
use crate::event::{Envelope, Event, Operation};
use crate::incoming::scheme::{self, Rejection, Scheme};
use crate::observer::condition::Condition;
use crate::observer::Rule;
use crate::payload::BodySpec;
use crate::source::{envelope as envelopes, http};
use signatures::{
    authentic, generic_scheme, random_secret, signed_content, signed_time, KNOWN_SECRET,
    KNOWN_STANDARD_KEY, NOW,
};
use templates::{assert_json, check_json_template, check_text_template};

/// Condition parser and evaluator. Input: `row\nold\ncondition`, or only a
/// condition (evaluated against a sample order).
pub fn condition(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (event, source) = event_and_text(&text);
    let parsed = match Condition::parse(source) {
        Ok(parsed) => parsed,
        Err(error) => {
            let columns = source.chars().count() + 1;
            assert!(
                (1..=columns).contains(&error.column),
                "error column {} outside 1..={columns}: {error}",
                error.column
            );
            return;
        }
    };
    assert_eq!(parsed.source(), source);
    let selected = parsed.eval(&event);
    assert_eq!(
        parsed.eval(&event),
        selected,
        "evaluation is not repeatable"
    );
    // Wrapping adds two levels of nesting, so a condition at the depth limit
    // may no longer parse; every other one must, and mean the opposite.
    if let Ok(negated) = Condition::parse(&format!("!({source})")) {
        assert_eq!(negated.eval(&event), !selected, "!({source})");
    }
    if let Ok(doubled) = Condition::parse(&format!("({source}) && ({source})")) {
        assert_eq!(doubled.eval(&event), selected, "({source}) && ({source})");
    }
}

/// Template parser and renderer. Input: `row\nold\ntemplate`, or only a
/// template. The text is compiled as a `body_template` and a header value,
/// and, as a JSON value, as a `body` table; a body table is also tried with
/// the text as its only leaf.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (event, source) = event_and_text(&text);
    check_text_template(&event, source);
    let mut tables = vec![
        Value::String(source.to_owned()),
        Value::Object(Map::from_iter([(
            "v".to_owned(),
            Value::String(source.to_owned()),
        )])),
    ];
    if let Ok(value) = serde_json::from_str::<Value>(source) {
        tables.push(value);
    }
    for table in &tables {
        check_json_template(&event, table);
    }
}

/// Envelope detection and parsing, on a body as `POST /events` receives it
/// (one document, an array or NDJSON) and on a bus message (one document or
/// an array).
pub fn envelope(data: &[u8]) {
    match http::documents(data) {
        Ok(documents) => {
            for document in documents {
                check_envelope(document);
            }
        }
        Err(error) => assert!(!error.0.is_empty()),
    }
    if let Ok(message) = serde_json::from_slice::<Value>(data) {
        match message {
            Value::Array(items) => items.into_iter().for_each(check_envelope),
            document => check_envelope(document),
        }
    }
}

/// Incoming signature verification. Input: one selector byte (the low
/// seven bits pick the scheme, the high bit an unlimited tolerance), then
/// `signature\nid\ntimestamp\nbody` (the body may span lines). The
/// signature goes to `X-Hub-Signature-256`, `Stripe-Signature`,
/// `webhook-signature` or a generic scheme's header, by the selector.
pub fn signature(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |&byte| byte == b'\n');
    let mut header = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (signature, id, timestamp) = (header(), header(), header());
    let body = parts.next().unwrap_or_default();

    let tolerance = if selector & 0x80 == 0 {
        scheme::DEFAULT_TOLERANCE_SECONDS
    } else {
        u64::MAX
    };
    let (scheme, signature_header, known): (Scheme, &str, &[u8]) = match (selector & 0x7f) % 5 {
        0 => (Scheme::Github, "X-Hub-Signature-256", KNOWN_SECRET),
        1 => (
            Scheme::Stripe {
                tolerance_seconds: tolerance,
            },
            "Stripe-Signature",
            KNOWN_SECRET,
        ),
        2 => (
            Scheme::StandardWebhooks {
                tolerance_seconds: tolerance,
            },
            "webhook-signature",
            KNOWN_STANDARD_KEY,
        ),
        3 => (
            Scheme::Hmac(generic_scheme(true, tolerance)),
            "X-Signature",
            KNOWN_SECRET,
        ),
        _ => (
            Scheme::Hmac(generic_scheme(false, tolerance)),
            "X-Signature",
            KNOWN_SECRET,
        ),
    };
    let headers = vec![
        (signature_header.to_owned(), signature.clone()),
        ("webhook-id".to_owned(), id.clone()),
        ("webhook-timestamp".to_owned(), timestamp.clone()),
        ("X-Timestamp".to_owned(), timestamp.clone()),
    ];

    let unknown = random_secret();
    for secrets in [&[unknown][..], &[], &[b""]] {
        let verdict = scheme::verify(&scheme, &headers, body, secrets, NOW);
        assert!(
            !matches!(verdict, Ok(()) | Err(Rejection::Stale)),
            "{verdict:?} with secrets the input cannot know ({scheme:?}, {headers:?})"
        );
    }
    let verdict = scheme::verify(&scheme, &headers, body, &[known], NOW);
    // Rotation: an extra secret that matches nothing changes nothing.
    assert_eq!(
        scheme::verify(&scheme, &headers, body, &[unknown, known], NOW),
        verdict
    );
    if matches!(verdict, Ok(()) | Err(Rejection::Stale)) {
        let content = signed_content(&scheme, &id, &timestamp, body);
        assert!(
            authentic(&scheme, &signature, known, &content),
            "{verdict:?} for a signature that is not the HMAC ({scheme:?}, {headers:?})"
        );
    }
    if verdict == Err(Rejection::Stale) {
        // Stale is only ever said of an authentic request: at its own time
        // it is accepted.
        let at = signed_time(&scheme, &signature, &timestamp)
            .unwrap_or_else(|| panic!("Stale without a timestamp ({scheme:?}, {headers:?})"));
        assert_eq!(
            scheme::verify(&scheme, &headers, body, &[known], at),
            Ok(())
        );
    }
}

/// The config loader, with no environment variables set. A config that
/// loads is then used: conditions evaluated, templates rendered, retry
/// delays computed, for a sample order.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_toml(text, Path::new("fuzz.toml"), &|_| None) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    check_retry(&config.retry);
    let event = sample_event();
    for observer in &config.observers {
        check_retry(&observer.retry);
        if let Some(Rule::Expr(condition)) = &observer.condition {
            condition.eval(&event);
        }
        for webhook in &observer.webhooks {
            if let Some(Rule::Expr(condition)) = &webhook.condition {
                condition.eval(&event);
            }
            for (_, value) in &webhook.request.headers {
                value.render_plain(&event);
            }
            let mut body = Vec::new();
            match &webhook.request.body {
                BodySpec::Entity => {}
                BodySpec::Json(template) => {
                    template.render(&event, &mut body);
                    assert_json(&body);
                }
                BodySpec::Text(template) => template.render_json(&event, &mut body),
                BodySpec::Hasura { .. } | BodySpec::Fraiseql => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// Splits `row\nold\ntext`; with fewer than two newlines the whole input is
/// the text and the event is [`sample_event`]. A row that is an envelope is
/// parsed as one, so the entity, operation and ids can be fuzzed too.
fn event_and_text(text: &str) -> (Event, &str) {
    let mut parts = text.splitn(3, '\n');
    let (Some(row), Some(old), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return (sample_event(), text);
    };
    let row: Value = serde_json::from_str(row).unwrap_or(Value::Null);
    let old: Option<Value> = serde_json::from_str(old).ok();
    if let Ok(mut event) = envelopes::parse_keyed(row.clone(), "fuzz", Some("fuzz-1".into())) {
        if old.is_some() {
            event.old = old;
        }
        return (event, rest);
    }
    let mut event = sample_event();
    event.entity_id = row.get("id").map(|id| match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    event.data = row;
    event.old = old;
    (event, rest)
}

/// An UPDATE of an order, with a value of every JSON type and one written to
/// break out of a JSON string.
fn sample_event() -> Event {
    let old = serde_json::json!({"id": "ord-1", "status": "paid", "total": 1500, "tags": ["a"]});
    let new = serde_json::json!({
        "id": "ord-1", "status": "shipped", "total": 1500.5, "paid": true, "note": null,
        "tags": ["a", "b"], "customer": {"email": "ann@example.com", "country": "DE"},
        "evil": "\"}, {{ _json }} \\ \u{0}\n</script>",
    });
    Event {
        id: "evt-1".into(),
        entity: "Order".into(),
        operation: Operation::Update,
        entity_id: Some("ord-1".into()),
        timestamp: "2026-03-02T14:00:00Z".into(),
        envelope: Envelope::Fraiseql,
        source: "fuzz".into(),
        data: new,
        old: Some(old),
        meta: Default::default(),
    }
}

fn check_envelope(document: Value) {
    match envelopes::parse_keyed(document, "fuzz", Some("fuzz-fallback".into())) {
        Ok(event) => {
            assert!(!event.entity.trim().is_empty(), "empty entity: {event:?}");
            assert!(!event.id.is_empty(), "empty event id: {event:?}");
            assert!(
                event.entity_id.as_ref().is_none_or(|id| !id.is_empty()),
                "empty entity id: {event:?}"
            );
            // Events are stored with serde (the DLQ keeps them); what comes
            // back must be the same event.
            let stored = serde_json::to_vec(&event).unwrap_or_else(|e| panic!("{e}: {event:?}"));
            let loaded: Event =
                serde_json::from_slice(&stored).unwrap_or_else(|e| panic!("{e}: {event:?}"));
            let as_value = |event: &Event| {
                serde_json::to_value(event).unwrap_or_else(|e| panic!("{e}: {event:?}"))
            };
            assert!(
                as_value(&loaded) == as_value(&event),
                "{loaded:?} != {event:?}"
            );
        }
        Err(error) => assert!(!error.0.is_empty()),
    }
}

// ---------------------------------------------------------------------------
// Retry policies
// ---------------------------------------------------------------------------

/// Delays never exceed `max_delay` and never shrink as attempts grow.
fn check_retry(policy: &RetryPolicy) {
    let last = policy.max_attempts.clamp(1, 200);
    let mut previous = std::time::Duration::ZERO;
    for attempt in (1..=last).chain([u32::MAX]) {
        let delay = policy.delay_after(attempt);
        assert!(
            delay <= policy.max_delay,
            "{delay:?} after {attempt}: {policy:?}"
        );
        assert!(
            delay >= previous,
            "{delay:?} after {attempt} < {previous:?}: {policy:?}"
        );
        previous = delay;
        for draw in [0.0, 0.5, 0.999_999] {
            let jittered = policy.jittered(attempt, draw);
            assert!(jittered <= policy.max_delay, "{jittered:?}: {policy:?}");
        }
    }
}
