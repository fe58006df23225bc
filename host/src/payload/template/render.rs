//! Rendering: an event written through a compiled template's parts, into
//! a `Vec<u8>`, with no re-parsing and no intermediate `Value` for the body.

use serde_json::Value;

use super::escape::{escape_into, write_json, write_json_string, EscapingWriter};
use super::{Mode, Part, Source, Var};
use crate::event::Event;

/// Bytes reserved per part on top of the literal text, to make one
/// allocation the common case for small bodies.
const HOLE_SIZE_HINT: usize = 16;

/// What `_old` renders as when the event has no previous row.
static NULL: Value = Value::Null;

/// Appends the JSON rendering of `parts` for `event` to `out`.
pub(super) fn json(parts: &[Part], literal_len: usize, event: &Event, out: &mut Vec<u8>) {
    out.reserve(literal_len + HOLE_SIZE_HINT * parts.len());
    render_json_parts(parts, event, out);
}

/// The plain rendering of `parts` for `event` (headers, URLs).
pub(super) fn plain(parts: &[Part], literal_len: usize, event: &Event) -> String {
    let mut out = Vec::with_capacity(literal_len + HOLE_SIZE_HINT * parts.len());
    for part in parts {
        match part {
            Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Part::Hole { source, .. } => write_plain(&mut out, &resolve(source, event)),
        }
    }
    // Every piece written is a whole `str` or serde_json output, so this
    // never falls back; the lossy path only avoids a panic path.
    String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// The URL rendering of `parts` for `event`: the literal text as written,
/// each hole's plain rendering percent-encoded so that a value cannot add
/// a path segment, a query parameter or a fragment.
pub(super) fn url(parts: &[Part], literal_len: usize, event: &Event) -> String {
    let mut out = String::with_capacity(literal_len + HOLE_SIZE_HINT * parts.len());
    let mut value = Vec::new();
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Hole { source, .. } => {
                value.clear();
                write_plain(&mut value, &resolve(source, event));
                out.extend(percent_encoding::percent_encode(
                    &value,
                    super::URL_COMPONENT,
                ));
            }
        }
    }
    out
}

/// A hole's value for one event, borrowed where the event already holds it.
enum Resolved<'a> {
    Missing,
    Str(&'a str),
    Json(&'a Value),
    Owned(Value),
}

fn resolve<'a>(source: &Source, event: &'a Event) -> Resolved<'a> {
    let var = match source {
        Source::Field(path) => {
            return match crate::event::lookup(&event.data, path) {
                Some(value) => Resolved::Json(value),
                None => Resolved::Missing,
            }
        }
        Source::Meta(path) => {
            return match event.meta_field(path) {
                Some(value) => Resolved::Json(value),
                None => Resolved::Missing,
            }
        }
        Source::Var(var) => var,
    };
    match var {
        Var::Id => match (&event.entity_id, event.field("id")) {
            (Some(id), _) => Resolved::Str(id),
            (None, Some(value)) => Resolved::Json(value),
            (None, None) => Resolved::Missing,
        },
        Var::EventId => Resolved::Str(&event.id),
        Var::Timestamp => Resolved::Str(&event.timestamp),
        Var::Operation => Resolved::Str(event.operation.as_str()),
        Var::Entity => Resolved::Str(&event.entity),
        Var::Json => Resolved::Json(&event.data),
        Var::Old => Resolved::Json(event.old.as_ref().unwrap_or(&NULL)),
        Var::Changed => Resolved::Owned(Value::Object(event.changed())),
    }
}

fn render_json_parts(parts: &[Part], event: &Event, out: &mut Vec<u8>) {
    for part in parts {
        match part {
            Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Part::Hole { source, mode } => {
                let value = resolve(source, event);
                match mode {
                    Mode::Value => write_value(out, &value),
                    Mode::InString => write_in_string(out, &value),
                    Mode::InStringAfterBackslash => {
                        out.push(b'\\');
                        write_in_string(out, &value);
                    }
                }
            }
        }
    }
}

