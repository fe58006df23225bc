//! Envelope detection: one JSON document from any source in, an [`Event`]
//! out, or an error that says which envelope it looked like and what is
//! missing.
//!
//! - FraiseQL v2 `EntityEvent` (what FraiseQL's observer transport
//!   publishes): has `entity_type` and `event_type` (with `data`, `changes`).
//! - FraiseQL change-log row, as the CDC sinks publish it (`ChangeEvent`):
//!   has `object_type` and `op` (with `after`, `before`, `seq`).
//! - FraiseQL as its docs describe it: has `entity_type` (with `operation`,
//!   `entity`, optional `old`).
//! - Hasura event trigger: has `table` and `event` (`event.op`, `event.data`).
//! - Native (wasmhook's own): has `entity` as a string and `op`.

use serde_json::{Map, Value};

use crate::clock::{new_id, now_rfc3339};
use crate::event::{Envelope, Event, Operation, META_FIELDS};

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
    if map.contains_key("entity_type")
        && map.contains_key("event_type")
        && !map.contains_key("operation")
    {
        fraiseql_v2(&mut map, source, fallback_id)
    } else if map.contains_key("entity_type") {
        fraiseql(&mut map, source, fallback_id)
    } else if map.contains_key("object_type") && map.contains_key("op") {
        fraiseql_cdc(&mut map, source, fallback_id)
    } else if map.contains_key("table") && map.contains_key("event") {
        hasura(&mut map, source, fallback_id)
    } else if map.get("entity").is_some_and(Value::is_string) && map.contains_key("op") {
        native(&mut map, source, fallback_id)
    } else {
        let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
        Err(EnvelopeError(format!(
            "not a known envelope (keys: {}); expected FraiseQL v2 (entity_type, event_type, data), \
             a FraiseQL change (object_type, op, after), FraiseQL docs-style (entity_type, \
             operation, entity), Hasura (table, event.op, event.data) or native (entity, op, data)",
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
        timestamp: optional_string(map, "timestamp", name)?.unwrap_or_else(now_rfc3339),
        entity,
        operation,
        envelope: Envelope::Fraiseql,
        source: source.to_string(),
        data,
        old,
        meta: Map::new(),
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
    let meta = hasura_meta(map, &mut event);
    Ok(Event {
        id: id_value(map.get("id")).unwrap_or_else(|| fallback_id.unwrap_or_else(new_id)),
        entity_id: row_id(&data),
        timestamp: optional_string(map, "created_at", name)?.unwrap_or_else(now_rfc3339),
        entity,
        operation,
        envelope: Envelope::Hasura,
        source: source.to_string(),
        data,
        old,
        meta,
    })
}

/// What a Hasura payload says beyond the rows: the trigger's name, the
/// table's schema, the session variables (who made the change), the trace
/// context and the delivery counters; what is absent or null is left out.
fn hasura_meta(map: &Map<String, Value>, event: &mut Map<String, Value>) -> Map<String, Value> {
    let mut meta = Map::new();
    let mut keep = |key: &str, value: Option<Value>| {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            meta.insert(key.to_string(), value);
        }
    };
    keep(
        "trigger",
        map.get("trigger").and_then(|t| t.get("name")).cloned(),
    );
    keep(
        "schema",
        map.get("table").and_then(|t| t.get("schema")).cloned(),
    );
    keep("session", event.remove("session_variables"));
    keep("trace_context", event.remove("trace_context"));
    keep("delivery_info", map.get("delivery_info").cloned());
    meta
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
        timestamp: optional_string(map, "timestamp", name)?.unwrap_or_else(now_rfc3339),
        entity,
        operation,
        envelope: Envelope::Native,
        source: source.to_string(),
        data,
        old,
        meta: Map::new(),
    })
}

