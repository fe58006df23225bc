//! The incoming stage's verification: a request's headers, its raw body
//! bytes, the configured secrets and the current time in; a verdict out.
//!
//! Every scheme signs the exact bytes the sender put on the wire, so
//! verification must run on the raw body before anything parses or
//! re-serialises it (a JSON round trip reorders keys and changes whitespace,
//! and the signature no longer matches).
//!
//! The module is pure: no I/O and no clock, `now` is a parameter, so each
//! scheme is tested with fixed vectors. Signatures are compared in constant
//! time (`hmac`'s `verify_slice`), because a comparison that stops at the
//! first differing byte tells an attacker, through response timing, how many
//! leading bytes of a forged signature are right, and lets them forge one
//! byte at a time.
//!
//! Schemes, one file each with its own case table: GitHub (`github`), Stripe
//! (`stripe`), FraiseQL v2 (`fraiseql_v2`, Stripe's layout), Standard
//! Webhooks (`standard_webhooks`) and a generic HMAC scheme (`generic`, the
//! one FraiseQL receivers already verify). What they share is here: header
//! lookup, the candidate signatures and their constant-time check, and the
//! timestamp checks.

mod fraiseql_v2;
mod generic;
mod github;
mod standard_webhooks;
mod stripe;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

pub use generic::{Encoding, HmacAlgorithm, HmacScheme, SignatureFormat};

/// How far a signed timestamp may be from `now`, in either direction, unless
/// configured otherwise; Stripe, Standard Webhooks and FraiseQL receivers all
/// default to five minutes.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// Header lookup is case-insensitive, as HTTP header names are; callers pass
/// the request's headers through this trait so the module stays free of any
/// HTTP library.
pub trait Headers {
    /// The value of the first header called `name`, ignoring ASCII case.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }
}

