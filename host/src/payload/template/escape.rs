//! Writing JSON: values as compact JSON, and text as escaped JSON string
//! content, the way serde_json escapes it. Both compiling (literal leaves,
//! keys) and rendering (holes) write through here.

use std::io;

use serde_json::Value;

/// A value as compact JSON.
pub(super) fn write_json(out: &mut Vec<u8>, value: &Value) {
    // Serialising a Value into a Vec cannot fail: the writer never errors and
    // every Value (string keys only) is serialisable.
    let _ = serde_json::to_writer(out, value);
}

/// Text as a JSON string, quotes included.
pub(super) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_into(out, text.as_bytes());
    out.push(b'"');
}

/// Escapes UTF-8 text as JSON string content, the way serde_json does: `"`,
/// `\` and control characters. Working on bytes is safe because every byte
/// of a multi-byte UTF-8 sequence is >= 0x80 and passes through unchanged.
pub(super) fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
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
pub(super) struct EscapingWriter<'a>(pub(super) &'a mut Vec<u8>);

impl io::Write for EscapingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        escape_into(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

    use crate::event::test_support::order_update;
    use crate::event::Event;
    use crate::payload::template::{JsonTemplate, TextTemplate};
    use proptest::prelude::*;
    use serde_json::json;
    use serde_json::Value;

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
