//! Events the tests publish and what they read back: FraiseQL envelopes,
//! delivery counts and Prometheus samples.

use super::receiver::Received;

/// A FraiseQL envelope for an order.
pub fn fraiseql_order(
    operation: &str,
    entity: serde_json::Value,
    old: Option<serde_json::Value>,
) -> serde_json::Value {
    let id = entity["id"].clone();
    let mut event = serde_json::json!({
        "event": format!("fraiseql.order.{operation}"),
        "entity_type": "Order",
        "operation": operation,
        "entity_id": id,
        "entity": entity,
        "timestamp": "2026-03-02T14:00:00Z",
    });
    if let Some(old) = old {
        event["old"] = old;
    }
    event
}

/// Entity id -> how many times it was delivered (2xx answers).
pub fn delivered(requests: &[Received]) -> std::collections::HashMap<i64, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in requests.iter().filter(|r| r.status == 200) {
        *counts.entry(r.json()["id"].as_i64().unwrap()).or_default() += 1;
    }
    counts
}

/// The sum of a metric's samples in Prometheus text: lines named `name`
/// (followed by labels or a space); `None` when there is none. Give the
/// labels too (`name{a="b"}`) to pick one sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
