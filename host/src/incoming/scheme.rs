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
//! Schemes: GitHub (`X-Hub-Signature-256`), Stripe (`Stripe-Signature`),
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! and a generic HMAC scheme (the one FraiseQL receivers already verify).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use crate::signing::standard;

/// How far a signed timestamp may be from `now`, in either direction, unless
/// configured otherwise; Stripe, Standard Webhooks and FraiseQL receivers all
/// default to five minutes.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
const GITHUB_DELIVERY: &str = "X-GitHub-Delivery";
const GITHUB_EVENT: &str = "X-GitHub-Event";
const STRIPE_SIGNATURE: &str = "Stripe-Signature";
const FRAISEQL_SIGNATURE: &str = "X-FraiseQL-Signature-256";
const FRAISEQL_EVENT_ID: &str = "X-FraiseQL-Event-Id";
const PLACEHOLDER: &str = "{signature}";

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
    /// keyed with the base64-decoded secret (see [`standard::decode_secret`]).
    StandardWebhooks {
        /// Largest accepted |now - timestamp|, in seconds.
        tolerance_seconds: u64,
    },
    /// Generic HMAC-SHA256 (or SHA-512) over `"{timestamp}.{body}"` when a
    /// timestamp header is configured, else over the body.
    Hmac(HmacScheme),
}

/// A generic HMAC scheme, for senders that follow no named provider; the
/// defaults match what FraiseQL receivers verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    /// The hash under the HMAC.
    pub algorithm: HmacAlgorithm,
    /// The header carrying the signature, e.g. `X-Signature`.
    pub signature_header: String,
    /// The text around the encoded signature, e.g. `sha256={signature}`.
    pub signature_format: SignatureFormat,
    /// How the signature bytes are written in the header.
    pub encoding: Encoding,
    /// The header carrying unix seconds, e.g. `X-Timestamp`; when set, the
    /// signed content is `"{timestamp}.{body}"` and the timestamp must be
    /// within the tolerance, which stops replays of old captured requests.
    pub timestamp_header: Option<String>,
    /// Largest accepted |now - timestamp|, in seconds.
    pub tolerance_seconds: u64,
}

impl HmacScheme {
    /// A scheme with every default: HMAC-SHA256, bare hex signature in
    /// `signature_header`, no timestamp, five minutes' tolerance.
    pub fn new(signature_header: impl Into<String>) -> HmacScheme {
        HmacScheme {
            algorithm: HmacAlgorithm::default(),
            signature_header: signature_header.into(),
            signature_format: SignatureFormat::default(),
            encoding: Encoding::default(),
            timestamp_header: None,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        }
    }
}

/// The hash under a generic HMAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA256, what nearly every sender uses.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How the signature bytes are written in a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case.
    #[default]
    Hex,
    /// Standard base64 with padding (Shopify's style).
    Base64,
}

/// The literal text a sender writes around the encoded signature, parsed
/// once from a template such as `sha256={signature}` so that a bad template
/// fails at start-up rather than on every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureFormat {
    prefix: String,
    suffix: String,
}

impl SignatureFormat {
    /// Parses a template holding `{signature}` exactly once, with any literal
    /// text before and after it.
    pub fn parse(template: &str) -> Result<SignatureFormat, String> {
        match template.split_once(PLACEHOLDER) {
            Some((prefix, suffix)) if !suffix.contains(PLACEHOLDER) => Ok(SignatureFormat {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            }),
            _ => Err(format!(
                "signature format {template:?} must contain {PLACEHOLDER} exactly once"
            )),
        }
    }

