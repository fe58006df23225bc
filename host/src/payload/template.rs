//! The payload stage's template language: how an [`Event`] becomes a webhook
//! body, a header value or a URL.
//!
//! In: template text from the configuration, with FraiseQL-style placeholders
//! (`{{ id }}`, `{{ customer.email }}`, `{{ _entity }}`, `{{ _json }}`, ...),
//! either as one text (`body_template = '''...'''`, header values) or as a
//! JSON/TOML table whose string leaves hold placeholders (`body = { ... }`).
//! Out: the rendered bytes for one event.
//!
//! Templates are compiled once at start-up into literal chunks and holes, so a
//! bad template stops the process with a message naming where it is, and
//! rendering an event is a walk over the chunks appending into a `Vec<u8>`: no
//! re-parsing, no intermediate `serde_json::Value` for the body.
//!
//! Injection guarantee: a hole's mode (JSON value, inside a JSON string, plain
//! text) is decided from the template alone, and a value rendered inside a
//! JSON string is always escaped. Rendered values are never scanned for
//! placeholders again, so an entity field holding quotes, backslashes or
//! `{{ _json }}` comes out as exactly that text and cannot close the string,
//! add JSON keys or pull in other fields.

use std::io;

use serde_json::Value;

use crate::event::Event;

/// Why a template was rejected at start-up, and where.
///
/// Templates are only ever parsed while loading the configuration, so the
/// error carries enough for a user to find the spot without a debugger: the
/// column (and line) in a text template, the path of the leaf in a body table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct TemplateError {
    /// Where: `column 17`, `line 3, column 5`, or `body.items[2]`.
    pub location: String,
    /// What is wrong, phrased so the fix is obvious.
    pub message: String,
}

/// A text template (`body_template = '''...'''`, header values, URLs).
///
/// One type serves bodies and headers because the placeholders are the same;
/// the caller picks the escaping by calling [`TextTemplate::render_json`] or
/// [`TextTemplate::render_plain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTemplate {
    parts: Vec<Part>,
    literal_len: usize,
}

impl TextTemplate {
    /// Compiles `source` once, so that a typo fails start-up instead of every
    /// delivery. Errors locate the offending `{{` as `column N`, or
    /// `line L, column N` when the template spans several lines.
    ///
    /// While scanning the literal text it follows JSON string state (an
    /// unescaped `"` opens or closes a string), which fixes each hole's JSON
    /// mode here rather than on every render.
    pub fn parse(source: &str) -> Result<TextTemplate, TemplateError> {
        let tokens = tokenize(source).map_err(|err| TemplateError {
            location: err.location(source),
            message: err.message,
        })?;
        let mut builder = Builder::default();
        let mut in_string = false;
        let mut escaped = false;
        for token in tokens {
            match token {
                Token::Text(text) => {
                    for &byte in text.as_bytes() {
                        if !in_string {
                            in_string = byte == b'"';
                        } else if escaped {
                            escaped = false;
                        } else if byte == b'\\' {
                            escaped = true;
                        } else if byte == b'"' {
                            in_string = false;
                        }
                    }
                    builder.literal(text);
                }
                Token::Hole(source) => {
                    let mode = match (in_string, escaped) {
                        (false, _) => Mode::Value,
                        (true, false) => Mode::InString,
                        (true, true) => Mode::InStringAfterBackslash,
                    };
                    escaped = false;
                    builder.hole(source, mode);
                }
            }
        }
        let (parts, literal_len) = builder.finish();
        Ok(TextTemplate { parts, literal_len })
    }

    /// Renders for a JSON body. A hole between double quotes of the template
    /// text is written as escaped string content, any other hole as a JSON
    /// value (`null` when the field is missing), so the body stays valid JSON
    /// whatever the event holds (given a template that is valid JSON around
    /// its holes).
    ///
    /// A backslash written right before a hole inside a string
    /// (`"C:\{{ dir }}"`) is taken as a literal backslash: as a JSON escape it
    /// would swallow the first character of the value and could let a value
    /// starting with `"` close the string.
    pub fn render_json(&self, event: &Event, out: &mut Vec<u8>) {
        out.reserve(self.literal_len + HOLE_SIZE_HINT * self.parts.len());
        render_json_parts(&self.parts, event, out);
    }

