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

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha512};

use crate::config::Config;
use crate::delivery::retry::RetryPolicy;
use crate::event::{Envelope, Event, Operation};
use crate::incoming::scheme::{
    self, Encoding, HmacAlgorithm, HmacScheme, Rejection, Scheme, SignatureFormat,
};
use crate::observer::condition::Condition;
use crate::observer::Rule;
use crate::payload::template::{JsonTemplate, TextTemplate};
use crate::payload::BodySpec;
use crate::source::{envelope as envelopes, http};

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
// Templates
// ---------------------------------------------------------------------------

fn check_text_template(event: &Event, source: &str) {
    let template = match TextTemplate::parse(source) {
        Ok(template) => template,
        Err(error) => {
            assert!(
                source.contains("{{"),
                "rejected without a placeholder: {error}"
            );
            return;
        }
    };
    let plain = template.render_plain(event);
    let mut json = Vec::new();
    template.render_json(event, &mut json);
    if !source.contains("{{") {
        assert!(template.is_literal());
        assert_eq!(plain, source);
        assert_eq!(json, source.as_bytes());
        return;
    }
    // The expected body: the template with each hole replaced by a marker
    // must be JSON; then the output must be that JSON with the markers
    // replaced by the event's values. Markers are `\u0000`-delimited, so a
    // template that writes `\u0000` itself is left out.
    if source.contains("u0000") || source.contains('\0') {
        return;
    }
    let Some((skeleton, holes)) = skeleton(source) else {
        return;
    };
    let Ok(skeleton) = serde_json::from_str::<Value>(&skeleton) else {
        return;
    };
    let values = HoleValues::new(event, &holes);
    let Some(expected) = values.substitute(&skeleton) else {
        return;
    };
    let rendered: Value = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "invalid JSON ({e}) from a template that is JSON around its holes: {source:?} -> {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert!(
        rendered == expected,
        "{source:?}: rendered {rendered}, expected {expected}"
    );
}

fn check_json_template(event: &Event, table: &Value) {
    let template = match JsonTemplate::parse(table) {
        Ok(template) => template,
        Err(error) => {
            assert!(
                table.to_string().contains("{{"),
                "rejected without a placeholder: {error}"
            );
            return;
        }
    };
    let mut body = Vec::new();
    template.render(event, &mut body);
    let rendered = assert_json(&body);
    let expected = expected_table(event, table);
    assert!(
        rendered == expected,
        "{table}: rendered {rendered}, expected {expected}"
    );
}

fn assert_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// What a body table must render as, computed leaf by leaf from the spec: a
/// leaf that is one placeholder (spaces around allowed) is that value, any
/// other leaf a string with each placeholder's text in place.
fn expected_table(event: &Event, table: &Value) -> Value {
    match table {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), expected_table(event, value)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| expected_table(event, v)).collect())
        }
        Value::String(leaf) => {
            let pieces = split_placeholders(leaf);
            let holes: Vec<&str> = pieces.iter().filter_map(Piece::hole).collect();
            let only_spaces = pieces
                .iter()
                .all(|piece| !matches!(piece, Piece::Text(text) if !text.trim().is_empty()));
            if let ([name], true) = (holes.as_slice(), only_spaces) {
                return hole_value(event, name);
            }
            let mut text = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Text(literal) => text.push_str(literal),
                    Piece::Hole(name) => text.push_str(&hole_text(event, name)),
                }
            }
            Value::String(text)
        }
        other => other.clone(),
    }
}

enum Piece<'a> {
    Text(&'a str),
    Hole(&'a str),
}

impl<'a> Piece<'a> {
    fn hole(&self) -> Option<&'a str> {
        match self {
            Piece::Hole(name) => Some(name),
            Piece::Text(_) => None,
        }
    }
}

