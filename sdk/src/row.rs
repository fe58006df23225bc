//! A row as the host sends it (JSON text), parsed only as far as it is read.
//!
//! Building the whole row as a [`Value`] (a map, a string per key and
//! value) was most of a warm condition call, while a condition usually
//! reads one field. So the first path asked for is picked out of the text
//! on its own, and the whole row is parsed only when a plugin asks for it
//! or for a second path.

use std::cell::OnceCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::path::get_path;

#[derive(Clone)]
pub(crate) struct Row {
    /// The JSON text; empty when the row was built from a value.
    text: String,
    /// The whole row, once something needed it.
    value: OnceCell<Value>,
    /// The first path read before the whole row was parsed, and its value.
    first: OnceCell<(String, Option<Value>)>,
}

impl Row {
    /// Checks that `text` is one JSON document without building it (no
    /// allocation), so that a broken row is still an error when the event
    /// arrives rather than a silent `None` later.
    pub(crate) fn parse(text: String) -> Result<Row, serde_json::Error> {
        serde_json::from_str::<IgnoredAny>(&text)?;
        Ok(Row {
            text,
            value: OnceCell::new(),
            first: OnceCell::new(),
        })
    }

    pub(crate) fn from_value(value: Value) -> Row {
        Row {
            text: String::new(),
            value: OnceCell::from(value),
            first: OnceCell::new(),
        }
    }

    pub(crate) fn value(&self) -> &Value {
        self.value.get_or_init(|| whole(&self.text))
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Value> {
        if path.is_empty() || self.value.get().is_some() {
            return get_path(self.value(), path);
        }
        let (first, found) = self
            .first
            .get_or_init(|| (path.to_string(), select(&self.text, path)));
        if first == path {
            found.as_ref()
        } else {
            get_path(self.value(), path)
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(value) => value,
            None => whole(&self.text),
        }
    }
}

/// The text was checked by [`Row::parse`], and a `Value` accepts every
/// document `IgnoredAny` does (same parser, same depth limit).
fn whole(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.value() == other.value()
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

/// The value at a dotted path of a JSON text, with [`get_path`]'s rules: a
/// segment is an object key (the last one wins, as in a parsed map) or an
/// array index.
fn select(text: &str, path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Select(&segments).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// Walks the remaining segments; what is off the path is skipped unbuilt.
struct Select<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Select<'_> {
    type Value = Option<Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Option<Value>, D::Error> {
        match self.0 {
            [] => de::Deserialize::deserialize(de).map(Some),
            _ => de.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Select<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let (segment, rest) = self.0.split_first().expect("visited with a segment");
        let mut found = None;
        while let Some(matched) = map.next_key_seed(KeyIs(segment))? {
            if matched {
                found = map.next_value_seed(Select(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let (segment, rest) = self.0.split_first().expect("visited with a segment");
        let index = segment.parse::<usize>().ok();
        let mut found = None;
        let mut i = 0;
        loop {
            let more = if Some(i) == index {
                seq.next_element_seed(Select(rest))?
                    .map(|value| found = value)
                    .is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(found);
            }
            i += 1;
        }
    }

    // A scalar has nothing inside it.
    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// Compares a key with a segment without allocating it (unless it holds
/// escapes).
struct KeyIs<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROW: &str = r#"{"total": 12, "customer": {"email": "a@b.c", "tags": ["x", {"k": [1, 2]}]},
        "items": [{"sku": "X"}, {"sku": "Y"}], "dup": 1, "dup": 2, "esc\"aped": true,
        "nothing": null, "s": "text"}"#;

    /// Every path picked out of the text equals the same path in the parsed row.
    #[test]
    fn selecting_a_path_agrees_with_parsing_the_row() {
        let parsed: Value = serde_json::from_str(ROW).unwrap();
        for path in [
            "total",
            "customer",
            "customer.email",
            "customer.tags.0",
            "customer.tags.1.k.1",
            "customer.tags.2",
            "customer.email.x",
            "items.1.sku",
            "items.-1",
            "items.x",
            "dup",
            "esc\"aped",
            "nothing",
            "nothing.x",
            "s.0",
            "total.x",
            "missing",
            "customer..email",
        ] {
            assert_eq!(
                select(ROW, path).as_ref(),
                get_path(&parsed, path),
                "{path}"
            );
            let row = Row::parse(ROW.to_string()).unwrap();
            assert_eq!(row.get(path), get_path(&parsed, path), "{path}");
        }
    }

    #[test]
    fn a_second_path_and_the_whole_row_come_from_one_parse() {
        let row = Row::parse(ROW.to_string()).unwrap();
        assert_eq!(row.get("total"), Some(&json!(12)));
        assert_eq!(row.get("total"), Some(&json!(12)));
        assert!(row.value.get().is_none(), "one path needs no full parse");
        assert_eq!(row.get("customer.email"), Some(&json!("a@b.c")));
        assert!(row.value.get().is_some());
        assert_eq!(row.get("total"), Some(&json!(12)));
        assert_eq!(row.get(""), Some(row.value()));
        assert_eq!(
            row.clone().into_value(),
            serde_json::from_str::<Value>(ROW).unwrap()
        );
    }

    #[test]
    fn broken_text_is_refused_up_front() {
        for text in ["{", "{\"a\": 1} x", "", "[1,]"] {
            assert!(Row::parse(text.to_string()).is_err(), "{text}");
        }
        for text in ["1", "null", "\"s\"", "[]"] {
            let row = Row::parse(text.to_string()).unwrap();
            assert_eq!(row.get("a"), None, "{text}");
        }
    }

    #[test]
    fn rows_compare_by_content() {
        let text = Row::parse(r#"{"a": 1}"#.to_string()).unwrap();
        assert_eq!(text, Row::from_value(json!({"a": 1})));
        assert_ne!(text, Row::from_value(json!({"a": 2})));
    }
}
