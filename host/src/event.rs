//! The one event shape every stage after the source sees.
//!
//! Sources parse FraiseQL, Hasura and native envelopes into an [`Event`]; the
//! observers, templates and plugins never look at an envelope again, so adding a
//! source never touches matching or rendering.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// The kind of mutation, in the SQL spelling observers are written in.
///
/// `Other` keeps operations that are not row mutations (Hasura's `MANUAL`, an
/// incoming provider's event type) instead of rejecting them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Operation {
    /// A row was created (FraiseQL `created`).
    Insert,
    /// A row was changed (FraiseQL `updated`).
    Update,
    /// A row was removed (FraiseQL `deleted`).
    Delete,
    /// Any other operation name, upper-cased.
    Other(String),
}

impl Operation {
    /// Reads an operation name in any of the spellings users send:
    /// `INSERT`/`created`/`create`, `UPDATE`/`updated`, `DELETE`/`deleted`.
    pub fn parse(name: &str) -> Operation {
        match name.trim().to_ascii_uppercase().as_str() {
            "INSERT" | "CREATED" | "CREATE" => Operation::Insert,
            "UPDATE" | "UPDATED" => Operation::Update,
            "DELETE" | "DELETED" => Operation::Delete,
            other => Operation::Other(other.to_string()),
        }
    }

    /// The canonical upper-case name (`INSERT`, `UPDATE`, `DELETE`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Other(name) => name,
        }
    }
}

impl From<String> for Operation {
    fn from(name: String) -> Self {
        Operation::parse(&name)
    }
}

impl From<Operation> for String {
    fn from(op: Operation) -> Self {
        op.as_str().to_string()
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which envelope an event arrived in; kept for logs, plugins and the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `{"event": "fraiseql.order.created", "entity_type": ..., "entity": {...}}`
    Fraiseql,
    /// A Hasura event-trigger payload.
    Hasura,
    /// wasmhook's own envelope (see the README).
    Native,
    /// FraiseQL v2's `EntityEvent`, as its observer transport publishes it
    /// (`event_type`, `data`, `changes`).
    #[serde(rename = "fraiseql-v2")]
    FraiseqlV2,
    /// A FraiseQL change-log row: the CDC sinks' `ChangeEvent` (`object_type`,
    /// `op`, `after`, `before`) or a row of `core.tb_entity_change_log`.
    #[serde(rename = "fraiseql-cdc")]
    FraiseqlCdc,
}

/// Facts about a change beyond its rows that envelopes may carry; each is
/// kept in [`Event::meta`] under this name and reached by conditions and
/// templates as `_` + name (`_tenant_id`, `_trace_context.traceparent`,
/// `_session.x-hasura-user-id`).
pub const META_FIELDS: [&str; 10] = [
    "tenant_id",
    "user_id",
    "actor_type",
    "acting_for",
    "trace_context",
    "seq",
    // Hasura's event triggers: the trigger's name, the table's schema, the
    // session variables of the mutation and the delivery counters.
    "trigger",
    "schema",
    "session",
    "delivery_info",
];

/// A database mutation, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's id: from the envelope when it has one, otherwise generated
    /// at ingest so that every accepted event can be named in logs and the DLQ.
    pub id: String,
    /// Entity type or table name as sent (`Order`, `orders`); observers match it
    /// case-insensitively.
    pub entity: String,
    /// What happened to the row.
    pub operation: Operation,
    /// The row's id (`entity_id`, or the row's `id` field), if known.
    pub entity_id: Option<String>,
    /// When the mutation happened, RFC 3339 as the envelope gave it.
    pub timestamp: String,
    /// The envelope the event arrived in.
    pub envelope: Envelope,
    /// Where it came from (`http`, `nats:fraiseql.order.created`, ...).
    pub source: String,
    /// The row after the mutation (before it, for a DELETE without `old`).
    pub data: Value,
    /// The row before the mutation, when the envelope carries it.
    pub old: Option<Value>,
    /// The envelope's facts beyond the rows, by their [`META_FIELDS`] names;
    /// absent ones are not kept.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, Value>,
}

impl Event {
    /// Looks up a dotted path (`customer.address.country`) in the new row.
    pub fn field(&self, path: &str) -> Option<&Value> {
        lookup(&self.data, path)
    }

    /// Looks up a dotted path in the metadata (`tenant_id`,
    /// `trace_context.traceparent`).
    pub fn meta_field(&self, path: &str) -> Option<&Value> {
        let (name, rest) = match path.split_once('.') {
            Some((name, rest)) => (name, Some(rest)),
            None => (path, None),
        };
        let value = self.meta.get(name)?;
        match rest {
            Some(rest) => lookup(value, rest),
            None => Some(value),
        }
    }

    /// Whether the event is about `name`: its entity, case-insensitively,
    /// or `schema.table` when the envelope names the table's schema
    /// (Hasura's `table.schema`), so same-named tables of two schemas can
    /// be told apart.
    pub fn is_entity(&self, name: &str) -> bool {
        if name.eq_ignore_ascii_case(&self.entity) {
            return true;
        }
        match (name.rsplit_once('.'), self.meta.get("schema")) {
            (Some((schema, table)), Some(Value::String(own))) => {
                table.eq_ignore_ascii_case(&self.entity) && schema.eq_ignore_ascii_case(own)
            }
            _ => false,
        }
    }

