//! Batch bodies: several rendered bodies of one webhook in one request.
//!
//! Without an array in the `body` template the request is a JSON array of
//! the bodies. With one (the FraiseQL batch example:
//! `body = { orders = [ { id = "{{ id }}" } ], batch_timestamp = "…" }`), the
//! request is the first body with that array holding every body's element,
//! in order.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One request body for `bodies`. A body that is not JSON travels as a
/// JSON string, so nothing is dropped.
pub(super) fn combine(bodies: &[&[u8]], array_path: Option<&[String]>) -> Vec<u8> {
    let values: Vec<Value> = bodies
        .iter()
        .map(|body| {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        })
        .collect();
    if let Some(path) = array_path {
        if let Some(combined) = merge_arrays(&values, path) {
            return combined.to_string().into_bytes();
        }
    }
    Value::Array(values).to_string().into_bytes()
}

/// The first document with the array at `path` replaced by every
/// document's elements there; `None` if a document has no array there.
fn merge_arrays(values: &[Value], path: &[String]) -> Option<Value> {
    let mut items = Vec::with_capacity(values.len());
    for value in values {
        items.extend(array_at(value, path)?.iter().cloned());
    }
    let mut combined = values.first()?.clone();
    let slot = path
        .iter()
        .try_fold(&mut combined, |v, segment| v.get_mut(segment.as_str()))?;
    *slot = Value::Array(items);
    Some(combined)
}

fn array_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Vec<Value>> {
    path.iter()
        .try_fold(value, |v, segment| v.get(segment.as_str()))?
        .as_array()
}

/// The path of the one one-element array in a `body` template, if there is
/// exactly one (objects only; an array inside the element does not count).
pub(crate) fn template_array_path(template: &Value) -> Option<Vec<String>> {
    fn walk(value: &Value, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
        match value {
            Value::Array(items) if items.len() == 1 => found.push(path.clone()),
            Value::Object(map) => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, found);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(template, &mut Vec::new(), &mut found);
    match found.len() {
        1 => found.pop(),
        _ => None,
    }
}

/// A request id for a batch (`X-Wasmhook-Delivery`, `webhook-id`): the
/// same members give the same id, so a retried batch keeps it.
pub(super) fn batch_id(delivery_ids: &[&str]) -> String {
    let mut hash = Sha256::new();
    for id in delivery_ids {
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    format!("batch_{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_become_an_array_without_a_template_array() {
        let out = combine(&[br#"{"id":1}"#, br#"{"id":2}"#, b"plain"], None);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!([{"id": 1}, {"id": 2}, "plain"])
        );
    }

    #[test]
    fn the_fraiseql_batch_example_repeats_the_element() {
        let template = json!({"orders": [{"id": "{{ id }}", "total": "{{ total }}"}],
                              "batch_timestamp": "{{ _timestamp }}"});
        let path = template_array_path(&template).unwrap();
        assert_eq!(path, vec!["orders".to_string()]);
        let a = json!({"orders": [{"id": 1, "total": 10}], "batch_timestamp": "t1"}).to_string();
        let b = json!({"orders": [{"id": 2, "total": 20}], "batch_timestamp": "t2"}).to_string();
        let out = combine(&[a.as_bytes(), b.as_bytes()], Some(&path));
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"orders": [{"id": 1, "total": 10}, {"id": 2, "total": 20}], "batch_timestamp": "t1"})
        );
    }

    #[test]
    fn ambiguous_templates_fall_back_to_an_array() {
        assert_eq!(template_array_path(&json!({"a": [1], "b": [2]})), None);
        assert_eq!(template_array_path(&json!({"a": [1, 2]})), None);
        assert_eq!(
            template_array_path(&json!({"x": {"items": [{"tags": [1, 2]}]}})),
            Some(vec!["x".to_string(), "items".to_string()])
        );
    }

    #[test]
    fn batch_ids_follow_the_members() {
        assert_eq!(batch_id(&["a", "b"]), batch_id(&["a", "b"]));
        assert_ne!(batch_id(&["a", "b"]), batch_id(&["a", "c"]));
        assert_ne!(batch_id(&["ab"]), batch_id(&["a", "b"]));
        assert!(batch_id(&["a"]).starts_with("batch_"));
    }
}