/// `{{` to the next `}}`, as the spec reads placeholders; only called on
/// text the template parser accepted.
fn split_placeholders(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        pieces.push(Piece::Hole(rest[open + 2..open + 2 + close].trim()));
        rest = &rest[open + 2 + close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

/// The template with every hole replaced, and the holes' names in order: a hole where a JSON value goes by
/// the string `"\u0000V<n>\u0000"`, a hole inside a JSON string by the
/// content `\u0000S<n>\u0000`. Whether a hole is inside a string follows the
/// double quotes of the template text (`\"` does not close a string), and a
/// backslash right before a hole is a literal backslash.
fn skeleton(source: &str) -> Option<(String, Vec<&str>)> {
    let mut out = String::with_capacity(source.len() + 16);
    let mut holes = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for piece in split_placeholders(source) {
        match piece {
            Piece::Text(text) => {
                for c in text.chars() {
                    if !in_string {
                        in_string = c == '"';
                    } else if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_string = false;
                    }
                }
                out.push_str(text);
            }
            Piece::Hole(name) => {
                let n = holes.len();
                if !in_string {
                    out.push_str(&format!("\"\\u0000V{n}\\u0000\""));
                } else {
                    if escaped {
                        out.push('\\');
                        escaped = false;
                    }
                    out.push_str(&format!("\\u0000S{n}\\u0000"));
                }
                holes.push(name);
            }
        }
    }
    (!holes.is_empty()).then_some((out, holes))
}

/// Each hole's value as a JSON value and as string content, rendered one
/// hole at a time.
struct HoleValues {
    values: Vec<Value>,
    texts: Vec<String>,
}

impl HoleValues {
    fn new(event: &Event, holes: &[&str]) -> HoleValues {
        HoleValues {
            values: holes.iter().map(|name| hole_value(event, name)).collect(),
            texts: holes.iter().map(|name| hole_text(event, name)).collect(),
        }
    }

    /// The skeleton with its markers replaced; `None` when a value marker
    /// sits where the template cannot promise JSON (an object key).
    fn substitute(&self, skeleton: &Value) -> Option<Value> {
        Some(match skeleton {
            Value::String(text) => match marker(text) {
                Some(('V', n)) => self.values.get(n)?.clone(),
                _ => Value::String(self.replace(text)?),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.substitute(item))
                    .collect::<Option<_>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, value) in map {
                    out.insert(self.replace(key)?, self.substitute(value)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// String content with its `S` markers replaced; `None` if it holds a
    /// `V` marker.
    fn replace(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('\0') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('\0')?;
            let (kind, n) = marker(&rest[start..start + end + 2])?;
            if kind != 'S' {
                return None;
            }
            out.push_str(self.texts.get(n)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// `\0V3\0` -> `('V', 3)`.
fn marker(text: &str) -> Option<(char, usize)> {
    let inner = text.strip_prefix('\0')?.strip_suffix('\0')?;
    let mut chars = inner.chars();
    let kind = chars.next()?;
    Some((kind, chars.as_str().parse().ok()?))
}

/// A placeholder rendered alone as a JSON value, which must be JSON.
fn hole_value(event: &Event, name: &str) -> Value {
    let template = TextTemplate::parse(&format!("{{{{{name}}}}}"))
        .unwrap_or_else(|e| panic!("{name:?} was accepted in a template but not alone: {e}"));
    let mut out = Vec::new();
    template.render_json(event, &mut out);
    assert_json(&out)
}

/// A placeholder rendered alone inside a JSON string, which must stay one
/// string.
fn hole_text(event: &Event, name: &str) -> String {
    let template = TextTemplate::parse(&format!("\"{{{{{name}}}}}\""))
        .unwrap_or_else(|e| panic!("{name:?} was accepted in a template but not alone: {e}"));
    let mut out = Vec::new();
    template.render_json(event, &mut out);
    match assert_json(&out) {
        Value::String(text) => text,
        other => panic!("{name:?} inside a string rendered {other}"),
    }
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

/// The secret the corpus signs with, so accepted requests are reached too.
const KNOWN_SECRET: &[u8] = b"fuzz-known-secret";
/// The decoded Standard Webhooks key of `whsec_ZnV6ei1rbm93bi1zZWNyZXQtMjRieXRl`.
const KNOWN_STANDARD_KEY: &[u8] = b"fuzz-known-secret-24byte";
/// The verifier's clock; the corpus's timestamps sit around it.
const NOW: u64 = 1_700_000_000;

/// A secret drawn once per process: no input can carry its HMAC.
fn random_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        getrandom::fill(&mut secret).unwrap_or_else(|e| panic!("no randomness: {e}"));
        secret
    })
}

/// `3`: `sha256={signature}` in hex with `X-Timestamp`; otherwise bare
/// base64 HMAC-SHA512 of the body.
fn generic_scheme(timestamped: bool, tolerance: u64) -> HmacScheme {
    let mut generic = HmacScheme::new("X-Signature");
    generic.tolerance_seconds = tolerance;
    if timestamped {
        generic.timestamp_header = Some("X-Timestamp".into());
        generic.signature_format = SignatureFormat::parse("sha256={signature}")
            .unwrap_or_else(|e| panic!("a constant format: {e}"));
    } else {
        generic.algorithm = HmacAlgorithm::Sha512;
        generic.encoding = Encoding::Base64;
    }
    generic
}

/// What the sender signed, per scheme, except Stripe's timestamp, which
/// sits in the signature header (see [`authentic`]).
fn signed_content(scheme: &Scheme, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let (id, timestamp) = (id.trim(), timestamp.trim());
    match scheme {
        Scheme::StandardWebhooks { .. } => {
            [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat()
        }
        Scheme::Hmac(HmacScheme {
            timestamp_header: Some(_),
            ..
        }) => [timestamp.as_bytes(), b".", body].concat(),
        _ => body.to_vec(),
    }
}

/// Whether `header` carries the HMAC of `content` under `secret`, checked
/// with plain string comparisons rather than the verifier's parsing.
fn authentic(scheme: &Scheme, header: &str, secret: &[u8], content: &[u8]) -> bool {
    let header = header.trim();
    let hex_sha256 = |content: &[u8]| hex::encode(mac::<Hmac<Sha256>>(secret, content));
    match scheme {
        Scheme::Github => header.eq_ignore_ascii_case(&format!("sha256={}", hex_sha256(content))),
        Scheme::Stripe { .. } | Scheme::FraiseqlV2 { .. } => {
            let items: Vec<(&str, &str)> = header
                .split(',')
                .filter_map(|item| item.split_once('='))
                .map(|(key, value)| (key.trim(), value.trim()))
                .collect();
            items.iter().filter(|(key, _)| *key == "t").any(|(_, t)| {
                let expected = hex_sha256(&[t.as_bytes(), b".", content].concat());
                items
                    .iter()
                    .any(|(key, v1)| *key == "v1" && v1.eq_ignore_ascii_case(&expected))
            })
        }
        Scheme::StandardWebhooks { .. } => {
            let expected = format!("v1,{}", BASE64.encode(mac::<Hmac<Sha256>>(secret, content)));
            header.split_whitespace().any(|entry| entry == expected)
        }
        Scheme::Hmac(HmacScheme {
            timestamp_header: Some(_),
            ..
        }) => header.eq_ignore_ascii_case(&format!("sha256={}", hex_sha256(content))),
        Scheme::Hmac(_) => header == BASE64.encode(mac::<Hmac<Sha512>>(secret, content)),
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

/// The unix time a request says it was signed at.
fn signed_time(scheme: &Scheme, header: &str, timestamp: &str) -> Option<u64> {
    let text = match scheme {
        Scheme::Stripe { .. } | Scheme::FraiseqlV2 { .. } => header
            .split(',')
            .filter_map(|item| item.split_once('='))
            .find(|(key, _)| key.trim() == "t")?
            .1
            .trim(),
        _ => timestamp.trim(),
    };
    text.parse().ok()
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
