//! A generic HMAC scheme, for senders that follow no named provider: HMAC-SHA256
//! (or SHA-512) over `"{timestamp}.{body}"` when a timestamp header is
//! configured, else over the body; the signature hex or base64, with any
//! literal text around it. The defaults match what FraiseQL receivers verify.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{
    fresh, malformed, parse_unix, required, Candidates, Headers, Rejection,
    DEFAULT_TOLERANCE_SECONDS,
};

const PLACEHOLDER: &str = "{signature}";

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
    pub(super) fn extract<'a>(&self, value: &'a str) -> Option<&'a str> {
        value
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
}

/// Checks the configured header's signature, then the timestamp if one is
/// configured.
pub(super) fn verify(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incoming::scheme::cases::{bad, check, headers, missing, Case};
    use crate::incoming::scheme::Rejection::{Mismatch, Stale};
    use crate::incoming::scheme::Scheme;

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
}