    /// Renders for headers and URLs, where there is no JSON to protect:
    /// strings are written raw, other values as compact JSON, missing fields
    /// as nothing. Checking the result is a valid header value is the
    /// caller's job, since only it knows the target.
    pub fn render_plain(&self, event: &Event) -> String {
        let mut out = Vec::with_capacity(self.literal_len + HOLE_SIZE_HINT * self.parts.len());
        for part in &self.parts {
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

    /// True when the template has no placeholders, so callers can render it
    /// once at start-up and reuse the bytes.
    pub fn is_literal(&self) -> bool {
        !self
            .parts
            .iter()
            .any(|part| matches!(part, Part::Hole { .. }))
    }
}

/// A body given as a table (`body = { order_id = "{{ id }}", total = "{{ total }}" }`).
///
/// Users write TOML tables, where every placeholder must sit in a string; a
/// leaf that is exactly one placeholder therefore keeps the value's own JSON
/// type (a number stays a number), while a leaf mixing text and placeholders
/// is a JSON string. The table is flattened at parse time into literal JSON
/// chunks and holes, so rendering never builds a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonTemplate {
    parts: Vec<Part>,
    literal_len: usize,
}

impl JsonTemplate {
    /// Compiles any JSON value. Object keys and non-string leaves are emitted
    /// as given (keys are not templated, so a body's shape is fixed by the
    /// configuration); key order is kept. Errors name the bad leaf as a path
    /// from `body` (`body.customer.email`, `body.items[2]`), with the column
    /// inside the leaf in the message.
    pub fn parse(value: &Value) -> Result<JsonTemplate, TemplateError> {
        let mut builder = Builder::default();
        let mut path = String::from("body");
        compile_value(value, &mut path, &mut builder)?;
        let (parts, literal_len) = builder.finish();
        Ok(JsonTemplate { parts, literal_len })
    }

    /// Appends the JSON body for `event` to `out`. The output is always valid
    /// JSON: holes standing for a whole leaf write a JSON value (`null` when
    /// missing), holes inside text write escaped string content.
    pub fn render(&self, event: &Event, out: &mut Vec<u8>) {
        out.reserve(self.literal_len + HOLE_SIZE_HINT * self.parts.len());
        render_json_parts(&self.parts, event, out);
    }
}

/// Bytes reserved per part on top of the literal text, to make one
/// allocation the common case for small bodies.
const HOLE_SIZE_HINT: usize = 16;

/// The names a user can reach beyond the row's own fields.
const VARIABLES: [(&str, Var); 8] = [
    ("_id", Var::Id),
    ("_event_id", Var::EventId),
    ("_timestamp", Var::Timestamp),
    ("_event", Var::Operation),
    ("_entity", Var::Entity),
    ("_json", Var::Json),
    ("_old", Var::Old),
    ("_changed", Var::Changed),
];

/// What `_old` renders as when the event has no previous row.
static NULL: Value = Value::Null;

/// A compiled template: literal text interleaved with holes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Hole { source: Source, mode: Mode },
}

/// Where a hole's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A dotted path into the new row, as `crate::event::lookup` reads it.
    Field(Box<str>),
    Var(Var),
    /// A dotted path into the event's metadata (`tenant_id`,
    /// `trace_context.traceparent`), written `_tenant_id` in a template.
    Meta(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Id,
    EventId,
    Timestamp,
    Operation,
    Entity,
    Json,
    Old,
    Changed,
}

/// How a hole is written into JSON output (plain rendering ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stands where a JSON value goes: compact JSON, `null` when missing.
    Value,
    /// Between quotes: escaped string content, nothing when missing.
    InString,
    /// Between quotes right after a pending `\` of the literal text: a `\`
    /// first, so the template's backslash stays a literal backslash.
    InStringAfterBackslash,
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