/// Mode 1: the value as compact JSON, `null` when missing.
fn write_value(out: &mut Vec<u8>, value: &Resolved<'_>) {
    match value {
        Resolved::Missing => out.extend_from_slice(b"null"),
        Resolved::Str(text) => write_json_string(out, text),
        Resolved::Json(value) => write_json(out, value),
        Resolved::Owned(value) => write_json(out, value),
    }
}

/// Mode 2: escaped JSON string content, without quotes; nothing when missing.
fn write_in_string(out: &mut Vec<u8>, value: &Resolved<'_>) {
    let value = match value {
        Resolved::Missing => return,
        Resolved::Str(text) => return escape_into(out, text.as_bytes()),
        Resolved::Json(value) => *value,
        Resolved::Owned(value) => value,
    };
    match value {
        Value::String(text) => escape_into(out, text.as_bytes()),
        // Their JSON text never holds `"`, `\` or control characters.
        Value::Null | Value::Bool(_) | Value::Number(_) => write_json(out, value),
        Value::Array(_) | Value::Object(_) => {
            // Serialising into a Vec cannot fail, and neither can a Value.
            let _ = serde_json::to_writer(EscapingWriter(out), value);
        }
    }
}

/// Mode 3: strings raw, other values as compact JSON, nothing when missing.
fn write_plain(out: &mut Vec<u8>, value: &Resolved<'_>) {
    let value = match value {
        Resolved::Missing => return,
        Resolved::Str(text) => return out.extend_from_slice(text.as_bytes()),
        Resolved::Json(value) => *value,
        Resolved::Owned(value) => value,
    };
    match value {
        Value::String(text) => out.extend_from_slice(text.as_bytes()),
        other => write_json(out, other),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::test_support::order_update;
    use crate::event::{Event, Operation};
    use crate::payload::template::{JsonTemplate, TextTemplate};
    use serde_json::{json, Value};

    /// An UPDATE of an order with nested objects, arrays and every scalar.
    fn order() -> Event {
        order_update(
            json!({"id": "ord-1", "status": "pending", "total": 42.5, "paid": false}),
            json!({
                "id": "ord-1",
                "status": "shipped",
                "total": 42.5,
                "paid": false,
                "note": null,
                "customer": {"email": "ann@example.com", "name": "Ann"},
                "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
            }),
        )
    }

    /// An INSERT: no previous row, and no `entity_id` so `_id` falls back to
    /// the row's numeric `id`.
    fn insert() -> Event {
        let mut event = order_update(json!({}), json!({"id": 7, "status": "new"}));
        event.operation = Operation::Insert;
        event.entity_id = None;
        event.old = None;
        event
    }

    /// A text written to break out of a JSON string or inject placeholders.
    const HOSTILE: &str = "He said \"hi\" \\ \"}, \"x\": 1\nline {{ _json }} </script>\u{1}";

    fn hostile() -> Event {
        order_update(json!({}), json!({"id": "h-1", "name": HOSTILE}))
    }

    /// Template text, the event it is rendered for, the expected output.
    type TextCase = (&'static str, fn() -> Event, &'static str);
    /// Body table, the event it is rendered for, the expected output.
    type TableCase = (Value, fn() -> Event, &'static str);

    fn check_json(cases: &[TextCase]) {
        for (template, event, expected) in cases {
            let compiled =
                TextTemplate::parse(template).unwrap_or_else(|err| panic!("{template}: {err}"));
            let mut out = Vec::new();
            compiled.render_json(&event(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), *expected, "{template}");
        }
    }

    fn check_plain(cases: &[TextCase]) {
        for (template, event, expected) in cases {
            let compiled =
                TextTemplate::parse(template).unwrap_or_else(|err| panic!("{template}: {err}"));
            assert_eq!(compiled.render_plain(&event()), *expected, "{template}");
        }
    }

    fn check_table(cases: &[TableCase]) {
        for (template, event, expected) in cases {
            let compiled =
                JsonTemplate::parse(template).unwrap_or_else(|err| panic!("{template}: {err}"));
            let mut out = Vec::new();
            compiled.render(&event(), &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, *expected, "{template}");
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|err| panic!("{template} gave invalid JSON {text}: {err}"));
        }
    }

    #[test]
    fn text_template_renders_json_by_context() {
        check_json(&[
            // Every variable, as a JSON value.
            ("{{_id}}", order, r#""ord-1""#),
            ("{{ _id }}", insert, "7"),
            ("{{_event_id}}", order, r#""evt-1""#),
            ("{{ _timestamp }}", order, r#""2026-03-02T14:00:00Z""#),
            ("{{_event}}", order, r#""UPDATE""#),
            ("{{_event}}", insert, r#""INSERT""#),
            ("{{_entity}}", order, r#""Order""#),
            ("{{_json}}", insert, r#"{"id":7,"status":"new"}"#),
            (
                "{{_old}}",
                order,
                r#"{"id":"ord-1","status":"pending","total":42.5,"paid":false}"#,
            ),
            ("{{_old}}", insert, "null"),
            (
                "{{_changed}}",
                order,
                r#"{"status":{"old":"pending","new":"shipped"},"customer":{"old":null,"new":{"email":"ann@example.com","name":"Ann"}},"items":{"old":null,"new":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":1}]}}"#,
            ),
            ("{{_changed}}", insert, "{}"),
            // Paths, scalars and missing fields as JSON values.
            (
                r#"{"e":{{customer.email}}}"#,
                order,
                r#"{"e":"ann@example.com"}"#,
            ),
            (
                r#"[{{items.1.sku}},{{items.0.qty}}]"#,
                order,
                r#"["B-2",2]"#,
            ),
            (
                r#"{"t":{{total}},"p":{{paid}},"n":{{note}},"m":{{nope.x}}}"#,
                order,
                r#"{"t":42.5,"p":false,"n":null,"m":null}"#,
            ),
            (
                "{{customer}}",
                order,
                r#"{"email":"ann@example.com","name":"Ann"}"#,
            ),
            // Inside a JSON string: escaped content, no quotes.
            (r#""{{_entity}}.{{_event}}""#, order, r#""Order.UPDATE""#),
            (
                r##""#{{ items.0.sku }} x{{items.0.qty}}""##,
                order,
                r##""#A-1 x2""##,
            ),
            (r#""[{{missing}}]""#, order, r#""[]""#),
            (
                r#""{{total}} {{paid}} {{note}}""#,
                order,
                r#""42.5 false null""#,
            ),
            (
                r#""{{customer}}""#,
                order,
                r#""{\"email\":\"ann@example.com\",\"name\":\"Ann\"}""#,
            ),
            (r#""{{_id}}""#, insert, r#""7""#),
            // `\"` inside a literal string does not end it; the hole stays in mode 2.
            (r#""say \"{{_entity}}\"""#, order, r#""say \"Order\"""#),
            // A backslash right before a hole is a literal backslash.
            (r#""C:\{{status}}""#, order, r#""C:\\shipped""#),
            // After the string closes, holes are values again.
            (r#"{"a":"x","b":{{total}}}"#, order, r#"{"a":"x","b":42.5}"#),
            // Literal-only templates pass through untouched.
            (r#"{"fixed": "{ }} }"}"#, order, r#"{"fixed": "{ }} }"}"#),
        ]);
    }

    #[test]
    fn text_template_renders_plain() {
        check_plain(&[
            (
                "{{_entity}}-{{_id}}-{{_timestamp}}",
                order,
                "Order-ord-1-2026-03-02T14:00:00Z",
            ),
            ("{{_entity}}-{{_id}}", insert, "Order-7"),
            ("Bearer {{ customer.name }}", order, "Bearer Ann"),
            (
                "/orders/{{id}}/items/{{items.1.sku}}",
                order,
                "/orders/ord-1/items/B-2",
            ),
            ("[{{missing}}]", order, "[]"),
            ("{{total}}|{{paid}}|{{note}}", order, "42.5|false|null"),
            (
                "{{customer}}",
                order,
                r#"{"email":"ann@example.com","name":"Ann"}"#,
            ),
            (
                "{{_event}} {{_event_id}} {{_old}}",
                insert,
                "INSERT evt-1 null",
            ),
            ("\"{{ status }}\"", order, "\"shipped\""),
            ("{{name}}", hostile, HOSTILE),
        ]);
    }

    #[test]
    fn json_template_keeps_types_and_escapes_text() {
        check_table(&[
            (
                json!({"order_id": "{{ id }}", "total": "{{ total }}", "at": "{{ _timestamp }}"}),
                order,
                r#"{"order_id":"ord-1","total":42.5,"at":"2026-03-02T14:00:00Z"}"#,
            ),
            (
                json!({"paid": " {{paid}} ", "note": "{{note}}", "gone": "{{nope}}"}),
                order,
                r#"{"paid":false,"note":null,"gone":null}"#,
            ),
            (
                json!({"who": {"email": "{{customer.email}}"}, "sku": ["{{items.0.sku}}", "{{items.1.qty}}"]}),
                order,
                r#"{"who":{"email":"ann@example.com"},"sku":["A-1",1]}"#,
            ),
            (
                json!({"customer": "{{customer}}", "changes": "{{_changed}}", "old": "{{_old}}"}),
                insert,
                r#"{"customer":null,"changes":{},"old":null}"#,
            ),
            (
                json!({"text": "{{_entity}} {{id}} costs {{total}}", "miss": "[{{nope}}]"}),
                order,
                r#"{"text":"Order ord-1 costs 42.5","miss":"[]"}"#,
            ),
            (
                json!({"c": "c={{customer}}", "f": "{{paid}}/{{note}}"}),
                order,
                r#"{"c":"c={\"email\":\"ann@example.com\",\"name\":\"Ann\"}","f":"false/null"}"#,
            ),
            (
                json!({"n": 1, "b": true, "z": null, "s": "plain \"q\"", "k\"ey": [1.5, "x"]}),
                order,
                r#"{"n":1,"b":true,"z":null,"s":"plain \"q\"","k\"ey":[1.5,"x"]}"#,
            ),
            (json!("{{_json}}"), insert, r#"{"id":7,"status":"new"}"#),
            (
                json!(["{{_event}}", "{{_id}}", "{{_event_id}}"]),
                insert,
                r#"["INSERT",7,"evt-1"]"#,
            ),
            (json!({"id": "#{{_id}}"}), insert, r##"{"id":"#7"}"##),
            (json!({}), order, "{}"),
            (json!(42), order, "42"),
        ]);
    }

    /// Parses rendered output and returns the field, so escaping is judged by
    /// what a receiver reads rather than by bytes.
    fn rendered_field(out: &[u8], key: &str) -> Value {
        let parsed: Value = serde_json::from_slice(out)
            .unwrap_or_else(|err| panic!("invalid JSON {}: {err}", String::from_utf8_lossy(out)));
        parsed[key].clone()
    }

    #[test]
    fn hostile_values_stay_intact_in_every_json_mode() {
        let event = hostile();
        let text_cases = [
            (r#"{"v": "{{name}}"}"#, json!(HOSTILE)),
            (r#"{"v": {{name}}}"#, json!(HOSTILE)),
            (r#"{"v": "<{{name}}>"}"#, json!(format!("<{HOSTILE}>"))),
            (r#"{"v": {{_json}}}"#, json!({"id": "h-1", "name": HOSTILE})),
            (
                r#"{"v": "{{_json}}"}"#,
                json!(serde_json::to_string(&json!({"id": "h-1", "name": HOSTILE})).unwrap()),
            ),
        ];
        for (template, expected) in text_cases {
            let mut out = Vec::new();
            TextTemplate::parse(template)
                .unwrap()
                .render_json(&event, &mut out);
            assert_eq!(rendered_field(&out, "v"), expected, "{template}");
        }
        let table_cases = [
            (json!({"v": "{{name}}"}), json!(HOSTILE)),
            (json!({"v": "<{{name}}>"}), json!(format!("<{HOSTILE}>"))),
            (
                json!({"v": "{{_json}}"}),
                json!({"id": "h-1", "name": HOSTILE}),
            ),
        ];
        for (template, expected) in table_cases {
            let mut out = Vec::new();
            JsonTemplate::parse(&template)
                .unwrap()
                .render(&event, &mut out);
            assert_eq!(rendered_field(&out, "v"), expected, "{template}");
        }
    }

    #[test]
    fn fraiseql_doc_body_template_renders_valid_json() {
        let template = TextTemplate::parse(
            r#"{ "event_type": "{{_entity}}.{{_event}}", "entity_id": "{{_id}}", "timestamp": "{{_timestamp}}", "data": {{_json}}, "changes": {{_changed}} }"#,
        )
        .unwrap();
        for event in [order(), insert(), hostile()] {
            let mut out = Vec::new();
            template.render_json(&event, &mut out);
            let body: Value = serde_json::from_slice(&out).unwrap();
            let expected_id = event
                .entity_id
                .clone()
                .unwrap_or_else(|| event.data["id"].to_string());
            assert_eq!(
                body["event_type"],
                json!(format!("Order.{}", event.operation))
            );
            assert_eq!(body["entity_id"], json!(expected_id));
            assert_eq!(body["timestamp"], json!(event.timestamp));
            assert_eq!(body["data"], event.data);
            assert_eq!(body["changes"], Value::Object(event.changed()));
        }
    }

    #[test]
    fn metadata_variables_render_from_the_envelope() {
        let mut event = order();
        event.meta.insert("tenant_id".into(), json!("t-1"));
        event.meta.insert("seq".into(), json!(42));
        event
            .meta
            .insert("trace_context".into(), json!({"traceparent": "00-ab"}));
        event
            .meta
            .insert("session".into(), json!({"x-hasura-user-id": "42"}));
        for (template, expected) in [
            ("{{_session.x-hasura-user-id}}", r#""42""#),
            ("{{_trigger}}", "null"),
            ("{{_tenant_id}}", r#""t-1""#),
            ("{{_seq}}", "42"),
            ("{{_user_id}}", "null"),
            ("{{_trace_context.traceparent}}", r#""00-ab""#),
            (r#""{{_tenant_id}}/{{_seq}}""#, r#""t-1/42""#),
        ] {
            let compiled = TextTemplate::parse(template).unwrap();
            let mut out = Vec::new();
            compiled.render_json(&event, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{template}");
        }
        assert!(TextTemplate::parse("{{_trace_context..x}}").is_err());
        assert!(
            TextTemplate::parse("{{ customer-email }}").is_err(),
            "hyphens only in session names"
        );
    }

    /// Run with `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; meaningful only in release builds"]
    fn five_field_body_renders_fast() {
        let template = JsonTemplate::parse(&json!({
            "order_id": "{{ id }}",
            "total": "{{ total }}",
            "email": "{{ customer.email }}",
            "event": "{{ _entity }}.{{ _event }}",
            "at": "{{ _timestamp }}",
        }))
        .unwrap();
        let event = order();
        let mut out = Vec::with_capacity(256);
        let rounds = 200_000u32;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            out.clear();
            template.render(&event, &mut out);
            std::hint::black_box(&out);
        }
        let per_render = start.elapsed() / rounds;
        println!("five-field body: {per_render:?} per render");
        assert!(per_render < std::time::Duration::from_micros(3));
    }
}
