//! Envelope detection: one JSON document from any source in, an [`Event`]
//! out, or an error that says which envelope it looked like and what is
//! missing.
//!
//! - FraiseQL: has `entity_type` (with `operation`, `entity`, optional `old`).
//! - Hasura event trigger: has `table` and `event` (`event.op`, `event.data`).
//! - Native (wasmhook's own): has `entity` as a string and `op`.

use serde_json::{Map, Value};

use crate::event::{Envelope, Event, Operation};

/// Why a document is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Reads one document; `source` is recorded on the event.
pub fn parse(document: Value, source: &str) -> Result<Event, EnvelopeError> {
    parse_keyed(document, source, None)
}

/// As [`parse`], with the id to use when the envelope carries none. Durable
/// sources pass one derived from the bus position (stream sequence, entry
/// id, log row), so a redelivered message keeps its event id.
pub fn parse_keyed(
    document: Value,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let Value::Object(mut map) = document else {
        return Err(EnvelopeError(format!(
            "an event must be a JSON object, found {}",
            kind(&document)
        )));
    };
    if map.contains_key("entity_type") {
        fraiseql(&mut map, source, fallback_id)
    } else if map.contains_key("table") && map.contains_key("event") {
        hasura(&mut map, source, fallback_id)
    } else if map.get("entity").is_some_and(Value::is_string) && map.contains_key("op") {
        native(&mut map, source, fallback_id)
    } else {
        let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
        Err(EnvelopeError(format!(
            "not a known envelope (keys: {}); expected FraiseQL (entity_type, operation, entity), \
             Hasura (table, event.op, event.data) or native (entity, op, data)",
            keys.join(", ")
        )))
    }
}

fn fraiseql(
    map: &mut Map<String, Value>,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let name = "FraiseQL event";
    let entity = required_string(map, "entity_type", name)?;
    let operation = Operation::parse(&required_string(map, "operation", name)?);
    let old = object_or_null(map.remove("old"), "old", name)?;
    let data = object_or_null(map.remove("entity"), "entity", name)?;
    let data = data_for(&operation, data, &old, "entity", name)?;
    Ok(Event {
        // An empty id names nothing, as in the other envelopes (`id_value`).
        id: non_empty(optional_string(map, "id", name)?)
            .or(non_empty(optional_string(map, "event_id", name)?))
            .unwrap_or_else(|| fallback_id.unwrap_or_else(new_id)),
        entity_id: non_empty(optional_string(map, "entity_id", name)?).or_else(|| row_id(&data)),
        timestamp: optional_string(map, "timestamp", name)?.unwrap_or_else(now),
        entity,
        operation,
        envelope: Envelope::Fraiseql,
        source: source.to_string(),
        data,
        old,
    })
}

fn hasura(
    map: &mut Map<String, Value>,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let name = "Hasura event";
    let Some(Value::Object(table)) = map.get("table") else {
        return Err(EnvelopeError(format!(
            "{name}: \"table\" must be an object with \"name\""
        )));
    };
    let entity = match table.get("name") {
        Some(Value::String(table_name)) if !table_name.is_empty() => table_name.clone(),
        _ => {
            return Err(EnvelopeError(format!(
                "{name}: \"table.name\" must be a non-empty string"
            )))
        }
    };
    let Some(Value::Object(mut event)) = map.remove("event") else {
        return Err(EnvelopeError(format!(
            "{name}: \"event\" must be an object"
        )));
    };
    let operation = Operation::parse(&required_string(&mut event, "op", name).map_err(|_| {
        EnvelopeError(format!(
            "{name}: \"event.op\" must be a string such as \"INSERT\""
        ))
    })?);
    let Some(Value::Object(mut rows)) = event.remove("data") else {
        return Err(EnvelopeError(format!(
            "{name}: \"event.data\" must be an object with \"old\" and \"new\""
        )));
    };
    let old = object_or_null(rows.remove("old"), "event.data.old", name)?;
    let new = object_or_null(rows.remove("new"), "event.data.new", name)?;
    let data = data_for(&operation, new, &old, "event.data.new", name)?;
    Ok(Event {
        id: id_value(map.get("id")).unwrap_or_else(|| fallback_id.unwrap_or_else(new_id)),
        entity_id: row_id(&data),
        timestamp: optional_string(map, "created_at", name)?.unwrap_or_else(now),
        entity,
        operation,
        envelope: Envelope::Hasura,
        source: source.to_string(),
        data,
        old,
    })
}

