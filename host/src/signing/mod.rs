//! The signing stage: body bytes and a timestamp in, signature header values
//! out. Pure, so receivers' verification code can be checked against it.
//!
//! Two schemes:
//! - FraiseQL's, which its receivers already verify: the signature header is
//!   `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (or `sha512=`),
//!   the timestamp header carries the same unix seconds;
//! - Standard Webhooks: `webhook-id` (the delivery id), `webhook-timestamp`
//!   and `webhook-signature: v1,<base64>` over `"{id}.{timestamp}.{body}"`,
//!   keyed with the base64-decoded `whsec_` secret; its crypto is in
//!   [`standard`], which the incoming stage verifies with too.
//!
//! - FraiseQL v2's own observer webhooks: `X-FraiseQL-Signature-256:
//!   t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (one `v1=` per
//!   secret) and `X-FraiseQL-Event-Id: <event id>`, so receivers written for
//!   FraiseQL's observers accept wasmhook's deliveries.
//!
//! With several secrets (rotation: newest first) every signature is sent,
//! space-separated, so receivers on the old or the new secret both verify.

pub mod standard;

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// The HMAC hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256, prefix `sha256=`.
    Sha256,
    /// HMAC-SHA512, prefix `sha512=`.
    Sha512,
}

/// A keyed signer; the HMAC key schedule is computed once and cloned per
/// request, which saves two compression rounds on every signature.
#[derive(Clone)]
pub struct Signer {
    key: Keyed,
    /// Older secrets still signed with during a rotation.
    older: Vec<Keyed>,
    /// Header that carries the signature.
    pub header: String,
    /// Header that carries the unix timestamp.
    pub timestamp_header: String,
    scheme: Scheme,
}

/// How the signature is laid out in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Fraiseql,
    Standard,
    FraiseqlV2,
}

/// The signature header of FraiseQL v2's observer webhooks.
pub const FRAISEQL_V2_SIGNATURE: &str = "X-FraiseQL-Signature-256";
/// The event id header of FraiseQL v2's observer webhooks.
pub const FRAISEQL_V2_EVENT_ID: &str = "X-FraiseQL-Event-Id";

/// Why a signing secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not `whsec_` + base64, or of the wrong length.
    #[error("secret #{index} is not a Standard Webhooks secret (\"whsec_\" followed by base64 of 24 to 64 bytes)")]
    NotStandard {
        /// Position in `secrets`, from 0.
        index: usize,
    },
}

#[derive(Clone)]
enum Keyed {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl std::fmt::Debug for Signer {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm())
            .field("header", &self.header)
            .field("timestamp_header", &self.timestamp_header)
            .finish_non_exhaustive()
    }
}

/// The two header values of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `sha256=<hex>`.
    pub signature: String,
    /// Unix seconds, as text.
    pub timestamp: String,
}

impl Signer {
    /// Builds a signer; any key length is valid for HMAC.
    pub fn new(
        algorithm: Algorithm,
        secret: &[u8],
        header: String,
        timestamp_header: String,
    ) -> Signer {
        // HMAC accepts keys of every length, so `new_from_slice` cannot fail.
        let key = match algorithm {
            Algorithm::Sha256 => Keyed::Sha256(
                <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
            ),
            Algorithm::Sha512 => Keyed::Sha512(
                <Hmac<Sha512> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
            ),
        };
        Signer {
            key,
            older: Vec::new(),
            header,
            timestamp_header,
            scheme: Scheme::Fraiseql,
        }
    }

    /// A signer of FraiseQL v2's observer scheme over `secrets` (newest
    /// first); always HMAC-SHA256, as FraiseQL signs.
    pub fn fraiseql_v2(secrets: &[&[u8]]) -> Option<Signer> {
        let (first, rest) = secrets.split_first()?;
        let mut signer = Signer::new(
            Algorithm::Sha256,
            first,
            FRAISEQL_V2_SIGNATURE.into(),
            String::new(),
        )
        .with_older(rest);
        signer.scheme = Scheme::FraiseqlV2;
        Some(signer)
    }

    /// Adds secrets still signed with while receivers move to the first
    /// (rotation); their signatures follow the first, space-separated.
    pub fn with_older(mut self, secrets: &[&[u8]]) -> Signer {
        let algorithm = self.algorithm();
        self.older = secrets
            .iter()
            .map(|secret| Signer::new(algorithm, secret, String::new(), String::new()).key)
            .collect();
        self
    }

