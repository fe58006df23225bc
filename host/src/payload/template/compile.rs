//! Compiling: template text or a body table in, literal chunks and holes
//! out, once, at start-up. Each hole's JSON mode is fixed here from the
//! template alone, which is what keeps rendered values from being read as
//! JSON syntax or as placeholders.

use serde_json::Value;

use super::escape::{escape_into, write_json, write_json_string};
use super::{Mode, Part, Source, TemplateError, Var};

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

/// Compiles a text template (`body_template`, header values).
///
/// While scanning the literal text it follows JSON string state (an
/// unescaped `"` opens or closes a string), which fixes each hole's JSON
/// mode here rather than on every render.
pub(super) fn text(source: &str) -> Result<(Vec<Part>, usize), TemplateError> {
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
    Ok(builder.finish())
}

/// Compiles a body table; errors name the leaf as a path from `body`.
pub(super) fn table(value: &Value) -> Result<(Vec<Part>, usize), TemplateError> {
    let mut builder = Builder::default();
    let mut path = String::from("body");
    compile_value(value, &mut path, &mut builder)?;
    Ok(builder.finish())
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
    use crate::payload::template::{JsonTemplate, TextTemplate};
    use serde_json::{json, Value};

    #[test]
    fn is_literal_only_without_placeholders() {
        assert!(TextTemplate::parse("application/json")
            .unwrap()
            .is_literal());
        assert!(TextTemplate::parse("").unwrap().is_literal());
        assert!(!TextTemplate::parse("x {{ id }}").unwrap().is_literal());
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
}
