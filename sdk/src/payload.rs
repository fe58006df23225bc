//! What a transform returns.

use serde::Serialize;

use crate::Error;

/// A webhook request body plus how to describe it.
///
/// The host sends `body` as it is, adds `headers` after the webhook's
/// configured ones, and uses `content_type` (default `application/json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// The request body.
    pub body: Vec<u8>,
    /// Extra headers as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body's media type; `None` means `application/json`.
    pub content_type: Option<String>,
}

impl Payload {
    /// A body with no content type of its own (the host says `application/json`).
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// `value` serialized as JSON, with content type `application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|error| Error::failed(format!("cannot serialize the payload: {error}")))?;
        Ok(Self::new(body).with_content_type("application/json"))
    }

    /// A UTF-8 text body, with content type `text/plain; charset=utf-8`.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(text.into().into_bytes()).with_content_type("text/plain; charset=utf-8")
    }

    /// Adds a header (after any added before).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the content type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_the_content_type() {
        let payload = Payload::json(&serde_json::json!({"a": 1}))
            .unwrap()
            .with_header("X-A", "1");
        assert_eq!(payload.body, br#"{"a":1}"#);
        assert_eq!(payload.content_type.as_deref(), Some("application/json"));
        assert_eq!(payload.headers, vec![("X-A".into(), "1".into())]);
    }
}