fn native(
    map: &mut Map<String, Value>,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let name = "native event";
    let entity = required_string(map, "entity", name)?;
    let operation = Operation::parse(&required_string(map, "op", name)?);
    let old = object_or_null(map.remove("old"), "old", name)?;
    let data = object_or_null(map.remove("data"), "data", name)?;
    let data = data_for(&operation, data, &old, "data", name)?;
    Ok(Event {
        id: id_value(map.get("id")).unwrap_or_else(|| fallback_id.unwrap_or_else(new_id)),
        entity_id: match map.get("entity_id") {
            Some(value) => id_value(Some(value)),
            None => row_id(&data),
        },
        timestamp: optional_string(map, "timestamp", name)?.unwrap_or_else(now),
        entity,
        operation,
        envelope: Envelope::Native,
        source: source.to_string(),
        data,
        old,
    })
}

/// The row an observer sees: the new row, or for a DELETE without one, the
/// old row, so `{{ id }}` still renders for deletions.
fn data_for(
    operation: &Operation,
    data: Option<Value>,
    old: &Option<Value>,
    key: &str,
    name: &str,
) -> Result<Value, EnvelopeError> {
    match (data, operation) {
        (Some(row), _) => Ok(row),
        (None, Operation::Delete) => Ok(old.clone().unwrap_or(Value::Null)),
        (None, op) => Err(EnvelopeError(format!(
            "{name}: \"{key}\" is required for {op} and must be an object"
        ))),
    }
}

fn required_string(
    map: &mut Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<String, EnvelopeError> {
    match map.remove(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(other) => Err(EnvelopeError(format!(
            "{name}: \"{key}\" must be a non-empty string, found {}",
            kind(&other)
        ))),
        None => Err(EnvelopeError(format!("{name}: \"{key}\" is missing"))),
    }
}

fn optional_string(
    map: &mut Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<Option<String>, EnvelopeError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(EnvelopeError(format!(
            "{name}: \"{key}\" must be a string, found {}",
            kind(&other)
        ))),
    }
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

fn object_or_null(
    value: Option<Value>,
    key: &str,
    name: &str,
) -> Result<Option<Value>, EnvelopeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object)),
        Some(other) => Err(EnvelopeError(format!(
            "{name}: \"{key}\" must be an object, found {}",
            kind(&other)
        ))),
    }
}

