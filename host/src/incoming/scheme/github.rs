//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//! No timestamp is signed, so replays are caught only by the delivery id
//! (`X-GitHub-Delivery`).

use super::{malformed, required, Candidates, Headers, HmacAlgorithm, Rejection};

const SIGNATURE: &str = "X-Hub-Signature-256";
/// The delivery id header.
pub(super) const DELIVERY: &str = "X-GitHub-Delivery";
/// The event type header (`push`).
pub(super) const EVENT: &str = "X-GitHub-Event";

/// Checks the one `sha256=` signature over the body.
pub(super) fn verify(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
) -> Result<(), Rejection> {
    let value = required(headers, SIGNATURE)?;
    let tag = value
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or_else(|| malformed(SIGNATURE))?;
    let candidates = Candidates {
        tags: vec![tag],
        undecodable: false,
    };
    candidates.check(SIGNATURE, HmacAlgorithm::Sha256, secrets, &[body])
}

#[cfg(test)]
mod tests {
    use crate::incoming::scheme::cases::{bad, check, headers, hex_hmac, missing, Case};
    use crate::incoming::scheme::Rejection::Mismatch;
    use crate::incoming::scheme::Scheme;

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
}