fn write_json(out: &mut Vec<u8>, value: &Value) {
    // Serialising a Value into a Vec cannot fail: the writer never errors and
    // every Value (string keys only) is serialisable.
    let _ = serde_json::to_writer(out, value);
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text.as_bytes());
    out.push(b'"');
}

/// Escapes UTF-8 text as JSON string content, the way serde_json does: `"`,
/// `\` and control characters. Working on bytes is safe because every byte
/// of a multi-byte UTF-8 sequence is >= 0x80 and passes through unchanged.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Lets serde_json write a nested value straight into string content.
struct EscapingWriter<'a>(&'a mut Vec<u8>);

impl io::Write for EscapingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        escape_into(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Accumulates literal text and closes it into a chunk at each hole.
#[derive(Default)]
struct Builder {
    parts: Vec<Part>,
    pending: String,
    literal_len: usize,
}

impl Builder {
    fn literal(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    fn hole(&mut self, source: Source, mode: Mode) {
        self.flush();
        self.parts.push(Part::Hole { source, mode });
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.literal_len += self.pending.len();
            let text = std::mem::take(&mut self.pending);
            self.parts.push(Part::Literal(text.into_boxed_str()));
        }
    }

    fn finish(mut self) -> (Vec<Part>, usize) {
        self.flush();
        (self.parts, self.literal_len)
    }
}

fn compile_value(
    value: &Value,
    path: &mut String,
    builder: &mut Builder,
) -> Result<(), TemplateError> {
    match value {
        Value::Object(map) => {
            builder.literal("{");
            for (index, (key, child)) in map.iter().enumerate() {
                if index > 0 {
                    builder.literal(",");
                }
                let mut key_json = Vec::with_capacity(key.len() + 2);
                write_json_string(&mut key_json, key);
                builder.literal(&String::from_utf8_lossy(&key_json));
                builder.literal(":");
                let len = path.len();
                path.push('.');
                path.push_str(key);
                compile_value(child, path, builder)?;
                path.truncate(len);
            }
            builder.literal("}");
        }
        Value::Array(items) => {
            builder.literal("[");
            for (index, child) in items.iter().enumerate() {
                if index > 0 {
                    builder.literal(",");
                }
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                compile_value(child, path, builder)?;
                path.truncate(len);
            }
            builder.literal("]");
        }
        Value::String(text) => compile_string_leaf(text, path, builder)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            let mut json = Vec::new();
            write_json(&mut json, value);
            builder.literal(&String::from_utf8_lossy(&json));
        }
    }
    Ok(())
}

fn compile_string_leaf(text: &str, path: &str, builder: &mut Builder) -> Result<(), TemplateError> {
    let tokens = tokenize(text).map_err(|err| TemplateError {
        location: path.to_string(),
        message: format!("{} (at {} of the string)", err.message, err.location(text)),
    })?;
    let holes = tokens
        .iter()
        .filter(|token| matches!(token, Token::Hole(_)))
        .count();
    let only_spaces_around = tokens
        .iter()
        .all(|token| !matches!(token, Token::Text(text) if !text.trim().is_empty()));
    if holes == 1 && only_spaces_around {
        for token in tokens {
            if let Token::Hole(source) = token {
                builder.hole(source, Mode::Value);
            }
        }
        return Ok(());
    }
    builder.literal("\"");
    for token in tokens {
        match token {
            Token::Text(text) => {
                let mut escaped = Vec::with_capacity(text.len());
                escape_into(&mut escaped, text.as_bytes());
                builder.literal(&String::from_utf8_lossy(&escaped));
            }
            Token::Hole(source) => builder.hole(source, Mode::InString),
        }
    }
    builder.literal("\"");
    Ok(())
}

/// A piece of template text: literal, or a placeholder already resolved to
/// where its value comes from.
enum Token<'a> {
    Text(&'a str),
    Hole(Source),
}