/// FraiseQL v2's `EntityEvent`. It carries no old row: an UPDATE of a table
/// that keeps a pre-image has `changes` (`{field: {old, new}}`), from which
/// the old row is rebuilt so `_old`, `_changed` and `field.changed()` work.
/// A DELETE carries the row as it was in `data` (or `{}`).
fn fraiseql_v2(
    map: &mut Map<String, Value>,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let name = "FraiseQL v2 event";
    let entity = required_string(map, "entity_type", name)?;
    let operation = Operation::parse(&required_string(map, "event_type", name)?);
    let data = object_or_null(map.remove("data"), "data", name)?
        .unwrap_or_else(|| Value::Object(Map::new()));
    let changes = object_or_null(map.remove("changes"), "changes", name)?;
    let old = match (&operation, changes) {
        (Operation::Delete, _) => non_empty_object(&data).then(|| data.clone()),
        (_, Some(Value::Object(changes))) => Some(rebuild_old(&data, &changes)),
        _ => None,
    };
    let meta = take_meta(map, name)?;
    Ok(Event {
        id: non_empty(optional_string(map, "id", name)?)
            .unwrap_or_else(|| fallback_id.unwrap_or_else(new_id)),
        entity_id: non_empty(optional_string(map, "entity_id", name)?).or_else(|| row_id(&data)),
        timestamp: optional_string(map, "timestamp", name)?.unwrap_or_else(now_rfc3339),
        entity,
        operation,
        envelope: Envelope::FraiseqlV2,
        source: source.to_string(),
        data,
        old,
        meta,
    })
}

/// A FraiseQL change-log row: the CDC sinks' `ChangeEvent`, or a row of
/// `core.tb_entity_change_log` as the change-log source hands it over (with
/// its `id`). Without an `id` the event is named `object_type:seq`, which is
/// also the `Nats-Msg-Id` the sinks send, so redeliveries keep their id.
fn fraiseql_cdc(
    map: &mut Map<String, Value>,
    source: &str,
    fallback_id: Option<String>,
) -> Result<Event, EnvelopeError> {
    let name = "FraiseQL change";
    let entity = required_string(map, "object_type", name)?;
    let operation = Operation::parse(&required_string(map, "op", name)?);
    let after = object_or_null(map.remove("after"), "after", name)?;
    let before = object_or_null(map.remove("before"), "before", name)?;
    let data = match (after, &operation) {
        (Some(row), Operation::Delete) if !non_empty_object(&row) => before.clone().unwrap_or(row),
        (Some(row), _) => row,
        (None, Operation::Insert | Operation::Update) => {
            return Err(EnvelopeError(format!(
                "{name}: \"after\" is required for {operation} and must be an object"
            )))
        }
        (None, _) => before.clone().unwrap_or_else(|| Value::Object(Map::new())),
    };
    let meta = take_meta(map, name)?;
    let sequence_id = id_value(meta.get("seq")).map(|seq| format!("{entity}:{seq}"));
    Ok(Event {
        id: non_empty(optional_string(map, "id", name)?)
            .or(sequence_id)
            .or(fallback_id)
            .unwrap_or_else(new_id),
        entity_id: non_empty(optional_string(map, "object_id", name)?).or_else(|| row_id(&data)),
        timestamp: optional_string(map, "commit_time", name)?
            .or(optional_string(map, "created_at", name)?)
            .unwrap_or_else(now_rfc3339),
        entity,
        operation,
        envelope: Envelope::FraiseqlCdc,
        source: source.to_string(),
        data,
        old: before,
        meta,
    })
}

/// The row before an update, from the row after it and FraiseQL's
/// `changes`: each changed field gets its `old` value back.
fn rebuild_old(data: &Value, changes: &Map<String, Value>) -> Value {
    let mut old = match data {
        Value::Object(row) => row.clone(),
        _ => Map::new(),
    };
    for (field, change) in changes {
        if let Some(value) = change.get("old") {
            old.insert(field.clone(), value.clone());
        }
    }
    Value::Object(old)
}

