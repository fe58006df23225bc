//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64>` over `"{id}.{timestamp}.{body}"`, keyed
//! with the base64-decoded secret. The crypto is the signing stage's
//! (`signing::standard`), so what wasmhook sends and what it accepts agree.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{
    fresh, malformed, parse_unix, required, Candidates, Headers, HmacAlgorithm, Rejection,
};
use crate::signing::standard;

/// Checks every `v1` signature (others are skipped, as the spec says),
/// then the timestamp.
pub(super) fn verify(
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

#[cfg(test)]
pub(super) mod tests {
    use crate::incoming::scheme::cases::{bad, check, headers, missing, Case};
    use crate::incoming::scheme::Rejection::{Mismatch, Stale};
    use crate::incoming::scheme::{Scheme, DEFAULT_TOLERANCE_SECONDS};
    use crate::signing::standard::sign;

    // The Standard Webhooks spec's vector; `verify` takes the decoded key.
    pub(in crate::incoming::scheme) const SW_SECRET: &str =
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    pub(in crate::incoming::scheme) const SW_SECRET_TEXT: &[u8] = SW_SECRET.as_bytes();
    pub(in crate::incoming::scheme) const SW_KEY: &[u8] =
        b"\x0b\x61\x55\xb0\x14\x08\x86\xbb\x1c\x0a\x19\x50\
                             \x20\xc5\x7e\x6f\x9b\x12\x62\xca\x68\x6f\xba\x03";
    pub(in crate::incoming::scheme) const OTHER_KEY: &[u8] = b"other secret key bytes";
    pub(in crate::incoming::scheme) const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    pub(in crate::incoming::scheme) const SW_TS: u64 = 1_649_367_553;
    pub(in crate::incoming::scheme) const SW_BODY: &[u8] =
        br#"{"email":"test@example.com","username":"test_user"}"#;
    pub(in crate::incoming::scheme) const SW_SIG: &str =
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    pub(in crate::incoming::scheme) fn standard(
        id: &str,
        timestamp: &str,
        signature: &str,
    ) -> Vec<(String, String)> {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn standard_webhooks() {
        let ts = SW_TS.to_string();
        let other = sign(OTHER_KEY, SW_ID, SW_TS, SW_BODY);
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
}
