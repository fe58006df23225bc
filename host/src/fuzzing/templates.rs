//! The template target's checks: what a template renders, recomputed from
//! the template text and the event independently of the renderer.

use serde_json::{Map, Value};

use crate::event::Event;
use crate::payload::template::{JsonTemplate, TextTemplate};

pub(super) fn check_text_template(event: &Event, source: &str) {
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

pub(super) fn check_json_template(event: &Event, table: &Value) {
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

pub(super) fn assert_json(body: &[u8]) -> Value {
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