/// Moves the [`META_FIELDS`] the envelope carries (and that are not null)
/// into the event's metadata.
fn take_meta(
    map: &mut Map<String, Value>,
    name: &str,
) -> Result<Map<String, Value>, EnvelopeError> {
    let mut meta = Map::new();
    for field in META_FIELDS {
        match map.remove(field) {
            None | Some(Value::Null) => {}
            Some(value @ (Value::String(_) | Value::Number(_))) if field != "trace_context" => {
                meta.insert(field.to_string(), value);
            }
            Some(value @ (Value::Object(_) | Value::String(_))) if field == "trace_context" => {
                meta.insert(field.to_string(), value);
            }
            Some(other) => {
                return Err(EnvelopeError(format!(
                    "{name}: \"{field}\" must be {}, found {}",
                    if field == "trace_context" {
                        "an object or a string"
                    } else {
                        "a string or a number"
                    },
                    kind(&other)
                )))
            }
        }
    }
    Ok(meta)
}

fn non_empty_object(value: &Value) -> bool {
    matches!(value, Value::Object(map) if !map.is_empty())
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
        assert_eq!(
            Value::Object(e.meta.clone()),
            json!({"trigger": "order_trigger", "schema": "public"})
        );
    }

    /// A Hasura payload as its docs show it, in full: who made the change
    /// and the table's schema are kept, so same-named tables of two
    /// schemas are told apart.
    #[test]
    fn hasura_metadata_is_kept() {
        let e = ok(json!({
            "id": "85558393-c75d-4d2f-9c15-e80591b83894", "created_at": "2018-09-05T07:40:51.337101",
            "table": {"schema": "billing", "name": "orders"}, "trigger": {"name": "order_trigger"},
            "delivery_info": {"max_retries": 3, "current_retry": 0},
            "event": {"op": "UPDATE", "data": {"old": {"id": 7, "total": 10}, "new": {"id": 7, "total": 12}},
                "session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "42"},
                "trace_context": {"trace_id": "abc", "span_id": "def"}}
        }));
        assert_eq!(e.meta_field("session.x-hasura-user-id"), Some(&json!("42")));
        assert_eq!(e.meta_field("trace_context.trace_id"), Some(&json!("abc")));
        assert_eq!(e.meta_field("delivery_info.max_retries"), Some(&json!(3)));
        assert!(
            e.is_entity("orders") && e.is_entity("billing.orders") && e.is_entity("Billing.Orders")
        );
        assert!(!e.is_entity("public.orders"));
        assert!(!e.is_entity("billing.users"));
    }

    /// As FraiseQL 2.19's observer transport publishes an update of a table
    /// that keeps a pre-image (`../shared` wire notes).
    fn entity_event(event_type: &str, changes: Value, data: Value) -> Value {
        json!({"id": "3ca6495f-0000-7000-8000-000000000001", "event_type": event_type,
            "entity_type": "Order", "entity_id": "0195f3a2-0000-7000-8000-000000000002",
            "data": data, "changes": changes, "user_id": "u-7", "tenant_id": "t-1",
            "timestamp": "2026-12-07T04:14:57.502040Z", "duration_ms": null, "seq": 2,
            "actor_type": "user", "acting_for": null, "schema_version": null,
            "cdc_source": "fallback_trigger"})
    }

    #[test]
    fn fraiseql_v2_update_rebuilds_the_old_row_from_changes() {
        let e = ok(entity_event(
            "UPDATE",
            json!({"status": {"old": "paid", "new": "shipped"}, "note": {"old": null, "new": "x"}}),
            json!({"id": "0195f3a2", "total": 1500, "status": "shipped", "note": "x"}),
        ));
        assert_eq!(
            (e.entity.as_str(), &e.operation),
            ("Order", &Operation::Update)
        );
        assert_eq!(e.envelope, Envelope::FraiseqlV2);
        assert_eq!(e.id, "3ca6495f-0000-7000-8000-000000000001");
        assert_eq!(
            e.entity_id.as_deref(),
            Some("0195f3a2-0000-7000-8000-000000000002")
        );
        assert_eq!(e.timestamp, "2026-12-07T04:14:57.502040Z");
        assert_eq!(
            e.old,
            Some(json!({"id": "0195f3a2", "total": 1500, "status": "paid", "note": null})),
            "changed fields get their old values"
        );
        assert_eq!(
            Value::Object(e.changed()),
            json!({"status": {"old": "paid", "new": "shipped"}, "note": {"old": null, "new": "x"}})
        );
        assert_eq!(
            Value::Object(e.meta.clone()),
            json!({"tenant_id": "t-1", "user_id": "u-7", "actor_type": "user", "seq": 2})
        );
    }

    #[test]
    fn fraiseql_v2_operations_in_any_case_and_without_changes() {
        let insert = ok(entity_event("insert", Value::Null, json!({"id": 1})));
        assert_eq!(
            (&insert.operation, &insert.old),
            (&Operation::Insert, &None)
        );
        let custom = ok(entity_event("CUSTOM", Value::Null, Value::Null));
        assert_eq!(custom.operation, Operation::Other("CUSTOM".into()));
        assert_eq!(custom.data, json!({}));
        let update = ok(entity_event(
            "UPDATE",
            Value::Null,
            json!({"id": 1, "s": "a"}),
        ));
        assert_eq!(update.old, None, "no pre-image: nothing to rebuild");
        let delete = ok(entity_event(
            "DELETE",
            Value::Null,
            json!({"id": 1, "s": "a"}),
        ));
        assert_eq!(delete.data, json!({"id": 1, "s": "a"}));
        assert_eq!(
            delete.old,
            Some(json!({"id": 1, "s": "a"})),
            "the row as it was"
        );
        let gone = ok(entity_event("DELETE", Value::Null, json!({})));
        assert_eq!(gone.old, None);
    }

    /// As the CDC sinks publish a change (`ChangeEvent`).
    fn change_event(op: &str, after: Value, before: Value) -> Value {
        json!({"seq": 2, "object_type": "Order", "op": op, "tenant_id": null,
            "object_id": "0195f3a2", "after": after, "before": before,
            "commit_time": "2026-12-07T04:14:57.503393Z"})
    }

    #[test]
    fn fraiseql_cdc_changes_map_rows_and_name_the_event_by_sequence() {
        let e = ok(change_event(
            "update",
            json!({"id": "0195f3a2", "status": "shipped"}),
            json!({"id": "0195f3a2", "status": "paid"}),
        ));
        assert_eq!(
            (e.entity.as_str(), &e.operation),
            ("Order", &Operation::Update)
        );
        assert_eq!(e.envelope, Envelope::FraiseqlCdc);
        assert_eq!(e.id, "Order:2", "the sinks' Nats-Msg-Id");
        assert_eq!(e.entity_id.as_deref(), Some("0195f3a2"));
        assert_eq!(e.timestamp, "2026-12-07T04:14:57.503393Z");
        assert_eq!(e.changed().len(), 1);
        assert_eq!(Value::Object(e.meta.clone()), json!({"seq": 2}));
        let delete = ok(change_event(
            "delete",
            Value::Null,
            json!({"id": "x", "s": 1}),
        ));
        assert_eq!(
            (&delete.operation, &delete.data),
            (&Operation::Delete, &json!({"id": "x", "s": 1}))
        );
        let custom = ok(change_event("custom", Value::Null, Value::Null));
        assert_eq!(
            (custom.operation.as_str(), &custom.data),
            ("CUSTOM", &json!({}))
        );
        let mut row = change_event("insert", json!({"id": 1}), Value::Null);
        row["id"] = json!("0195f3a2-aaaa");
        assert_eq!(
            ok(row).id,
            "0195f3a2-aaaa",
            "a change-log row keeps its own id"
        );
    }

    #[test]
    fn fraiseql_v2_and_cdc_errors_name_the_field() {
        for (document, expected) in [
            (
                json!({"entity_type": "O", "event_type": 3}),
                "FraiseQL v2 event: \"event_type\" must be a non-empty string, found a number",
            ),
            (
                json!({"entity_type": "O", "event_type": "UPDATE", "data": [1]}),
                "FraiseQL v2 event: \"data\" must be an object, found an array",
            ),
            (
                json!({"entity_type": "O", "event_type": "UPDATE", "data": {}, "tenant_id": [1]}),
                "\"tenant_id\" must be a string or a number, found an array",
            ),
            (
                json!({"object_type": "O", "op": "insert", "after": null}),
                "FraiseQL change: \"after\" is required for INSERT",
            ),
        ] {
            let message = err(document.clone());
            assert!(message.contains(expected), "{document}: {message}");
        }
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