    /// A Standard Webhooks signer over `secrets` (`whsec_...`, newest first).
    pub fn standard_webhooks(secrets: &[&str]) -> Result<Signer, SecretError> {
        let mut keys = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            match standard::decode_secret(secret) {
                Some(key)
                    if (24..=64).contains(&key.len())
                        && secret.starts_with(standard::SECRET_PREFIX) =>
                {
                    keys.push(key)
                }
                _ => return Err(SecretError::NotStandard { index }),
            }
        }
        let Some((first, rest)) = keys.split_first() else {
            return Err(SecretError::NotStandard { index: 0 });
        };
        let rest: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
        let mut signer = Signer::new(
            Algorithm::Sha256,
            first,
            standard::SIGNATURE.into(),
            standard::TIMESTAMP.into(),
        )
        .with_older(&rest);
        signer.scheme = Scheme::Standard;
        Ok(signer)
    }

    /// The signature headers of one request: `(name, value)` pairs.
    /// `delivery_id` is the Standard Webhooks `webhook-id` (stable across
    /// retries, so receivers can deduplicate on it); `event_id` is FraiseQL
    /// v2's `X-FraiseQL-Event-Id`.
    pub fn headers(
        &self,
        delivery_id: &str,
        event_id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Vec<(&str, String)> {
        if self.scheme == Scheme::FraiseqlV2 {
            let ts = timestamp.to_string();
            let mut value = format!("t={ts}");
            for key in std::iter::once(&self.key).chain(&self.older) {
                value.push_str(",v1=");
                value.push_str(&hex::encode(match key {
                    Keyed::Sha256(mac) => digest(mac.clone(), &ts, body).as_ref().to_vec(),
                    Keyed::Sha512(mac) => digest(mac.clone(), &ts, body).as_ref().to_vec(),
                }));
            }
            return vec![
                (FRAISEQL_V2_SIGNATURE, value),
                (FRAISEQL_V2_EVENT_ID, event_id.to_string()),
            ];
        }
        if self.scheme == Scheme::Standard {
            let ts = timestamp.to_string();
            let signatures: Vec<String> = std::iter::once(&self.key)
                .chain(&self.older)
                .map(|key| match key {
                    Keyed::Sha256(mac) => standard::signature(mac.clone(), delivery_id, &ts, body),
                    // Never built: Standard Webhooks signers are SHA-256.
                    Keyed::Sha512(mac) => standard::signature(mac.clone(), delivery_id, &ts, body),
                })
                .collect();
            return vec![
                (standard::ID, delivery_id.to_string()),
                (standard::TIMESTAMP, ts),
                (standard::SIGNATURE, signatures.join(" ")),
            ];
        }
        let mut signature = self.sign(timestamp, body);
        for key in &self.older {
            signature.signature.push(' ');
            signature
                .signature
                .push_str(&sign_with(key, &signature.timestamp, body));
        }
        vec![
            (self.header.as_str(), signature.signature),
            (self.timestamp_header.as_str(), signature.timestamp),
        ]
    }

    /// The scheme, for `wasmhook check`.
    pub fn scheme(&self) -> &'static str {
        match self.scheme {
            Scheme::Standard => "standard-webhooks",
            Scheme::Fraiseql => "fraiseql",
            Scheme::FraiseqlV2 => "fraiseql-v2",
        }
    }

    /// The hash in use.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Keyed::Sha256(_) => Algorithm::Sha256,
            Keyed::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Signs `body` as sent at `timestamp` (unix seconds).
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> Signature {
        let timestamp = timestamp.to_string();
        Signature {
            signature: sign_with(&self.key, &timestamp, body),
            timestamp,
        }
    }
}

fn sign_with(key: &Keyed, timestamp: &str, body: &[u8]) -> String {
    match key {
        Keyed::Sha256(mac) => format!(
            "sha256={}",
            hex::encode(digest(mac.clone(), timestamp, body))
        ),
        Keyed::Sha512(mac) => format!(
            "sha512={}",
            hex::encode(digest(mac.clone(), timestamp, body))
        ),
    }
}

