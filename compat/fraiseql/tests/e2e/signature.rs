//! An independent verifier of `X-FraiseQL-Signature-256`, written the way a
//! FraiseQL receiver checks it: `t=<unix>,v1=<hex>` where v1 is
//! HMAC-SHA256(secret, "<t>.<body>") over the exact bytes received
//! (fraiseql-observers `src/actions.rs`, `webhook_signature`; the Stripe
//! shape its `StripeVerifier` accepts). Uses hmac 0.12 / sha2 0.10, not
//! FraiseQL's own code.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Oldest signature accepted, as receivers' replay windows do.
const MAX_AGE_SECS: i64 = 300;

/// Checks `header` against `body`: `Ok(t)` with the signed timestamp.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<i64, String> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.to_string()),
            Some(("v1", v1)) => candidates.push(v1.to_string()),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| format!("no t= in {header:?}"))?;
    let ts: i64 = t.parse().map_err(|_| format!("t={t} is not a number"))?;
    if (now - ts).abs() > MAX_AGE_SECS {
        return Err(format!(
            "t={ts} is more than {MAX_AGE_SECS} s from now ({now})"
        ));
    }
    if candidates.is_empty() {
        return Err(format!("no v1= in {header:?}"));
    }
    for candidate in &candidates {
        let Ok(expected) = hex::decode(candidate) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        // Constant time, as a receiver compares.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(ts);
        }
    }
    Err(format!("no v1 in {header:?} matches the body"))
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

#[test]
fn the_verifier_accepts_a_known_signature_and_rejects_tampering() {
    // HMAC-SHA256("compat-secret", "1700000000.{\"a\":1}"), from Python's hmac.
    let header = "t=1700000000,v1=f1973c5272148d1331f9bca57ded1c280d8358be73482f406959d36fcdc21108";
    let body = br#"{"a":1}"#;
    let at = 1_700_000_100;
    assert_eq!(verify("compat-secret", header, body, at), Ok(1_700_000_000));
    assert!(verify("compat-secret", header, br#"{"a":2}"#, at).is_err());
    assert!(verify("other", header, body, at).is_err());
    assert!(verify("compat-secret", header, body, at + 3600).is_err());
    assert!(verify("compat-secret", "v1=00", body, at).is_err());
}