    /// Looks up a dotted path in the previous row, if there is one.
    pub fn old_field(&self, path: &str) -> Option<&Value> {
        self.old.as_ref().and_then(|old| lookup(old, path))
    }

    /// The fields whose value differs between `old` and `data`, as
    /// `{"field": {"old": .., "new": ..}}`; empty when there is no `old`.
    pub fn changed(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        let (Some(Value::Object(old)), Value::Object(new)) = (&self.old, &self.data) else {
            return out;
        };
        for (key, new_value) in new {
            let old_value = old.get(key).unwrap_or(&Value::Null);
            if old_value != new_value {
                out.insert(key.clone(), change(old_value, new_value));
            }
        }
        for (key, old_value) in old {
            if !new.contains_key(key) {
                out.insert(key.clone(), change(old_value, &Value::Null));
            }
        }
        out
    }
}

fn change(old: &Value, new: &Value) -> Value {
    let mut pair = serde_json::Map::with_capacity(2);
    pair.insert("old".into(), old.clone());
    pair.insert("new".into(), new.clone());
    Value::Object(pair)
}

/// Walks a dotted path through nested objects; array elements are reached by
/// numeric segments (`items.0.sku`).
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// An accepted event as its deliveries hold it: one copy for all the
/// deliveries of the event, written as JSON once however many records hold
/// it in one write (the outbox's and the DLQ's). A deep copy per delivery,
/// and encoding the event again for each record, each cost about as much as
/// the sled insert of the record.
#[derive(Debug, Clone)]
pub struct SharedEvent(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    event: Event,
    /// The event as JSON, once written; `None` inside if it could not be
    /// (it is then written field by field, and fails there).
    json: OnceLock<Option<Box<RawValue>>>,
}

impl From<Event> for SharedEvent {
    fn from(event: Event) -> SharedEvent {
        SharedEvent(Arc::new(Shared {
            event,
            json: OnceLock::new(),
        }))
    }
}

impl Deref for SharedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.0.event
    }
}

impl PartialEq for SharedEvent {
    fn eq(&self, other: &SharedEvent) -> bool {
        self.0.event == other.0.event
    }
}

impl Serialize for SharedEvent {
    fn serialize<S: Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        let json = self
            .0
            .json
            .get_or_init(|| serde_json::value::to_raw_value(&self.0.event).ok());
        match json {
            Some(raw) => raw.serialize(to),
            None => self.0.event.serialize(to),
        }
    }
}

impl<'de> Deserialize<'de> for SharedEvent {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<SharedEvent, D::Error> {
        Event::deserialize(from).map(SharedEvent::from)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// An UPDATE of an order, for tests of the stages after the source.
    pub(crate) fn order_update(old: Value, new: Value) -> Event {
        Event {
            id: "evt-1".into(),
            entity: "Order".into(),
            operation: Operation::Update,
            entity_id: Some("ord-1".into()),
            timestamp: "2026-03-02T14:00:00Z".into(),
            envelope: Envelope::Fraiseql,
            source: "test".into(),
            data: new,
            old: Some(old),
            meta: serde_json::Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shared event is written as the event itself, the same the first
    /// time and the second (from the kept JSON), and read back whole.
    #[test]
    fn a_shared_event_is_written_as_the_event() {
        let event = test_support::order_update(json!({"n": "a\"b"}), json!({"n": "{{ x }}"}));
        let shared = SharedEvent::from(event.clone());
        let plain = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::to_string(&shared).unwrap(), plain);
        assert_eq!(serde_json::to_string(&shared.clone()).unwrap(), plain);
        assert_eq!(
            serde_json::to_value(&shared).unwrap(),
            serde_json::to_value(&event).unwrap()
        );
        let back: SharedEvent = serde_json::from_str(&plain).unwrap();
        assert_eq!(*back, event);
    }

    #[test]
    fn operation_spellings() {
        for (name, op) in [
            ("INSERT", Operation::Insert),
            ("created", Operation::Insert),
            ("update", Operation::Update),
            ("deleted", Operation::Delete),
            ("manual", Operation::Other("MANUAL".into())),
        ] {
            assert_eq!(Operation::parse(name), op, "{name}");
        }
    }

    #[test]
    fn dotted_lookup_reaches_nested_objects_and_arrays() {
        let v = json!({"a": {"b": [{"c": 1}]}});
        assert_eq!(lookup(&v, "a.b.0.c"), Some(&json!(1)));
        assert_eq!(lookup(&v, "a.x"), None);
        assert_eq!(lookup(&v, "a.b.x"), None);
    }

    #[test]
    fn changed_lists_differing_added_and_removed_fields() {
        let e = test_support::order_update(
            json!({"status": "pending", "total": 5, "gone": 1}),
            json!({"status": "shipped", "total": 5, "new": true}),
        );
        assert_eq!(
            Value::Object(e.changed()),
            json!({
                "status": {"old": "pending", "new": "shipped"},
                "new": {"old": null, "new": true},
                "gone": {"old": 1, "new": null},
            })
        );
    }
}