/// How an endpoint's senders sign their requests; chosen per endpoint in the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`,
    /// no timestamp, so replays are caught only by the delivery id.
    Github,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>,...` over `"{t}.{body}"`,
    /// keyed with the whole secret string (not base64-decoded).
    Stripe {
        /// Largest accepted |now - t|, in seconds.
        tolerance_seconds: u64,
    },
    /// FraiseQL v2's observer webhooks: Stripe's layout in
    /// `X-FraiseQL-Signature-256` (`t=<unix>,v1=<hex>` over `"{t}.{body}"`,
    /// keyed with the secret as written), the event id in
    /// `X-FraiseQL-Event-Id`.
    FraiseqlV2 {
        /// Largest accepted |now - t|, in seconds.
        tolerance_seconds: u64,
    },
    /// Standard Webhooks: `v1,<base64>` over `"{id}.{timestamp}.{body}"`,
    /// keyed with the base64-decoded secret (see [`crate::signing::standard::decode_secret`]).
    StandardWebhooks {
        /// Largest accepted |now - timestamp|, in seconds.
        tolerance_seconds: u64,
    },
    /// Generic HMAC-SHA256 (or SHA-512) over `"{timestamp}.{body}"` when a
    /// timestamp header is configured, else over the body.
    Hmac(HmacScheme),
}

/// Why a request is rejected. The HTTP layer answers 401 for every variant
/// without saying which, so a forger learns nothing; logs and metrics use
/// the variant to tell a misconfigured sender from an attack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header (or, when it names `secret`, the configured secret) cannot
    /// be parsed.
    #[error("malformed header {0}")]
    Malformed(String),
    /// The signature is authentic but its timestamp is too far from now: a
    /// replay, a queued retry past the window, or a skewed clock.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No signature matches any secret: a forgery, a modified body or a
    /// wrong secret.
    #[error("signature mismatch")]
    Mismatch,
}

/// The delivery id a scheme carries, the key for replay protection and
/// deduplication: GitHub `X-GitHub-Delivery`, Standard Webhooks `webhook-id`,
/// Stripe the top-level `"id"` of the JSON body. Generic HMAC senders carry
/// none the module knows of, so it is `None`.
///
/// Call it only after [`verify`] accepted the request: before that, the id
/// is whatever an attacker chose.
pub fn delivery_id(
    scheme: &Scheme,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Option<String> {
    match scheme {
        Scheme::Github => header_text(headers, github::DELIVERY),
        Scheme::StandardWebhooks { .. } => header_text(headers, crate::signing::standard::ID),
        Scheme::Stripe { .. } => envelope(body)?.id,
        Scheme::FraiseqlV2 { .. } => header_text(headers, fraiseql_v2::EVENT_ID),
        Scheme::Hmac(_) => None,
    }
}

/// The provider's event type, for routing and metrics: GitHub
/// `X-GitHub-Event` (`push`), Stripe's body `"type"`
/// (`payment_intent.succeeded`), Standard Webhooks' body `"type"` when
/// present; generic HMAC senders have no convention, so `None`.
pub fn event_type(
    scheme: &Scheme,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Option<String> {
    match scheme {
        Scheme::Github => header_text(headers, github::EVENT),
        Scheme::Stripe { .. } | Scheme::StandardWebhooks { .. } => envelope(body)?.kind,
        Scheme::FraiseqlV2 { .. } | Scheme::Hmac(_) => None,
    }
}

/// Verifies a request on its raw `body` bytes at unix time `now`.
///
/// `secrets` may hold several, so a secret can be rotated without a window
/// of rejected requests: the request is accepted if any secret matches any
/// signature it carries. An empty secret never matches, since anyone can
/// compute an HMAC under an empty key. For Standard Webhooks each secret is
/// the key already decoded by [`crate::signing::standard::decode_secret`] at start-up (not
/// the `whsec_...` text), so a bad secret fails the configuration once
/// instead of every request; for the other schemes it is the secret text's
/// bytes as configured.
///
/// The signature is checked before the timestamp's age, so `Stale` is only
/// ever reported for authentic requests (a replay, a late retry or a skewed
/// clock), never for a forgery or a wrong secret.
pub fn verify(
    scheme: &Scheme,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
) -> Result<(), Rejection> {
    match scheme {
        Scheme::Github => github::verify(headers, body, secrets),
        Scheme::Stripe { tolerance_seconds } => {
            stripe::verify(headers, body, secrets, now, *tolerance_seconds)
        }
        Scheme::FraiseqlV2 { tolerance_seconds } => {
            fraiseql_v2::verify(headers, body, secrets, now, *tolerance_seconds)
        }
        Scheme::StandardWebhooks { tolerance_seconds } => {
            standard_webhooks::verify(headers, body, secrets, now, *tolerance_seconds)
        }
        Scheme::Hmac(scheme) => generic::verify(scheme, headers, body, secrets, now),
    }
}

/// The signatures a request carries, decoded, and whether any could not be
/// decoded (which turns a mismatch into a `Malformed` for the logs).
#[derive(Default)]
struct Candidates {
    tags: Vec<Vec<u8>>,
    undecodable: bool,
}

impl Candidates {
    fn push(&mut self, tag: Option<Vec<u8>>) {
        match tag {
            Some(tag) => self.tags.push(tag),
            None => self.undecodable = true,
        }
    }

    /// Accepts if any secret's HMAC over the concatenated `content` equals
    /// any candidate. Each comparison is constant-time; stopping at the
    /// first match only reveals which secret or candidate matched, never
    /// anything about the expected bytes.
    fn check(
        &self,
        header: &str,
        algorithm: HmacAlgorithm,
        secrets: &[&[u8]],
        content: &[&[u8]],
    ) -> Result<(), Rejection> {
        let matched = secrets
            .iter()
            .filter(|secret| !secret.is_empty())
            .any(|secret| match algorithm {
                HmacAlgorithm::Sha256 => self.any_equal(keyed::<Hmac<Sha256>>(secret), content),
                HmacAlgorithm::Sha512 => self.any_equal(keyed::<Hmac<Sha512>>(secret), content),
            });
        if matched {
            Ok(())
        } else if self.undecodable {
            // Nothing matched and some entry was not even decodable: more
            // likely a broken sender than a forger, which the logs should
            // tell apart.
            Err(malformed(header))
        } else {
            Err(Rejection::Mismatch)
        }
    }

    fn any_equal<M: Mac + Clone>(&self, mut mac: M, content: &[&[u8]]) -> bool {
        for part in content {
            mac.update(part);
        }
        // Cloning the keyed state after the content is hashed costs one
        // finalisation per candidate instead of hashing the body again.
        self.tags
            .iter()
            .any(|tag| mac.clone().verify_slice(tag).is_ok())
    }
}

/// An HMAC keyed with `key`.
fn keyed<M: KeyInit>(key: &[u8]) -> M {
    // HMAC hashes long keys and pads short ones, so every length is valid
    // and this cannot fail.
    M::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// Unix seconds written as plain digits. `u64::from_str` alone would also
/// take a leading `+`, and the signed text would then differ from the
/// number's canonical form.
fn parse_unix(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Accepts a timestamp up to `tolerance` seconds either side of `now`:
/// past for delivery delays, future for clock skew.
fn fresh(timestamp: u64, now: u64, tolerance: u64) -> Result<(), Rejection> {
    if timestamp.abs_diff(now) <= tolerance {
        Ok(())
    } else {
        Err(Rejection::Stale)
    }
}

fn required<'h>(headers: &'h (impl Headers + ?Sized), name: &str) -> Result<&'h str, Rejection> {
    headers
        .get(name)
        .map(str::trim)
        .ok_or_else(|| Rejection::MissingHeader(name.to_owned()))
}

fn malformed(name: &str) -> Rejection {
    Rejection::Malformed(name.to_owned())
}

/// A header's trimmed value, if present and not empty.
fn header_text(headers: &(impl Headers + ?Sized), name: &str) -> Option<String> {
    let value = headers.get(name)?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The two top-level fields of a JSON body this module reads. Other fields
/// are skipped without being built, and a non-string `id` or `type` reads as
/// absent instead of failing the whole body.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "string_or_none")]
    id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "string_or_none")]
    kind: Option<String>,
}

fn envelope(body: &[u8]) -> Option<Envelope> {
    serde_json::from_slice(body).ok()
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: serde_json::Value = serde::Deserialize::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::String(text) if !text.is_empty() => Some(text),
        _ => None,
    })
}

/// The case-table harness every scheme's tests share.
#[cfg(test)]
mod cases {
    use super::{verify, Rejection, Scheme};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use Rejection::{Malformed, MissingHeader};

    /// One request against one scheme, and the verdict it must get.
    #[derive(Clone)]
    pub(super) struct Case {
        pub(super) name: &'static str,
        pub(super) headers: Vec<(String, String)>,
        pub(super) body: &'static [u8],
        pub(super) secrets: &'static [&'static [u8]],
        pub(super) now: u64,
        pub(super) expected: Result<(), Rejection>,
    }

    /// Runs every case and reports all failures at once, by name.
    pub(super) fn check(scheme: &Scheme, cases: &[Case]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|case| {
                // The call as the HTTP layer makes it, with a
                // `Vec<(String, String)>` of headers.
                let got = verify(scheme, &case.headers, case.body, case.secrets, case.now);
                (got != case.expected)
                    .then(|| format!("{}: expected {:?}, got {:?}", case.name, case.expected, got))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }

    pub(super) fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    pub(super) fn missing(name: &str) -> Result<(), Rejection> {
        Err(MissingHeader(name.to_owned()))
    }

    pub(super) fn bad(name: &str) -> Result<(), Rejection> {
        Err(Malformed(name.to_owned()))
    }

    pub(super) fn hex_hmac(key: &[u8], content: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(content);
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::cases::headers;
    use super::standard_webhooks::tests::{standard, SW_BODY, SW_ID, SW_SIG};
    use super::stripe::tests::STRIPE_BODY;
    use super::*;

    #[test]
    fn headers_lookup_is_case_insensitive_first_match() {
        let list = headers(&[("Content-Type", "a"), ("content-type", "b")]);
        assert_eq!(Headers::get(&list, "CONTENT-TYPE"), Some("a"));
        assert_eq!(Headers::get(list.as_slice(), "content-type"), Some("a"));
        assert_eq!(Headers::get(&list, "Accept"), None);
    }

    #[test]
    fn delivery_ids_and_event_types() {
        let stripe_scheme = Scheme::Stripe {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        let standard_scheme = Scheme::StandardWebhooks {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        let generic = Scheme::Hmac(HmacScheme::new("X-Signature"));
        let github_headers = headers(&[
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Event", "push"),
        ]);
        let standard_headers = standard(SW_ID, "1", SW_SIG);
        let none = headers(&[]);
        let with_type = br#"{"type":"user.created","data":{"id":"inner"}}"#;
        // (scheme, headers, body, delivery id, event type)
        type Row<'a> = (
            &'a Scheme,
            &'a Vec<(String, String)>,
            &'a [u8],
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Row] = &[
            (
                &Scheme::Github,
                &github_headers,
                b"{}",
                Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                Some("push"),
            ),
            (&Scheme::Github, &none, b"{}", None, None),
            (
                &stripe_scheme,
                &none,
                STRIPE_BODY,
                Some("evt_1NqR4x"),
                Some("payment_intent.succeeded"),
            ),
            // Only top-level fields count, and non-strings read as absent.
            (
                &stripe_scheme,
                &none,
                br#"{"data":{"id":"nested","type":"x"},"id":7}"#,
                None,
                None,
            ),
            (&stripe_scheme, &none, b"not json", None, None),
            (
                &standard_scheme,
                &standard_headers,
                SW_BODY,
                Some(SW_ID),
                None,
            ),
            (
                &standard_scheme,
                &standard_headers,
                with_type,
                Some(SW_ID),
                Some("user.created"),
            ),
            (&generic, &github_headers, STRIPE_BODY, None, None),
        ];
        for (index, (scheme, headers, body, id, kind)) in cases.iter().enumerate() {
            assert_eq!(
                delivery_id(scheme, *headers, body).as_deref(),
                *id,
                "case {index}"
            );
            assert_eq!(
                event_type(scheme, *headers, body).as_deref(),
                *kind,
                "case {index}"
            );
        }
    }
}
