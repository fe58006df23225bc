//! What the DLQ shows: entries keep the request exactly as sent (a retry
//! must send it again), but listings and `dlq show` hide the parts that
//! carry credentials: values of headers such as `Authorization`, URL
//! passwords and query parameters such as `token`. The CLI and the admin
//! API show letters only through [`DeadLetter::summary`] and
//! [`DeadLetter::redacted`]; `wasmhook check` shows webhook URLs through
//! [`url`].

use super::letter::{DeadLetter, Failure, Summary};

/// Stands for a hidden value.
pub const HIDDEN: &str = "***";

/// Words that mark a header or query parameter as a credential.
const SENSITIVE: &[&str] = &[
    "auth",
    "token",
    "secret",
    "key",
    "signature",
    "password",
    "passwd",
    "cookie",
    "session",
    "credential",
    "sig",
];

/// Whether a header or query parameter named `name` carries a credential.
pub(crate) fn sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE.iter().any(|word| name.contains(word))
}

/// `https://user:pw@host/p?token=x&a=1` -> `https://user:***@host/p?token=***&a=1`.
pub fn url(text: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(text) else {
        return text.to_string();
    };
    let mut changed = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(HIDDEN));
        changed = true;
    }
    if parsed.query_pairs().any(|(k, _)| sensitive(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if sensitive(&k) {
                    HIDDEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    // Untouched URLs are shown exactly as configured, not re-serialised.
    if changed {
        parsed.to_string()
    } else {
        text.to_string()
    }
}

/// Hides the values of headers that carry credentials.
pub(crate) fn headers(headers: &mut [(String, String)]) {
    for (name, value) in headers {
        if sensitive(name) {
            *value = HIDDEN.to_string();
        }
    }
}

impl DeadLetter {
    /// The flat view of this entry, its URL's credentials hidden.
    pub fn summary(&self) -> Summary {
        let failed_at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.failed_at_ms),
        )
        .to_string();
        match &self.failure {
            Failure::Delivery(d) => {
                let last = d.attempts.last();
                Summary {
                    id: self.id.clone(),
                    observer: d.observer.clone(),
                    url: d.payload.as_ref().map(|p| url(&p.url)).unwrap_or_default(),
                    event_id: d.event.id.clone(),
                    attempts: d.attempts.len(),
                    last_status: last.and_then(|a| a.status),
                    last_error: last
                        .and_then(|a| a.error.clone())
                        .or_else(|| Some(self.reason.clone())),
                    reason: self.reason.clone(),
                    failed_at,
                }
            }
            Failure::Input { source, .. } => Summary {
                id: self.id.clone(),
                observer: String::new(),
                url: String::new(),
                event_id: String::new(),
                attempts: 0,
                last_status: None,
                last_error: Some(format!("{source}: {}", self.reason)),
                reason: self.reason.clone(),
                failed_at,
            },
        }
    }

    /// This entry as shown to people: credentials hidden.
    pub fn redacted(&self) -> DeadLetter {
        let mut letter = self.clone();
        if let Failure::Delivery(delivery) = &mut letter.failure {
            if let Some(payload) = &mut delivery.payload {
                payload.url = url(&payload.url);
                headers(&mut payload.headers);
            }
        }
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(
            url("https://u:pw@hooks.example.com/in?token=abc&team=7&api_key=k"),
            "https://u:***@hooks.example.com/in?token=***&team=7&api_key=***"
        );
        assert_eq!(url("http://x/plain"), "http://x/plain");
        assert_eq!(
            url("http://[::ffff:127.0.0.1]:1/m?a=1"),
            "http://[::ffff:127.0.0.1]:1/m?a=1"
        );
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn credential_headers_are_hidden() {
        for name in [
            "Authorization",
            "X-Api-Key",
            "X-Auth-Token",
            "Cookie",
            "X-Signature",
        ] {
            assert!(sensitive(name), "{name}");
        }
        for name in ["Content-Type", "X-Instance", "Accept"] {
            assert!(!sensitive(name), "{name}");
        }
    }
}
