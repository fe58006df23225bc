//! The signature target's helpers: known and unknowable secrets, the
//! schemes under test, and the HMAC recomputed independently of the
//! verifier.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use crate::incoming::scheme::{Encoding, HmacAlgorithm, HmacScheme, Scheme, SignatureFormat};

/// The secret the corpus signs with, so accepted requests are reached too.
pub(super) const KNOWN_SECRET: &[u8] = b"fuzz-known-secret";
/// The decoded Standard Webhooks key of `whsec_ZnV6ei1rbm93bi1zZWNyZXQtMjRieXRl`.
pub(super) const KNOWN_STANDARD_KEY: &[u8] = b"fuzz-known-secret-24byte";
/// The verifier's clock; the corpus's timestamps sit around it.
pub(super) const NOW: u64 = 1_700_000_000;

/// A secret drawn once per process: no input can carry its HMAC.
pub(super) fn random_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        getrandom::fill(&mut secret).unwrap_or_else(|e| panic!("no randomness: {e}"));
        secret
    })
}

/// `3`: `sha256={signature}` in hex with `X-Timestamp`; otherwise bare
/// base64 HMAC-SHA512 of the body.
pub(super) fn generic_scheme(timestamped: bool, tolerance: u64) -> HmacScheme {
    let mut generic = HmacScheme::new("X-Signature");
    generic.tolerance_seconds = tolerance;
    if timestamped {
        generic.timestamp_header = Some("X-Timestamp".into());
        generic.signature_format = SignatureFormat::parse("sha256={signature}")
            .unwrap_or_else(|e| panic!("a constant format: {e}"));
    } else {
        generic.algorithm = HmacAlgorithm::Sha512;
        generic.encoding = Encoding::Base64;
    }
    generic
}

/// What the sender signed, per scheme, except Stripe's timestamp, which
/// sits in the signature header (see [`authentic`]).
pub(super) fn signed_content(scheme: &Scheme, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let (id, timestamp) = (id.trim(), timestamp.trim());
    match scheme {
        Scheme::StandardWebhooks { .. } => {
            [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat()
        }
        Scheme::Hmac(HmacScheme {
            timestamp_header: Some(_),
            ..
        }) => [timestamp.as_bytes(), b".", body].concat(),
        _ => body.to_vec(),
    }
}

/// Whether `header` carries the HMAC of `content` under `secret`, checked
/// with plain string comparisons rather than the verifier's parsing.
pub(super) fn authentic(scheme: &Scheme, header: &str, secret: &[u8], content: &[u8]) -> bool {
    let header = header.trim();
    let hex_sha256 = |content: &[u8]| hex::encode(mac::<Hmac<Sha256>>(secret, content));
    match scheme {
        Scheme::Github => header.eq_ignore_ascii_case(&format!("sha256={}", hex_sha256(content))),
        Scheme::Stripe { .. } | Scheme::FraiseqlV2 { .. } => {
            let items: Vec<(&str, &str)> = header
                .split(',')
                .filter_map(|item| item.split_once('='))
                .map(|(key, value)| (key.trim(), value.trim()))
                .collect();
            items.iter().filter(|(key, _)| *key == "t").any(|(_, t)| {
                let expected = hex_sha256(&[t.as_bytes(), b".", content].concat());
                items
                    .iter()
                    .any(|(key, v1)| *key == "v1" && v1.eq_ignore_ascii_case(&expected))
            })
        }
        Scheme::StandardWebhooks { .. } => {
            let expected = format!("v1,{}", BASE64.encode(mac::<Hmac<Sha256>>(secret, content)));
            header.split_whitespace().any(|entry| entry == expected)
        }
        Scheme::Hmac(HmacScheme {
            timestamp_header: Some(_),
            ..
        }) => header.eq_ignore_ascii_case(&format!("sha256={}", hex_sha256(content))),
        Scheme::Hmac(_) => header == BASE64.encode(mac::<Hmac<Sha512>>(secret, content)),
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

/// The unix time a request says it was signed at.
pub(super) fn signed_time(scheme: &Scheme, header: &str, timestamp: &str) -> Option<u64> {
    let text = match scheme {
        Scheme::Stripe { .. } | Scheme::FraiseqlV2 { .. } => header
            .split(',')
            .filter_map(|item| item.split_once('='))
            .find(|(key, _)| key.trim() == "t")?
            .1
            .trim(),
        _ => timestamp.trim(),
    };
    text.parse().ok()
}