/// A syntax error at a byte offset of the template text.
struct SyntaxError {
    offset: usize,
    message: String,
}

impl SyntaxError {
    /// `column N` (1-based, in characters), or `line L, column N` when the
    /// template has more than one line.
    fn location(&self, source: &str) -> String {
        let before = &source[..self.offset.min(source.len())];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        if source.contains('\n') {
            let line = before.matches('\n').count() + 1;
            format!("line {line}, column {column}")
        } else {
            format!("column {column}")
        }
    }
}

/// Splits template text into literal text and placeholders. Only the
/// template is scanned: `{{` in a rendered value is never a placeholder.
fn tokenize(source: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            tokens.push(Token::Text(&rest[..open]));
        }
        let inner_start = open + 2;
        let Some(close) = rest[inner_start..].find("}}") else {
            return Err(SyntaxError {
                offset: offset + open,
                message: "unclosed placeholder: `{{` without a matching `}}`".into(),
            });
        };
        let inner = &rest[inner_start..inner_start + close];
        let name = parse_name(inner).map_err(|message| SyntaxError {
            offset: offset + open,
            message,
        })?;
        tokens.push(Token::Hole(name));
        let consumed = inner_start + close + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    if !rest.is_empty() {
        tokens.push(Token::Text(rest));
    }
    Ok(tokens)
}

