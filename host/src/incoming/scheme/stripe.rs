//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>,...` over `"{t}.{body}"`,
//! keyed with the whole secret string (not base64-decoded). FraiseQL v2
//! signs in the same layout under its own header (`fraiseql_v2`).

use super::{
    fresh, malformed, parse_unix, required, Candidates, Headers, HmacAlgorithm, Rejection,
};

const SIGNATURE: &str = "Stripe-Signature";

/// Verifies Stripe's own header.
pub(super) fn verify(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
    tolerance: u64,
) -> Result<(), Rejection> {
    verify_layout(SIGNATURE, headers, body, secrets, now, tolerance)
}

/// Stripe's `t=<unix>,v1=<hex>,...` in `header` (FraiseQL v2 uses the same
/// layout under its own header name).
pub(super) fn verify_layout(
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

#[cfg(test)]
pub(super) mod tests {
    use crate::incoming::scheme::cases::{bad, check, headers, hex_hmac, missing, Case};
    use crate::incoming::scheme::Rejection::{Mismatch, Stale};
    use crate::incoming::scheme::{Scheme, DEFAULT_TOLERANCE_SECONDS};
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    // Computed with Python: hmac.new(b"whsec_test_secret",
    // b"1700000000." + STRIPE_BODY, sha256).hexdigest()
    pub(in crate::incoming::scheme) const STRIPE_SECRET: &[u8] = b"whsec_test_secret";
    pub(in crate::incoming::scheme) const STRIPE_BODY: &[u8] =
        br#"{"id":"evt_1NqR4x","object":"event","type":"payment_intent.succeeded"}"#;
    pub(in crate::incoming::scheme) const STRIPE_T: u64 = 1_700_000_000;
    pub(in crate::incoming::scheme) const STRIPE_SIG: &str =
        "3c6b4e85052da5c3ad217a51b85a056a9cd61ea3a6d4d969143eed8861b51f94";

    pub(in crate::incoming::scheme) fn stripe(value: &str) -> Vec<(String, String)> {
        headers(&[("Stripe-Signature", value)])
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
}