    /// The text before the signature.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The text after the signature.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The encoded signature inside `value`, if `value` has the expected
    /// prefix and suffix.
    fn extract<'a>(&self, value: &'a str) -> Option<&'a str> {
        value
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
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
        Scheme::Github => header_text(headers, GITHUB_DELIVERY),
        Scheme::StandardWebhooks { .. } => header_text(headers, standard::ID),
        Scheme::Stripe { .. } => envelope(body)?.id,
        Scheme::FraiseqlV2 { .. } => header_text(headers, FRAISEQL_EVENT_ID),
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
        Scheme::Github => header_text(headers, GITHUB_EVENT),
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
/// the key already decoded by [`standard::decode_secret`] at start-up (not
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
        Scheme::Github => verify_github(headers, body, secrets),
        Scheme::Stripe { tolerance_seconds } => verify_stripe(
            STRIPE_SIGNATURE,
            headers,
            body,
            secrets,
            now,
            *tolerance_seconds,
        ),
        Scheme::FraiseqlV2 { tolerance_seconds } => verify_stripe(
            FRAISEQL_SIGNATURE,
            headers,
            body,
            secrets,
            now,
            *tolerance_seconds,
        ),
        Scheme::StandardWebhooks { tolerance_seconds } => {
            verify_standard(headers, body, secrets, now, *tolerance_seconds)
        }
        Scheme::Hmac(generic) => verify_generic(generic, headers, body, secrets, now),
    }
}

fn verify_github(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
) -> Result<(), Rejection> {
    let value = required(headers, GITHUB_SIGNATURE)?;
    let tag = value
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or_else(|| malformed(GITHUB_SIGNATURE))?;
    let candidates = Candidates {
        tags: vec![tag],
        undecodable: false,
    };
    candidates.check(GITHUB_SIGNATURE, HmacAlgorithm::Sha256, secrets, &[body])
}

/// Stripe's `t=<unix>,v1=<hex>,...` in `header` (FraiseQL v2 uses the same
/// layout under its own header name).
fn verify_stripe(
    header: &'static str,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
    tolerance: u64,
) -> Result<(), Rejection> {
    let value = required(headers, header)?;
    let mut timestamp = None;
    let mut candidates = Candidates::default();
    let mut any_v1 = false;
    for item in value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (key, val) = item.split_once('=').ok_or_else(|| malformed(header))?;
        match key.trim() {
            "t" => {
                // Two timestamps leave it ambiguous which one was signed.
                if timestamp.is_some() {
                    return Err(malformed(header));
                }
                let text = val.trim();
                let seconds = parse_unix(text).ok_or_else(|| malformed(header))?;
                timestamp = Some((text, seconds));
            }
            "v1" => {
                any_v1 = true;
                candidates.push(hex::decode(val.trim()).ok());
            }
            // v0 is Stripe's test-mode scheme and other keys are future
            // schemes; neither is a signature this endpoint can check.
            _ => {}
        }
    }
    let (text, seconds) = timestamp.ok_or_else(|| malformed(header))?;
    if !any_v1 {
        return Err(malformed(header));
    }
    candidates.check(
        header,
        HmacAlgorithm::Sha256,
        secrets,
        &[text.as_bytes(), b".", body],
    )?;
    fresh(seconds, now, tolerance)
}

fn verify_standard(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
    tolerance: u64,
) -> Result<(), Rejection> {
    let id = required(headers, standard::ID)?;
    let text = required(headers, standard::TIMESTAMP)?;
    let value = required(headers, standard::SIGNATURE)?;
    let seconds = parse_unix(text).ok_or_else(|| malformed(standard::TIMESTAMP))?;

    let mut candidates = Candidates::default();
    let mut any_v1 = false;
    for entry in value.split_whitespace() {
        match entry.split_once(',') {
            Some(("v1", encoded)) => {
                any_v1 = true;
                candidates.push(BASE64.decode(encoded).ok());
            }
            // `v1a` is ed25519 and later versions are unknown here; the
            // spec has receivers skip what they cannot check.
            Some(_) => {}
            None => candidates.push(None),
        }
    }
    if !any_v1 {
        return Err(malformed(standard::SIGNATURE));
    }

    candidates.check(
        standard::SIGNATURE,
        HmacAlgorithm::Sha256,
        secrets,
        &standard::content(id, text, body),
    )?;
    fresh(seconds, now, tolerance)
}