fn digest<M: Mac>(mut mac: M, timestamp: &str, body: &[u8]) -> impl AsRef<[u8]> {
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(algorithm: Algorithm, secret: &str) -> Signer {
        Signer::new(algorithm, secret.as_bytes(), "X-Sig".into(), "X-Ts".into())
    }

    #[test]
    fn matches_independently_computed_vectors() {
        // Computed with Python: hmac.new(b"secret", b"1704067200.{\"a\":1}", sha256/sha512).hexdigest()
        let body = br#"{"a":1}"#;
        assert_eq!(
            signer(Algorithm::Sha256, "secret").sign(1704067200, body),
            Signature {
                signature:
                    "sha256=521612bcabb6f55cc5b1214733a369db3e76d2a8873679bad51856c594061a5a".into(),
                timestamp: "1704067200".into(),
            }
        );
        assert_eq!(
            signer(Algorithm::Sha512, "secret")
                .sign(1704067200, body)
                .signature,
            "sha512=85f3868815860f5692636c2249c359efb705287f8dbc78d75193ae64775a0105\
             699cb1a58d0af8af36735d7b96d46427ecf86af12ac29dc7c56f7e7c54cfcb7c"
        );
    }

    #[test]
    fn fraiseql_v2_signs_as_fraiseql_observers_do() {
        // The vector of `matches_independently_computed_vectors`, laid out
        // as FraiseQL's `X-FraiseQL-Signature-256`; the old secret's tag
        // follows during a rotation.
        let body = br#"{"a":1}"#;
        let signer = Signer::fraiseql_v2(&[b"secret", b"old"]).unwrap();
        let headers = signer.headers("delivery-1", "evt-1", 1704067200, body);
        let old = signer_tag(b"old", "1704067200", body);
        assert_eq!(
            headers,
            vec![
                (
                    FRAISEQL_V2_SIGNATURE,
                    format!(
                        "t=1704067200,v1=521612bcabb6f55cc5b1214733a369db3e76d2a8873679bad51856c594061a5a,v1={old}"
                    )
                ),
                (FRAISEQL_V2_EVENT_ID, "evt-1".to_string()),
            ]
        );
        assert_eq!(signer.scheme(), "fraiseql-v2");
        assert!(Signer::fraiseql_v2(&[]).is_none());
    }

    fn signer_tag(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
        hex::encode(digest(mac, timestamp, body))
    }

    #[test]
    fn standard_webhooks_matches_the_spec_test_vector() {
        let signer =
            Signer::standard_webhooks(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]).unwrap();
        let headers = signer.headers(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "evt-1",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            headers,
            vec![
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".to_string()),
                ("webhook-timestamp", "1649367553".to_string()),
                (
                    "webhook-signature",
                    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()
                ),
            ]
        );
    }

    #[test]
    fn rotation_sends_every_signature_newest_first() {
        let old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let both = Signer::standard_webhooks(&[new, old]).unwrap();
        let (body, id) = (b"{}".as_slice(), "msg_1");
        let value = both.headers(id, "evt-1", 1, body)[2].1.clone();
        let only = |s| {
            Signer::standard_webhooks(&[s])
                .unwrap()
                .headers(id, "evt-1", 1, body)[2]
                .1
                .clone()
        };
        assert_eq!(value, format!("{} {}", only(new), only(old)));

        let hmac = signer(Algorithm::Sha256, "new").with_older(&[b"old"]);
        let header = hmac.headers(id, "evt-1", 1704067200, br#"{"a":1}"#)[0]
            .1
            .clone();
        let (first, second) = header.split_once(' ').unwrap();
        assert_eq!(
            first,
            signer(Algorithm::Sha256, "new")
                .sign(1704067200, br#"{"a":1}"#)
                .signature
        );
        assert_eq!(
            second,
            signer(Algorithm::Sha256, "old")
                .sign(1704067200, br#"{"a":1}"#)
                .signature
        );
    }

    #[test]
    fn standard_secrets_are_checked() {
        assert_eq!(
            Signer::standard_webhooks(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "plain"]).err(),
            Some(SecretError::NotStandard { index: 1 })
        );
        // Decodes, but 3 bytes is no key.
        assert!(Signer::standard_webhooks(&["whsec_YWJj"]).is_err());
        assert!(Signer::standard_webhooks(&[]).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", signer(Algorithm::Sha256, "hunter2-secret"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
