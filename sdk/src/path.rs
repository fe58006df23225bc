//! Dotted paths into JSON values (`customer.email`, `items.0.sku`), the
//! one addressing scheme `Event::get`, its lazily parsed rows and plugins'
//! own code share.

use serde_json::Value;

/// A value inside `root` by dotted path (`customer.email`, `items.0.sku`).
///
/// A segment selects an object's key, or an array's element when it is a
/// decimal index. `""` is `root` itself.
pub fn get_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(root);
    }
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Like [`get_path`], mutably.
pub fn get_path_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path.is_empty() {
        return Some(root);
    }
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get_mut(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(move |i| items.get_mut(i)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_path_mut_reaches_nested_values() {
        let mut row = json!({"a": {"b": [1, 2]}});
        *get_path_mut(&mut row, "a.b.1").unwrap() = json!(3);
        assert_eq!(row, json!({"a": {"b": [1, 3]}}));
    }
}