fn verify_generic(
    scheme: &HmacScheme,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
) -> Result<(), Rejection> {
    let value = required(headers, &scheme.signature_header)?;
    let timestamp = match &scheme.timestamp_header {
        Some(name) => {
            let text = required(headers, name)?;
            let seconds = parse_unix(text).ok_or_else(|| malformed(name))?;
            Some((text, seconds))
        }
        None => None,
    };
    let tag = scheme
        .signature_format
        .extract(value)
        .and_then(|encoded| match scheme.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => BASE64.decode(encoded).ok(),
        })
        .ok_or_else(|| malformed(&scheme.signature_header))?;
    let candidates = Candidates {
        tags: vec![tag],
        undecodable: false,
    };
    match timestamp {
        Some((text, seconds)) => {
            candidates.check(
                &scheme.signature_header,
                scheme.algorithm,
                secrets,
                &[text.as_bytes(), b".", body],
            )?;
            fresh(seconds, now, scheme.tolerance_seconds)
        }
        None => candidates.check(&scheme.signature_header, scheme.algorithm, secrets, &[body]),
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

#[cfg(test)]
mod tests {
    use super::*;
    use Rejection::{Malformed, Mismatch, MissingHeader, Stale};

    /// One request against one scheme, and the verdict it must get.
    #[derive(Clone)]
    struct Case {
        name: &'static str,
        headers: Vec<(String, String)>,
        body: &'static [u8],
        secrets: &'static [&'static [u8]],
        now: u64,
        expected: Result<(), Rejection>,
    }

    /// Runs every case and reports all failures at once, by name.
    fn check(scheme: &Scheme, cases: &[Case]) {
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

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn missing(name: &str) -> Result<(), Rejection> {
        Err(MissingHeader(name.to_owned()))
    }

    fn bad(name: &str) -> Result<(), Rejection> {
        Err(Malformed(name.to_owned()))
    }

    // GitHub's documented vector.
    const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github() {
        let good = format!("sha256={GH_SIG}");
        let base = Case {
            name: "",
            headers: headers(&[("X-Hub-Signature-256", &good)]),
            body: GH_BODY,
            secrets: &[GH_SECRET],
            now: 0,
            expected: Ok(()),
        };
        check(
            &Scheme::Github,
            &[
                Case {
                    name: "documented vector",
                    ..base.clone()
                },
                Case {
                    name: "wrong secret",
                    secrets: &[b"It's a Secret to Nobody"],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered body",
                    body: b"Hello, World?",
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "missing header",
                    headers: headers(&[("X-GitHub-Event", "push")]),
                    expected: missing("X-Hub-Signature-256"),
                    ..base.clone()
                },
                Case {
                    name: "legacy sha1 header only",
                    headers: headers(&[("X-Hub-Signature", "sha1=0123abcd")]),
                    expected: missing("X-Hub-Signature-256"),
                    ..base.clone()
                },
                Case {
                    name: "no sha256= prefix",
                    headers: headers(&[("X-Hub-Signature-256", GH_SIG)]),
                    expected: bad("X-Hub-Signature-256"),
                    ..base.clone()
                },
                Case {
                    name: "non-hex signature",
                    headers: headers(&[("X-Hub-Signature-256", "sha256=not-hex!")]),
                    expected: bad("X-Hub-Signature-256"),
                    ..base.clone()
                },
                Case {
                    name: "truncated signature",
                    headers: headers(&[("X-Hub-Signature-256", &good[..good.len() - 2])]),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "upper-case hex",
                    headers: headers(&[(
                        "X-Hub-Signature-256",
                        &good.to_uppercase().replace("SHA256", "sha256"),
                    )]),
                    ..base.clone()
                },
                Case {
                    name: "header name in lower case",
                    headers: headers(&[("x-hub-signature-256", &good)]),
                    ..base.clone()
                },
                Case {
                    name: "rotation: second secret matches",
                    secrets: &[b"old secret", GH_SECRET],
                    ..base.clone()
                },
                Case {
                    name: "no secrets",
                    secrets: &[],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "empty secret never matches",
                    headers: headers(&[(
                        "X-Hub-Signature-256",
                        &format!("sha256={}", hex_hmac(b"", GH_BODY)),
                    )]),
                    secrets: &[b""],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
            ],
        );
    }

    // Computed with Python: hmac.new(b"whsec_test_secret",
    // b"1700000000." + STRIPE_BODY, sha256).hexdigest()
    const STRIPE_SECRET: &[u8] = b"whsec_test_secret";
    const STRIPE_BODY: &[u8] =
        br#"{"id":"evt_1NqR4x","object":"event","type":"payment_intent.succeeded"}"#;
    const STRIPE_T: u64 = 1_700_000_000;
    const STRIPE_SIG: &str = "3c6b4e85052da5c3ad217a51b85a056a9cd61ea3a6d4d969143eed8861b51f94";

    fn hex_hmac(key: &[u8], content: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(content);
        hex::encode(mac.finalize().into_bytes())
    }

    fn stripe(value: &str) -> Vec<(String, String)> {
        headers(&[("Stripe-Signature", value)])
    }

    /// FraiseQL v2's observer webhooks: Stripe's layout under FraiseQL's
    /// header, the event id in `X-FraiseQL-Event-Id`; the Stripe header
    /// does not stand in for FraiseQL's.
    #[test]
    fn fraiseql_v2_scheme() {
        let good = headers(&[
            (
                "X-FraiseQL-Signature-256",
                &format!("t={STRIPE_T},v1={STRIPE_SIG}"),
            ),
            ("X-FraiseQL-Event-Id", "evt-9"),
        ]);
        let scheme = Scheme::FraiseqlV2 {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        assert_eq!(
            verify(&scheme, &good, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
            Ok(())
        );
        assert_eq!(
            delivery_id(&scheme, &good, STRIPE_BODY).as_deref(),
            Some("evt-9")
        );
        assert_eq!(
            verify(&scheme, &good, b"{}", &[STRIPE_SECRET], STRIPE_T),
            Err(Mismatch)
        );
        assert_eq!(
            verify(
                &scheme,
                &good,
                STRIPE_BODY,
                &[STRIPE_SECRET],
                STRIPE_T + 301
            ),
            Err(Stale)
        );
        let as_stripe = stripe(&format!("t={STRIPE_T},v1={STRIPE_SIG}"));
        assert_eq!(
            verify(&scheme, &as_stripe, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
            Err(MissingHeader(FRAISEQL_SIGNATURE.to_owned()))
        );
    }

    /// What wasmhook's signing stage sends under `fraiseql-v2`, during a
    /// rotation, its own incoming side accepts under either secret.
    #[test]
    fn fraiseql_v2_accepts_what_signing_sends() {
        let body = br#"{"a":1}"#;
        let signer = crate::signing::Signer::fraiseql_v2(&[b"secret", b"old"]).unwrap();
        let sent: Vec<(String, String)> = signer
            .headers("delivery-1", "evt-1", 1704067200, body)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        let scheme = Scheme::FraiseqlV2 {
            tolerance_seconds: 300,
        };
        for secret in [&b"secret"[..], b"old"] {
            assert_eq!(verify(&scheme, &sent, body, &[secret], 1704067200), Ok(()));
        }
    }

    #[test]
    fn stripe_scheme() {
        let good = format!("t={STRIPE_T},v1={STRIPE_SIG}");
        let other = hex_hmac(b"whsec_other", &[b"1700000000.", STRIPE_BODY].concat());
        // Stripe keys with the secret text itself; base64-decoding it first
        // (the Standard Webhooks way) must not verify.
        let decoded_key = BASE64.decode("test_secret").unwrap_or_default();
        let with_decoded = hex_hmac(&decoded_key, &[b"1700000000.", STRIPE_BODY].concat());
        let base = Case {
            name: "",
            headers: stripe(&good),
            body: STRIPE_BODY,
            secrets: &[STRIPE_SECRET],
            now: STRIPE_T,
            expected: Ok(()),
        };
        let stripe_scheme = Scheme::Stripe {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        check(
            &stripe_scheme,
            &[
                Case {
                    name: "independent vector",
                    ..base.clone()
                },
                Case {
                    name: "wrong secret",
                    secrets: &[b"whsec_other"],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered body",
                    body: br#"{"id":"evt_1NqR4x","object":"event","type":"charge.refunded"}"#,
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered timestamp",
                    headers: stripe(&format!("t={},v1={STRIPE_SIG}", STRIPE_T + 1)),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "missing header",
                    headers: headers(&[("X-Hub-Signature-256", "sha256=00")]),
                    expected: missing("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "t=abc",
                    headers: stripe(&format!("t=abc,v1={STRIPE_SIG}")),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "t=+1700000000",
                    headers: stripe(&format!("t=+{STRIPE_T},v1={STRIPE_SIG}")),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "no timestamp",
                    headers: stripe(&format!("v1={STRIPE_SIG}")),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "two timestamps",
                    headers: stripe(&format!("t={STRIPE_T},t=1,v1={STRIPE_SIG}")),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "v1 not hex",
                    headers: stripe(&format!("t={STRIPE_T},v1=zz{}", &STRIPE_SIG[2..])),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "garbage",
                    headers: stripe("garbage"),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "empty",
                    headers: stripe(""),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "only v0 (ignored) carries the signature",
                    headers: stripe(&format!("t={STRIPE_T},v0={STRIPE_SIG}")),
                    expected: bad("Stripe-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "a valid v0 does not rescue a wrong v1",
                    headers: stripe(&format!("t={STRIPE_T},v1={other},v0={STRIPE_SIG}")),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "v0 and unknown keys ignored",
                    headers: stripe(&format!(
                        "t={STRIPE_T},v0=deadbeef,v9=whatever,v1={STRIPE_SIG}"
                    )),
                    ..base.clone()
                },
                Case {
                    name: "several v1, only the second valid",
                    headers: stripe(&format!("t={STRIPE_T},v1={other},v1={STRIPE_SIG}")),
                    ..base.clone()
                },
                Case {
                    name: "undecodable v1 beside a valid one",
                    headers: stripe(&format!("t={STRIPE_T},v1=nothex,v1={STRIPE_SIG}")),
                    ..base.clone()
                },
                Case {
                    name: "rotation: second secret matches",
                    secrets: &[b"whsec_other", STRIPE_SECRET],
                    ..base.clone()
                },
                Case {
                    name: "key is the secret text, not its base64 decoding",
                    headers: stripe(&format!("t={STRIPE_T},v1={with_decoded}")),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "spaces after commas",
                    headers: stripe(&format!("t={STRIPE_T}, v1={STRIPE_SIG}")),
                    ..base.clone()
                },
                Case {
                    name: "header name in lower case",
                    headers: headers(&[("stripe-signature", &good)]),
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance old",
                    now: STRIPE_T + 300,
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance ahead",
                    now: STRIPE_T - 300,
                    ..base.clone()
                },
                Case {
                    name: "stale by one second",
                    now: STRIPE_T + 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
                Case {
                    name: "future by one second",
                    now: STRIPE_T - 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
                Case {
                    name: "stale forgery is a mismatch",
                    secrets: &[b"whsec_other"],
                    now: STRIPE_T + 10_000,
                    expected: Err(Mismatch),
                    ..base.clone()
                },
            ],
        );
        check(
            &Scheme::Stripe {
                tolerance_seconds: 10,
            },
            &[
                Case {
                    name: "custom tolerance, at the edge",
                    now: STRIPE_T + 10,
                    ..base.clone()
                },
                Case {
                    name: "custom tolerance, past it",
                    now: STRIPE_T + 11,
                    expected: Err(Stale),
                    ..base.clone()
                },
            ],
        );
    }

    // The Standard Webhooks spec's vector; `verify` takes the decoded key.
    const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SW_SECRET_TEXT: &[u8] = SW_SECRET.as_bytes();
    const SW_KEY: &[u8] = b"\x0b\x61\x55\xb0\x14\x08\x86\xbb\x1c\x0a\x19\x50\
                             \x20\xc5\x7e\x6f\x9b\x12\x62\xca\x68\x6f\xba\x03";
    const OTHER_KEY: &[u8] = b"other secret key bytes";
    const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SW_TS: u64 = 1_649_367_553;
    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn standard(id: &str, timestamp: &str, signature: &str) -> Vec<(String, String)> {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn standard_webhooks() {
        let ts = SW_TS.to_string();
        let other = standard::sign(OTHER_KEY, SW_ID, SW_TS, SW_BODY);
        let base = Case {
            name: "",
            headers: standard(SW_ID, &ts, SW_SIG),
            body: SW_BODY,
            secrets: &[SW_KEY],
            now: SW_TS,
            expected: Ok(()),
        };
        check(
            &Scheme::StandardWebhooks {
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            },
            &[
                Case {
                    name: "spec vector",
                    ..base.clone()
                },
                Case {
                    name: "wrong secret",
                    secrets: &[OTHER_KEY],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered body",
                    body: br#"{"email":"evil@example.com","username":"test_user"}"#,
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered id",
                    headers: standard("msg_other", &ts, SW_SIG),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "missing webhook-id",
                    headers: headers(&[("webhook-timestamp", &ts), ("webhook-signature", SW_SIG)]),
                    expected: missing("webhook-id"),
                    ..base.clone()
                },
                Case {
                    name: "missing webhook-timestamp",
                    headers: headers(&[("webhook-id", SW_ID), ("webhook-signature", SW_SIG)]),
                    expected: missing("webhook-timestamp"),
                    ..base.clone()
                },
                Case {
                    name: "missing webhook-signature",
                    headers: headers(&[("webhook-id", SW_ID), ("webhook-timestamp", &ts)]),
                    expected: missing("webhook-signature"),
                    ..base.clone()
                },
                Case {
                    name: "timestamp not a number",
                    headers: standard(SW_ID, "yesterday", SW_SIG),
                    expected: bad("webhook-timestamp"),
                    ..base.clone()
                },
                Case {
                    name: "signature not base64",
                    headers: standard(SW_ID, &ts, "v1,***"),
                    expected: bad("webhook-signature"),
                    ..base.clone()
                },
                Case {
                    name: "signature garbage",
                    headers: standard(SW_ID, &ts, "garbage"),
                    expected: bad("webhook-signature"),
                    ..base.clone()
                },
                Case {
                    name: "only v1a (ed25519) signatures",
                    headers: standard(SW_ID, &ts, "v1a,AAAA"),
                    expected: bad("webhook-signature"),
                    ..base.clone()
                },
                Case {
                    name: "v1a ignored beside a valid v1",
                    headers: standard(SW_ID, &ts, &format!("v1a,AAAA {SW_SIG}")),
                    ..base.clone()
                },
                Case {
                    name: "several v1, only the second valid",
                    headers: standard(SW_ID, &ts, &format!("{other} {SW_SIG}")),
                    ..base.clone()
                },
                Case {
                    name: "rotation: second secret matches",
                    secrets: &[OTHER_KEY, SW_KEY],
                    ..base.clone()
                },
                Case {
                    name: "the whsec_ text is not the key",
                    secrets: &[SW_SECRET_TEXT],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "header names in upper case",
                    headers: headers(&[
                        ("Webhook-Id", SW_ID),
                        ("WEBHOOK-TIMESTAMP", &ts),
                        ("Webhook-Signature", SW_SIG),
                    ]),
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance old",
                    now: SW_TS + 300,
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance ahead",
                    now: SW_TS - 300,
                    ..base.clone()
                },
                Case {
                    name: "stale by one second",
                    now: SW_TS + 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
                Case {
                    name: "future by one second",
                    now: SW_TS - 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
            ],
        );
    }

    // The signing module's vectors (computed with Python):
    // hmac.new(b"secret", b'1704067200.{"a":1}', sha256 / sha512).hexdigest()
    const FRAISE_BODY: &[u8] = br#"{"a":1}"#;
    const FRAISE_TS: u64 = 1_704_067_200;
    const FRAISE_256: &str = "521612bcabb6f55cc5b1214733a369db3e76d2a8873679bad51856c594061a5a";
    const FRAISE_512: &str = "85f3868815860f5692636c2249c359efb705287f8dbc78d75193ae64775a0105\
                              699cb1a58d0af8af36735d7b96d46427ecf86af12ac29dc7c56f7e7c54cfcb7c";

    /// The FraiseQL docs' example configuration.
    fn fraise(algorithm: HmacAlgorithm, template: &str) -> Scheme {
        Scheme::Hmac(HmacScheme {
            algorithm,
            signature_format: SignatureFormat::parse(template).unwrap(),
            timestamp_header: Some("X-Timestamp".into()),
            ..HmacScheme::new("X-Signature")
        })
    }

    fn fraise_headers(signature: &str, timestamp: &str) -> Vec<(String, String)> {
        headers(&[("X-Signature", signature), ("X-Timestamp", timestamp)])
    }

    #[test]
    fn generic_hmac_with_timestamp() {
        let ts = FRAISE_TS.to_string();
        let good = format!("sha256={FRAISE_256}");
        let base = Case {
            name: "",
            headers: fraise_headers(&good, &ts),
            body: FRAISE_BODY,
            secrets: &[b"secret"],
            now: FRAISE_TS,
            expected: Ok(()),
        };
        check(
            &fraise(HmacAlgorithm::Sha256, "sha256={signature}"),
            &[
                Case {
                    name: "independent vector",
                    ..base.clone()
                },
                Case {
                    name: "wrong secret",
                    secrets: &[b"Secret"],
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered body",
                    body: br#"{"a":2}"#,
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "tampered timestamp",
                    headers: fraise_headers(&good, "1704067201"),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "missing signature header",
                    headers: headers(&[("X-Timestamp", &ts)]),
                    expected: missing("X-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "missing timestamp header",
                    headers: headers(&[("X-Signature", &good)]),
                    expected: missing("X-Timestamp"),
                    ..base.clone()
                },
                Case {
                    name: "timestamp not a number",
                    headers: fraise_headers(&good, "-5"),
                    expected: bad("X-Timestamp"),
                    ..base.clone()
                },
                Case {
                    name: "prefix missing",
                    headers: fraise_headers(FRAISE_256, &ts),
                    expected: bad("X-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "wrong prefix",
                    headers: fraise_headers(&format!("sha512={FRAISE_256}"), &ts),
                    expected: bad("X-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "signature not hex",
                    headers: fraise_headers("sha256=xyz", &ts),
                    expected: bad("X-Signature"),
                    ..base.clone()
                },
                Case {
                    name: "rotation: second secret matches",
                    secrets: &[b"old", b"secret"],
                    ..base.clone()
                },
                Case {
                    name: "header names in lower case",
                    headers: headers(&[("x-signature", &good), ("x-timestamp", &ts)]),
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance old",
                    now: FRAISE_TS + 300,
                    ..base.clone()
                },
                Case {
                    name: "exactly the tolerance ahead",
                    now: FRAISE_TS - 300,
                    ..base.clone()
                },
                Case {
                    name: "stale by one second",
                    now: FRAISE_TS + 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
                Case {
                    name: "future by one second",
                    now: FRAISE_TS - 301,
                    expected: Err(Stale),
                    ..base.clone()
                },
            ],
        );
        check(
            &fraise(HmacAlgorithm::Sha512, "sha512={signature}"),
            &[
                Case {
                    name: "sha512 vector",
                    headers: fraise_headers(&format!("sha512={FRAISE_512}"), &ts),
                    ..base.clone()
                },
                Case {
                    name: "sha256 tag under a sha512 scheme",
                    headers: fraise_headers(&format!("sha512={FRAISE_256}"), &ts),
                    expected: Err(Mismatch),
                    ..base.clone()
                },
            ],
        );
    }

    #[test]
    fn generic_hmac_without_timestamp() {
        // Computed with Python: base64 of hmac.new(b"shpss_secret",
        // b'{"a":1}', sha256).digest(), and hmac.new(b"secret", b'{"a":1}',
        // sha512).hexdigest().
        let shopify = Scheme::Hmac(HmacScheme {
            encoding: Encoding::Base64,
            ..HmacScheme::new("X-Shopify-Hmac-Sha256")
        });
        let base = Case {
            name: "",
            headers: headers(&[(
                "X-Shopify-Hmac-Sha256",
                "A4QrSukM900xPWN3T+QOvBTdvyGDDRgc4+5MeDzZMYw=",
            )]),
            body: FRAISE_BODY,
            secrets: &[b"shpss_secret"],
            now: 0,
            expected: Ok(()),
        };
        check(
            &shopify,
            &[
                Case {
                    name: "base64 body-only vector, any time",
                    now: u64::MAX,
                    ..base.clone()
                },
                Case {
                    name: "base64 tampered body",
                    body: br#"{"a":1} "#,
                    expected: Err(Mismatch),
                    ..base.clone()
                },
                Case {
                    name: "base64 not decodable",
                    headers: headers(&[("X-Shopify-Hmac-Sha256", "%%%")]),
                    expected: bad("X-Shopify-Hmac-Sha256"),
                    ..base.clone()
                },
            ],
        );
        let suffixed = Scheme::Hmac(HmacScheme {
            algorithm: HmacAlgorithm::Sha512,
            signature_format: SignatureFormat::parse("[{signature}];v=1").unwrap(),
            ..HmacScheme::new("X-Sig")
        });
        let sha512 = "42f08c0da01c9a46d4e5663d5f2140526a016507c598182c6769cca2bcf7ba43\
                      c395b719b01d288f5ad322564dce1d40ca28ef50b876fc49a33d13d6783114dd";
        check(
            &suffixed,
            &[
                Case {
                    name: "sha512 with prefix and suffix",
                    headers: headers(&[("X-Sig", &format!("[{sha512}];v=1"))]),
                    secrets: &[b"secret"],
                    ..base.clone()
                },
                Case {
                    name: "suffix missing",
                    headers: headers(&[("X-Sig", &format!("[{sha512}]"))]),
                    secrets: &[b"secret"],
                    expected: bad("X-Sig"),
                    ..base.clone()
                },
            ],
        );
    }

    #[test]
    fn signature_format_templates() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("{signature}", Some(("", ""))),
            ("sha256={signature}", Some(("sha256=", ""))),
            ("[{signature}];v=1", Some(("[", "];v=1"))),
            ("sha256=", None),
            ("{signature}{signature}", None),
            ("{Signature}", None),
        ];
        for (template, expected) in cases {
            let got = SignatureFormat::parse(template);
            let got = got
                .as_ref()
                .map(|format| (format.prefix(), format.suffix()));
            if let Some(parts) = expected {
                assert_eq!(got, Ok(*parts), "{template}");
            } else {
                let message = got.unwrap_err();
                assert!(message.contains("exactly once"), "{template}: {message}");
            }
        }
        assert_eq!(
            SignatureFormat::default(),
            SignatureFormat::parse("{signature}").unwrap()
        );
    }

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
