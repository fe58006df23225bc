//! Bodies in another system's format (`body_format`), so that a handler
//! written for it takes wasmhook's deliveries unchanged, whatever the
//! source: Hasura's event-trigger payload and FraiseQL's `EntityEvent`.

use serde_json::{json, Map, Value};

use crate::event::{Event, Operation};

/// The end of every Hasura body: `delivery_info` comes last, so that each
/// attempt says which retry it is by rewriting only this tail
/// ([`count_retry`]).
const RETRY_TAIL: &[u8] = b"\"current_retry\":0}}";

/// A Hasura event-trigger payload: `{event: {session_variables, op, data:
/// {old, new}, trace_context}, created_at, id, trigger: {name}, table:
/// {schema, name}, delivery_info: {max_retries, current_retry}}`. What the
/// event brought from Hasura (trigger, schema, session, trace context) is
/// kept; otherwise the trigger is `trigger`, the schema `public`.
pub fn hasura(event: &Event, trigger: &str, max_retries: u32, out: &mut Vec<u8>) {
    let meta = |key: &str| event.meta.get(key).cloned().unwrap_or(Value::Null);
    let (old, new) = match &event.operation {
        Operation::Delete => (
            event.old.clone().unwrap_or_else(|| event.data.clone()),
            Value::Null,
        ),
        _ => (event.old.clone().unwrap_or(Value::Null), event.data.clone()),
    };
    let schema = match event.meta.get("schema") {
        Some(Value::String(schema)) => schema.clone(),
        _ => "public".into(),
    };
    let trigger = match event.meta.get("trigger") {
        Some(Value::String(name)) => name.clone(),
        _ => trigger.to_string(),
    };
    let mut body = Map::new();
    body.insert(
        "event".into(),
        json!({
            "session_variables": meta("session"),
            "op": event.operation.as_str(),
            "data": {"old": old, "new": new},
            "trace_context": meta("trace_context"),
        }),
    );
    body.insert("created_at".into(), json!(event.timestamp));
    body.insert("id".into(), json!(event.id));
    body.insert("trigger".into(), json!({ "name": trigger }));
    body.insert(
        "table".into(),
        json!({ "schema": schema, "name": event.entity }),
    );
    // Writing a `Value` into a Vec cannot fail.
    drop(serde_json::to_writer(&mut *out, &Value::Object(body)));
    // `{..}` -> `{..,"delivery_info":{"max_retries":N,"current_retry":0}}`:
    // written by hand to come last, whatever order the map keeps.
    out.pop();
    out.extend_from_slice(
        format!(",\"delivery_info\":{{\"max_retries\":{max_retries},").as_bytes(),
    );
    out.extend_from_slice(RETRY_TAIL);
}

/// A Hasura body as attempt number `attempt` (0 for the first) sends it:
/// `current_retry` set to `attempt`. Other bodies (a transform changed it)
/// are left as they are.
pub fn count_retry(body: &[u8], attempt: usize) -> Option<Vec<u8>> {
    let head = body.strip_suffix(RETRY_TAIL)?;
    if attempt == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(head);
    out.extend_from_slice(format!("\"current_retry\":{attempt}}}}}").as_bytes());
    Some(out)
}

/// FraiseQL's `EntityEvent`, as FraiseQL's observers publish it: `changes`
/// lists the fields whose value changed when the old row is known.
pub fn fraiseql(event: &Event, out: &mut Vec<u8>) {
    let meta = |key: &str| event.meta.get(key).cloned().unwrap_or(Value::Null);
    let changes = match (&event.old, &event.data, &event.operation) {
        (Some(Value::Object(old)), Value::Object(new), Operation::Update) => {
            let mut changes = Map::new();
            for (field, value) in new {
                let before = old.get(field).unwrap_or(&Value::Null);
                if before != value {
                    changes.insert(field.clone(), json!({"old": before, "new": value}));
                }
            }
            Value::Object(changes)
        }
        _ => Value::Null,
    };
    let body = json!({
        "id": event.id,
        "event_type": event.operation.as_str(),
        "entity_type": event.entity,
        "entity_id": event.entity_id,
        "data": event.data,
        "changes": changes,
        "user_id": meta("user_id"),
        "tenant_id": meta("tenant_id"),
        "timestamp": event.timestamp,
        "duration_ms": null,
        "seq": meta("seq"),
        "actor_type": meta("actor_type"),
        "acting_for": meta("acting_for"),
        "schema_version": null,
        "cdc_source": null,
    });
    drop(serde_json::to_writer(out, &body));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::order_update;

    #[test]
    fn a_hasura_body_has_hasuras_shape_and_counts_retries() {
        let mut event = order_update(json!({"status": "paid"}), json!({"status": "shipped"}));
        event
            .meta
            .insert("session".into(), json!({"x-hasura-user-id": "42"}));
        event.meta.insert("schema".into(), json!("billing"));
        let mut body = Vec::new();
        hasura(&event, "on_order", 4, &mut body);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["event"]["op"], "UPDATE");
        assert_eq!(value["event"]["data"]["old"]["status"], "paid");
        assert_eq!(value["event"]["data"]["new"]["status"], "shipped");
        assert_eq!(
            value["event"]["session_variables"]["x-hasura-user-id"],
            "42"
        );
        assert_eq!(value["trigger"]["name"], "on_order");
        assert_eq!(
            value["table"],
            json!({"schema": "billing", "name": "Order"})
        );
        assert_eq!(value["id"], "evt-1");
        assert_eq!(
            value["delivery_info"],
            json!({"max_retries": 4, "current_retry": 0})
        );
        assert_eq!(
            count_retry(&body, 0),
            None,
            "the first attempt sends it as it is"
        );
        let third: Value = serde_json::from_slice(&count_retry(&body, 2).unwrap()).unwrap();
        assert_eq!(third["delivery_info"]["current_retry"], 2);
        assert_eq!(third["event"], value["event"]);
        assert_eq!(count_retry(b"{\"a\":1}", 3), None);
    }

    #[test]
    fn a_delete_has_only_the_old_row() {
        let mut event = order_update(json!({"id": 1}), json!({"id": 1}));
        event.operation = Operation::Delete;
        let mut body = Vec::new();
        hasura(&event, "t", 0, &mut body);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value["event"]["data"],
            json!({"old": {"id": 1}, "new": null})
        );
    }

    #[test]
    fn a_fraiseql_body_lists_changed_fields() {
        let event = order_update(
            json!({"status": "paid", "total": 10}),
            json!({"status": "shipped", "total": 10}),
        );
        let mut body = Vec::new();
        fraiseql(&event, &mut body);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["event_type"], "UPDATE");
        assert_eq!(value["entity_type"], "Order");
        assert_eq!(
            value["changes"],
            json!({"status": {"old": "paid", "new": "shipped"}})
        );
        assert_eq!(value["data"]["total"], 10);
    }
}
