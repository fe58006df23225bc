//! What a verifier receives and returns.

/// An incoming webhook request, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body (for tests).
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            ..Self::default()
        }
    }

    /// Adds a header (for tests).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (for tests).
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The HTTP method, as received (`POST`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request path, as received.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Every header as `(name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`, compared case-insensitively.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw body bytes: signatures are computed over these.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A verifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request is authentic.
    Ok,
    /// The request is not, and why.
    Rejected(String),
}

impl Verdict {
    /// Rejects with a reason.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_case_insensitive() {
        let request = Request::new("POST", "/hook")
            .with_header("X-Sig", "a")
            .with_header("x-sig", "b");
        assert_eq!(request.header("x-SIG"), Some("a"));
        assert_eq!(request.header_all("X-SIG").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(request.header("missing"), None);
    }
}
