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
//!
//! The work is split by what it does: `compile` turns template text or a
//! body table into the parts defined here (once, at start-up), `render`
//! writes an event through them, `escape` holds the JSON writing both use.

mod compile;
mod escape;
mod render;

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

/// What a value in a URL is percent-encoded against: everything but RFC
/// 3986's unreserved characters.
pub(crate) const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    /// `line L, column N` when the template spans several lines. Each hole's
    /// JSON mode is fixed here too, rather than on every render.
    pub fn parse(source: &str) -> Result<TextTemplate, TemplateError> {
        let (parts, literal_len) = compile::text(source)?;
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
        render::json(&self.parts, self.literal_len, event, out);
    }

    /// Renders for headers and URLs, where there is no JSON to protect:
    /// strings are written raw, other values as compact JSON, missing fields
    /// as nothing. Checking the result is a valid header value is the
    /// caller's job, since only it knows the target.
    pub fn render_plain(&self, event: &Event) -> String {
        render::plain(&self.parts, self.literal_len, event)
    }

    /// Renders a URL or one of its query parameters: each value is
    /// percent-encoded (`/`, `?`, `&`, `#` and spaces included), the text
    /// around it is kept as written.
    pub fn render_url(&self, event: &Event) -> String {
        render::url(&self.parts, self.literal_len, event)
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
        let (parts, literal_len) = compile::table(value)?;
        Ok(JsonTemplate { parts, literal_len })
    }

    /// Appends the JSON body for `event` to `out`. The output is always valid
    /// JSON: holes standing for a whole leaf write a JSON value (`null` when
    /// missing), holes inside text write escaped string content.
    pub fn render(&self, event: &Event, out: &mut Vec<u8>) {
        render::json(&self.parts, self.literal_len, event, out);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_shareable_across_tasks() {
        fn assert_traits<T: std::fmt::Debug + Clone + Send + Sync>() {}
        assert_traits::<TextTemplate>();
        assert_traits::<JsonTemplate>();
        assert_traits::<TemplateError>();
    }
}
