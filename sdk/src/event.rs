//! The database event a condition or transform receives.

use std::fmt;

use serde_json::Value;

use crate::row::Row;
use crate::Error;

/// What a mutation did to its row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// Any other name, as sent.
    Other(String),
}

impl Operation {
    /// Reads an operation name; `insert`, `Insert` and `INSERT` are the same.
    pub fn parse(name: &str) -> Self {
        if name.eq_ignore_ascii_case("INSERT") {
            Self::Insert
        } else if name.eq_ignore_ascii_case("UPDATE") {
            Self::Update
        } else if name.eq_ignore_ascii_case("DELETE") {
            Self::Delete
        } else {
            Self::Other(name.to_string())
        }
    }

    /// The upper-case name (`INSERT`), or the other name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata fields of the WIT `event-meta` record.
pub(crate) struct Meta {
    pub(crate) id: String,
    pub(crate) entity: String,
    pub(crate) operation: String,
    pub(crate) entity_id: Option<String>,
    pub(crate) timestamp: String,
    pub(crate) source: String,
}

/// A database event: metadata plus the row after (and maybe before) the
/// mutation. The rows are checked when the event arrives and parsed as far
/// as they are read (see `row.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    id: String,
    entity: String,
    operation: Operation,
    entity_id: Option<String>,
    timestamp: String,
    source: String,
    new: Row,
    old: Option<Row>,
}

impl Event {
    /// Parses the rows; a row that is not JSON is an `invalid-input` error
    /// (the host only sends JSON, so this means a broken host or source).
    pub(crate) fn from_parts(meta: Meta, data: String, old: Option<String>) -> Result<Self, Error> {
        let new = Row::parse(data)
            .map_err(|e| Error::invalid_input(format!("event data is not JSON: {e}")))?;
        let old = old
            .map(Row::parse)
            .transpose()
            .map_err(|e| Error::invalid_input(format!("event old data is not JSON: {e}")))?;
        Ok(Self {
            id: meta.id,
            entity: meta.entity,
            operation: Operation::parse(&meta.operation),
            entity_id: meta.entity_id,
            timestamp: meta.timestamp,
            source: meta.source,
            new,
            old,
        })
    }

    /// Starts an event for a plugin's unit tests.
    pub fn builder(entity: impl Into<String>, operation: &str) -> EventBuilder {
        EventBuilder {
            event: Self {
                id: "test-event".into(),
                entity: entity.into(),
                operation: Operation::parse(operation),
                entity_id: None,
                timestamp: "1970-01-01T00:00:00Z".into(),
                source: "test".into(),
                new: Row::from_value(Value::Object(serde_json::Map::new())),
                old: None,
            },
        }
    }

    /// The event's id (stable across redeliveries from durable sources).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Entity type or table, as sent (`Order`, `orders`).
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// `INSERT`, `UPDATE`, `DELETE` or another name.
    pub fn operation(&self) -> &Operation {
        &self.operation
    }

    /// The row's id, when known.
    pub fn entity_id(&self) -> Option<&str> {
        self.entity_id.as_deref()
    }

    /// When the mutation happened, RFC 3339 as sent.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// Where the event came from (`http`, `nats:fraiseql.order.created`, ...).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The row after the mutation (for a DELETE, the row before it).
    #[allow(clippy::new_ret_no_self, clippy::wrong_self_convention)]
    pub fn new(&self) -> &Value {
        self.new.value()
    }

    /// The row before the mutation, when the event carries it.
    pub fn old(&self) -> Option<&Value> {
        self.old.as_ref().map(Row::value)
    }

    /// A value in the new row by dotted path: `customer.email`, `items.0.sku`
    /// (a numeric segment indexes an array). `""` is the whole row.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.new.get(path)
    }

    /// Like [`Event::get`], in the old row.
    pub fn get_old(&self, path: &str) -> Option<&Value> {
        self.old.as_ref().and_then(|old| old.get(path))
    }

    /// Takes the rows out, for a plugin that rebuilds them.
    pub fn into_rows(self) -> (Value, Option<Value>) {
        (self.new.into_value(), self.old.map(Row::into_value))
    }
}

/// Builds an [`Event`] for tests: `Event::builder("Order", "INSERT").data(json!({...})).build()`.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// Sets the event id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    /// Sets the row id.
    #[must_use]
    pub fn entity_id(mut self, entity_id: impl Into<String>) -> Self {
        self.event.entity_id = Some(entity_id.into());
        self
    }

    /// Sets the timestamp.
    #[must_use]
    pub fn timestamp(mut self, timestamp: impl Into<String>) -> Self {
        self.event.timestamp = timestamp.into();
        self
    }

    /// Sets the source.
    #[must_use]
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.event.source = source.into();
        self
    }

    /// Sets the new row.
    #[must_use]
    pub fn data(mut self, new: Value) -> Self {
        self.event.new = Row::from_value(new);
        self
    }

    /// Sets the old row.
    #[must_use]
    pub fn old(mut self, old: Value) -> Self {
        self.event.old = Some(Row::from_value(old));
        self
    }

    /// The event.
    pub fn build(self) -> Event {
        self.event
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(operation: &str) -> Meta {
        Meta {
            id: "e1".into(),
            entity: "Order".into(),
            operation: operation.into(),
            entity_id: Some("42".into()),
            timestamp: "2025-01-01T00:00:00Z".into(),
            source: "http".into(),
        }
    }

    #[test]
    fn parses_rows_once() {
        let data = r#"{"total": 12, "customer": {"email": "a@b.c"}, "items": [{"sku": "X"}]}"#;
        let event =
            Event::from_parts(meta("UPDATE"), data.into(), Some(r#"{"total": 5}"#.into())).unwrap();
        assert_eq!(event.operation(), &Operation::Update);
        assert_eq!(event.entity_id(), Some("42"));
        assert_eq!(event.get("total"), Some(&json!(12)));
        assert_eq!(event.get("customer.email"), Some(&json!("a@b.c")));
        assert_eq!(event.get("items.0.sku"), Some(&json!("X")));
        assert_eq!(event.get("items.1.sku"), None);
        assert_eq!(event.get("total.x"), None);
        assert_eq!(event.get(""), Some(event.new()));
        assert_eq!(event.get_old("total"), Some(&json!(5)));
    }

    #[test]
    fn rejects_rows_that_are_not_json() {
        let error = Event::from_parts(meta("INSERT"), "{".into(), None).unwrap_err();
        assert!(matches!(error, Error::InvalidInput(_)), "{error}");
    }

    #[test]
    fn operation_names() {
        for (name, op) in [
            ("INSERT", Operation::Insert),
            ("delete", Operation::Delete),
            ("TRUNCATE", Operation::Other("TRUNCATE".into())),
        ] {
            assert_eq!(Operation::parse(name), op);
        }
        assert_eq!(Operation::Other("X".into()).to_string(), "X");
    }
}
