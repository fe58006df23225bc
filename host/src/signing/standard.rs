//! Standard Webhooks' crypto, written once for both directions: the signing
//! stage signs outgoing requests with it and the incoming stage
//! (`incoming::scheme`) checks senders' signatures with it, so what wasmhook
//! sends and what it accepts cannot drift apart. Pure.
//!
//! A secret is written `whsec_` + base64 of the key; the signed content is
//! `"{id}.{timestamp}.{body}"`; a signature is `v1,<base64 HMAC-SHA256>`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the message id (the delivery id when wasmhook sends).
pub const ID: &str = "webhook-id";
/// The header carrying the unix seconds that were signed.
pub const TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures, space-separated.
pub const SIGNATURE: &str = "webhook-signature";
/// What a secret as written starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// Decodes a secret: the text after an optional `whsec_` prefix,
/// base64-decoded. `None` when that is not base64, or decodes to nothing:
/// an empty key would make every signature forgeable. Configuration calls
/// it at start-up, so a bad secret fails there rather than on every request.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    BASE64.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// The three parts of the signed content, joined by dots; a MAC takes them
/// one after the other, so the body is never copied.
pub fn content<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

/// One `webhook-signature` entry, `v1,<base64>`, from a MAC already keyed
/// (the signer keys once and clones the keyed state per request).
pub fn signature<M: Mac>(mut mac: M, id: &str, timestamp: &str, body: &[u8]) -> String {
    for part in content(id, timestamp, body) {
        mac.update(part);
    }
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Signs with a decoded key (see [`decode_secret`]); see [`signature`].
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of every length, so `new_from_slice` cannot fail.
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    signature(mac, id, &timestamp.to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks spec's vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const KEY: &[u8] = b"\x0b\x61\x55\xb0\x14\x08\x86\xbb\x1c\x0a\x19\x50\
                         \x20\xc5\x7e\x6f\x9b\x12\x62\xca\x68\x6f\xba\x03";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn secrets_decode_and_sign_the_spec_vector() {
        assert_eq!(decode_secret(SECRET).unwrap(), KEY);
        // Without the prefix the text is still base64.
        assert_eq!(
            decode_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(),
            KEY
        );
        assert_eq!(sign(KEY, ID, TS, BODY), SIG);
        for broken in ["whsec_not base64!", "whsec_***", "whsec_", ""] {
            assert_eq!(decode_secret(broken), None, "{broken:?}");
        }
    }
}
