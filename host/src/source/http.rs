//! The embedded HTTP source: the body of `POST /events` in, JSON documents
//! out. One event, a JSON array of events, or NDJSON are all accepted; the
//! route itself lives in `crate::server`.

use serde_json::Value;

/// Why a request body holds no events wasmhook can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Splits a request body into documents.
pub fn documents(body: &[u8]) -> Result<Vec<Value>, BodyError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(BodyError(
            "the body is empty; send one event, a JSON array of events, or NDJSON".into(),
        ));
    };
    if body[start] == b'[' {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) if items.is_empty() => {
                Err(BodyError("the array holds no events".into()))
            }
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err(BodyError("expected a JSON array".into())),
            Err(e) => Err(BodyError(format!(
                "invalid JSON at line {}, column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e)
            ))),
        };
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .map(|item| {
            item.map_err(|e| {
                BodyError(format!(
                    "invalid JSON at line {}, column {}: {}",
                    e.line(),
                    e.column(),
                    strip_position(&e)
                ))
            })
        })
        .collect()
}

/// serde_json appends " at line L column C" to its messages; we say it first.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_or_ndjson() {
        assert_eq!(documents(br#" {"a":1} "#).unwrap().len(), 1);
        assert_eq!(documents(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert_eq!(
            documents(b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n")
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn errors_say_where() {
        for (body, expected) in [
            (&b""[..], "the body is empty"),
            (b"  \n", "the body is empty"),
            (b"[]", "the array holds no events"),
            (
                b"{\"a\":1}\n{\"a\":",
                "invalid JSON at line 2, column 5: EOF while parsing a value",
            ),
            (
                b"[{\"a\":1},]",
                "invalid JSON at line 1, column 10: trailing comma",
            ),
            (
                b"{\"a\" 1}",
                "invalid JSON at line 1, column 6: expected `:`",
            ),
        ] {
            let message = documents(body).unwrap_err().0;
            assert!(
                message.starts_with(expected),
                "{:?}: {message}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