/// Reads what is between `{{` and `}}`: a dotted field path or a variable.
fn parse_name(inner: &str) -> Result<Source, String> {
    let name = inner.trim();
    if name.is_empty() {
        return Err(
            "empty placeholder `{{ }}`: write a field path like `{{ id }}` or a variable like `{{ _event }}`"
                .into(),
        );
    }
    // Session variables are named like HTTP headers (`x-hasura-role`).
    let hyphens = name.starts_with("_session.");
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || (hyphens && *c == '-')))
    {
        return Err(format!(
            "invalid character {bad:?} in placeholder `{{{{{inner}}}}}`: names use letters, digits, `_` and `.`"
        ));
    }
    if let Some(unprefixed) = name.strip_prefix('_') {
        if let Some((_, var)) = VARIABLES.iter().find(|(known, _)| *known == name) {
            return Ok(Source::Var(*var));
        }
        let first = unprefixed.split('.').next().unwrap_or_default();
        if crate::event::META_FIELDS.contains(&first) && !unprefixed.split('.').any(str::is_empty) {
            return Ok(Source::Meta(unprefixed.into()));
        }
        let known: Vec<String> = VARIABLES
            .iter()
            .map(|(known, _)| known.to_string())
            .chain(
                crate::event::META_FIELDS
                    .iter()
                    .map(|meta| format!("_{meta}")),
            )
            .collect();
        return Err(format!(
            "unknown variable {name}; known: {}",
            known.join(", ")
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!(
            "empty segment in field path `{name}`: write paths like `customer.email` or `items.0.sku`"
        ));
    }
    Ok(Source::Field(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;
    use crate::event::Operation;
    use serde_json::json;

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
    fn is_literal_only_without_placeholders() {
        assert!(TextTemplate::parse("application/json")
            .unwrap()
            .is_literal());
        assert!(TextTemplate::parse("").unwrap().is_literal());
        assert!(!TextTemplate::parse("x {{ id }}").unwrap().is_literal());
    }

    #[test]
    fn metadata_variables_render_from_the_envelope() {
        let mut event = order();
        event.meta.insert("tenant_id".into(), json!("t-1"));
        event.meta.insert("seq".into(), json!(42));
        event
            .meta
            .insert("trace_context".into(), json!({"traceparent": "00-ab"}));
        for (template, expected) in [
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

    #[test]
    fn parse_errors_say_where_and_why() {
        enum Input {
            Text(&'static str),
            Table(Value),
        }
        let cases = [
            (Input::Text("abc {{ id"), "column 5", "unclosed placeholder"),
            (Input::Text("{{ }}"), "column 1", "empty placeholder"),
            (Input::Text("x{{}}"), "column 2", "empty placeholder"),
            (
                Input::Text("{\"a\": {{_foo}}}"),
                "column 7",
                "unknown variable _foo; known: _id, _event_id, _timestamp, _event, _entity, _json, _old, _changed, _tenant_id, _user_id, _actor_type, _acting_for, _trace_context, _seq, _trigger, _schema, _session, _delivery_info",
            ),
            (Input::Text("{{ customer-email }}"), "column 1", "invalid character '-'"),
            (Input::Text("{{ a b }}"), "column 1", "invalid character ' '"),
            (Input::Text("{{ items..sku }}"), "column 1", "empty segment"),
            (
                Input::Text("{\n  \"a\": 1,\n  \"b\": {{ _nope }}\n}"),
                "line 3, column 8",
                "unknown variable _nope",
            ),
            (Input::Text("é{{"), "column 2", "unclosed placeholder"),
            (
                Input::Table(json!({"customer": {"email": "{{ customer.e-mail }}"}})),
                "body.customer.email",
                "invalid character '-'",
            ),
            (
                Input::Table(json!({"items": ["{{id}}", "ok", "x {{ _bad }}"]})),
                "body.items[2]",
                "unknown variable _bad",
            ),
            (
                Input::Table(json!({"a": [{"b": "{{ oops"}]})),
                "body.a[0].b",
                "unclosed placeholder: `{{` without a matching `}}` (at column 1 of the string)",
            ),
        ];
        for (input, location, message) in cases {
            let err = match &input {
                Input::Text(text) => TextTemplate::parse(text).unwrap_err(),
                Input::Table(value) => JsonTemplate::parse(value).unwrap_err(),
            };
            assert_eq!(err.location, location, "{err}");
            assert!(err.message.contains(message), "{err}");
            assert_eq!(
                err.to_string(),
                format!("{}: {}", err.location, err.message)
            );
        }
    }

    #[test]
    fn templates_are_shareable_across_tasks() {
        fn assert_traits<T: std::fmt::Debug + Clone + Send + Sync>() {}
        assert_traits::<TextTemplate>();
        assert_traits::<JsonTemplate>();
        assert_traits::<TemplateError>();
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

#[cfg(test)]
mod proptests {
    //! Injection properties: whatever string an event carries, in a row
    //! field, a nested field, a key or one of the event's own fields
    //! (entity, ids, timestamp), every way of rendering it into a body
    //! (`body_template` in and out of JSON strings, `body` tables, `_json`)
    //! yields valid JSON in which the value reads back exactly as sent. So
    //! quotes, backslashes, control characters and `{{ ... }}` in data can
    //! neither break the JSON nor reach the template language.

    use super::*;
    use crate::event::test_support::order_update;
    use proptest::prelude::*;
    use serde_json::json;

    /// Strings built from the characters that matter to JSON and to the
    /// template syntax, mixed with arbitrary Unicode.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            prop::sample::select(vec![
                "\"",
                "\\",
                "{{",
                "}}",
                "{{ _json }}",
                "{{id}}",
                "\\\"",
                "\\u0000",
                "\n",
                "\r",
                "\t",
                "\u{0}",
                "\u{1f}",
                "\u{7f}",
                "\u{2028}",
                "</script>",
                "\"}, \"x\": 1, \"y\": \"",
                "é",
                "💥",
                " ",
                "{",
                "}",
                ":",
                ",",
                "[",
                "]",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    /// Any JSON value, with hostile strings in keys and leaves.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Floats that survive a text round trip: serde_json parses
            // without `float_roundtrip`, which is not what is tested here.
            any::<f64>().prop_filter_map("no JSON round trip", |f| {
                let number = serde_json::Number::from_f64(f)?;
                let back: f64 = serde_json::from_str(&number.to_string()).ok()?;
                (back == f).then_some(Value::Number(number))
            }),
            hostile().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((hostile(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// An event whose every string (and a key) is `text`, and whose `any`
    /// field is `value`.
    fn event(text: &str, value: &Value) -> Event {
        let mut event = order_update(
            json!({"v": text}),
            json!({"v": text, "nested": {"v": [text]}, "any": value, "keys": {text: text}}),
        );
        event.id = text.to_owned();
        event.entity = text.to_owned();
        event.entity_id = Some(text.to_owned());
        event.timestamp = text.to_owned();
        event
    }

    fn parse(out: &[u8]) -> Result<Value, TestCaseError> {
        serde_json::from_slice(out).map_err(|err| {
            TestCaseError::fail(format!(
                "invalid JSON ({err}): {}",
                String::from_utf8_lossy(out)
            ))
        })
    }

    const BODY_TEMPLATE: &str = r#"{"value": {{v}}, "in_string": "{{v}}", "around": "<{{v}}>",
        "after_backslash": "\{{v}}", "escaped_quote": "\"{{v}}\"", "nested": {{nested.v.0}},
        "entity": "{{_entity}}", "id": {{_id}}, "event_id": "{{_event_id}}", "at": {{_timestamp}},
        "json": {{_json}}, "json_text": "{{_json}}", "any": {{any}}, "old": {{_old}},
        "changed": {{_changed}}, "many": "{{v}}{{v}}|{{_entity}}"}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn body_template_keeps_any_value_intact(text in hostile(), value in json_value()) {
            let event = event(&text, &value);
            let mut out = Vec::new();
            TextTemplate::parse(BODY_TEMPLATE).unwrap().render_json(&event, &mut out);
            let body = parse(&out)?;
            let json_text = serde_json::to_string(&event.data).unwrap();
            let expected = json!({
                "value": text, "in_string": text, "around": format!("<{text}>"),
                "after_backslash": format!("\\{text}"), "escaped_quote": format!("\"{text}\""),
                "nested": text, "entity": text, "id": text, "event_id": text, "at": text,
                "json": event.data, "json_text": json_text, "any": value, "old": event.old,
                "changed": Value::Object(event.changed()), "many": format!("{text}{text}|{text}"),
            });
            prop_assert_eq!(body, expected);
        }

        #[test]
        fn body_table_keeps_any_value_intact(text in hostile(), value in json_value()) {
            let event = event(&text, &value);
            let table = json!({
                "value": "{{v}}", "spaced": " {{ v }} ", "around": "<{{v}}>",
                "deep": {"list": ["{{nested.v.0}}", "{{_entity}}:{{_id}}"]},
                "json": "{{_json}}", "json_text": "[{{_json}}]", "any": "{{any}}",
                "any_text": "={{any}}", "at": "{{_timestamp}}",
            });
            let mut out = Vec::new();
            JsonTemplate::parse(&table).unwrap().render(&event, &mut out);
            let body = parse(&out)?;
            let json_text = serde_json::to_string(&event.data).unwrap();
            let any_text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let expected = json!({
                "value": text, "spaced": text, "around": format!("<{text}>"),
                "deep": {"list": [text, format!("{text}:{text}")]},
                "json": event.data, "json_text": format!("[{json_text}]"), "any": value,
                "any_text": format!("={any_text}"), "at": text,
            });
            prop_assert_eq!(body, expected);
        }

        #[test]
        fn values_are_never_read_as_templates(text in hostile()) {
            // Whatever the value holds, rendering it once more as a
            // template's own text would be the injection; the output must
            // hold the value and nothing the value "asked" for.
            let event = event(&text, &Value::Null);
            let mut out = Vec::new();
            TextTemplate::parse(r#"{"a": "{{v}}"}"#).unwrap().render_json(&event, &mut out);
            let body = parse(&out)?;
            prop_assert_eq!(body.as_object().map(|o| o.len()), Some(1));
            prop_assert_eq!(&body["a"], &Value::String(text.clone()));
            prop_assert_eq!(
                TextTemplate::parse("{{v}}").unwrap().render_plain(&event),
                text
            );
        }
    }
}