fn id_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn row_id(row: &Value) -> Option<String> {
    id_value(row.get("id"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A new event id; v7 UUIDs sort by creation time, which keeps DLQ listings
/// in order.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time as RFC 3339, for events that carry no timestamp.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(document: Value) -> Event {
        parse(document, "test").unwrap()
    }

    fn err(document: Value) -> String {
        parse(document, "test").unwrap_err().0
    }

    #[test]
    fn fraiseql_envelope() {
        let e = ok(json!({
            "event": "fraiseql.order.updated", "entity_type": "Order", "operation": "updated",
            "entity_id": "550e8400", "entity": {"id": "550e8400", "status": "shipped"},
            "old": {"id": "550e8400", "status": "paid"}, "timestamp": "2026-03-02T14:00:00Z"
        }));
        assert_eq!(
            (e.entity.as_str(), &e.operation),
            ("Order", &Operation::Update)
        );
        assert_eq!(e.entity_id.as_deref(), Some("550e8400"));
        assert_eq!(e.timestamp, "2026-03-02T14:00:00Z");
        assert_eq!(e.envelope, Envelope::Fraiseql);
        assert_eq!(e.old, Some(json!({"id": "550e8400", "status": "paid"})));
        assert_eq!(e.changed().len(), 1);
        assert_eq!(e.id.len(), 36, "a generated uuid");
    }

    #[test]
    fn hasura_envelope() {
        let e = ok(json!({
            "id": "85558393-c75d-4d2f-9c15-e80591b83894", "created_at": "2018-09-05T07:40:51.337101",
            "table": {"schema": "public", "name": "orders"}, "trigger": {"name": "order_trigger"},
            "event": {"op": "DELETE", "data": {"old": {"id": 7, "total": 10}, "new": null}}
        }));
        assert_eq!(
            (e.entity.as_str(), &e.operation),
            ("orders", &Operation::Delete)
        );
        assert_eq!(e.id, "85558393-c75d-4d2f-9c15-e80591b83894");
        assert_eq!(e.entity_id.as_deref(), Some("7"));
        assert_eq!(
            e.data,
            json!({"id": 7, "total": 10}),
            "a DELETE sees the old row"
        );
        assert_eq!(e.timestamp, "2018-09-05T07:40:51.337101");
    }

    #[test]
    fn native_envelope() {
        let e = ok(json!({"entity": "user", "op": "INSERT", "data": {"id": 3}, "id": "e-1"}));
        assert_eq!(
            (e.entity.as_str(), &e.operation, e.id.as_str()),
            ("user", &Operation::Insert, "e-1")
        );
        assert_eq!(e.entity_id.as_deref(), Some("3"));
        assert_eq!(e.envelope, Envelope::Native);
        assert!(e.timestamp.ends_with('Z'));
    }

    #[test]
    fn errors_name_the_envelope_and_the_field() {
        for (document, expected) in [
            (json!([1]), "must be a JSON object, found an array"),
            (json!({"foo": 1}), "not a known envelope (keys: foo)"),
            (
                json!({"entity_type": "order", "entity": {}}),
                "FraiseQL event: \"operation\" is missing",
            ),
            (
                json!({"entity_type": 5, "operation": "created"}),
                "\"entity_type\" must be a non-empty string, found a number",
            ),
            (
                json!({"entity_type": "o", "operation": "created"}),
                "\"entity\" is required for INSERT",
            ),
            (
                json!({"entity_type": "o", "operation": "created", "entity": [1]}),
                "\"entity\" must be an object, found an array",
            ),
            (
                json!({"table": {"name": "t"}, "event": {"data": {}}}),
                "\"event.op\" must be a string",
            ),
            (
                json!({"table": "t", "event": {}}),
                "\"table\" must be an object",
            ),
            (
                json!({"table": {"name": "t"}, "event": {"op": "UPDATE"}}),
                "\"event.data\" must be an object",
            ),
            (
                json!({"entity": "u", "op": "UPDATE", "data": "x"}),
                "native event: \"data\" must be an object",
            ),
        ] {
            let message = err(document.clone());
            assert!(message.contains(expected), "{document}: {message}");
        }
    }

    #[test]
    fn empty_ids_count_as_absent_in_every_envelope() {
        // Found by the `envelope` fuzz target: FraiseQL kept `""` as the id.
        let fraiseql = ok(json!({
            "entity_type": "o", "operation": "created", "entity": {"id": 7},
            "id": "", "event_id": "", "entity_id": ""
        }));
        assert_eq!(fraiseql.id.len(), 36, "a generated uuid");
        assert_eq!(fraiseql.entity_id.as_deref(), Some("7"));
        let fallback = parse_keyed(
            json!({"entity_type": "o", "operation": "created", "entity": {}, "id": ""}),
            "test",
            Some("stream:1".into()),
        )
        .unwrap();
        assert_eq!(fallback.id, "stream:1");
        let native = ok(json!({"entity": "o", "op": "INSERT", "data": {}, "id": ""}));
        assert_eq!(native.id.len(), 36, "a generated uuid");
    }
}
