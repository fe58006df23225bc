//! Built-in field encryption: AES-256-GCM on the JSON body's fields named in
//! `fields`, each replaced by a `wh1:` envelope string. The
//! `aes-gcm-fields` example plugin writes the same envelope, so either can
//! replace the other and `wasmhook decrypt` opens both.
//!
//! Envelope, version 1: `"wh1:" + base64(nonce ‖ ciphertext ‖ tag)` with
//! standard, padded base64; a 12-byte random nonce; a 16-byte tag; the
//! plaintext is the field's JSON text (so `42`, `"x"` and `{"a":1}` all
//! round-trip); the associated data is the field's path as configured
//! (`customer.email`), so an envelope moved to another field fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

/// Prefix of a version-1 envelope.
pub const PREFIX: &str = "wh1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a body could not be sealed or opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EncryptError {
    /// The key is not 32 bytes.
    #[error("the AES-256-GCM key must be 32 bytes, not {0}")]
    KeyLength(usize),
    /// Field encryption needs a JSON body.
    #[error("field encryption needs a JSON body: {0}")]
    NotJson(String),
    /// A field to open is not an envelope, or fails authentication.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field's path.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The OS had no randomness for a nonce.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// A key and the fields it seals.
#[derive(Clone)]
pub struct FieldCipher {
    cipher: Aes256Gcm,
    fields: Vec<String>,
}

impl std::fmt::Debug for FieldCipher {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl FieldCipher {
    /// A cipher for `fields` (dotted paths; array indexes allowed).
    pub fn new(key: &[u8], fields: Vec<String>) -> Result<FieldCipher, EncryptError> {
        if key.len() != KEY_LEN {
            return Err(EncryptError::KeyLength(key.len()));
        }
        let cipher =
            Aes256Gcm::new_from_slice(key).map_err(|_| EncryptError::KeyLength(key.len()))?;
        Ok(FieldCipher { cipher, fields })
    }

    /// The fields it seals.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Seals each configured field the body has; absent fields are skipped.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>, EncryptError> {
        self.seal_with(body, |nonce| {
            getrandom::fill(nonce).map_err(|e| EncryptError::Random(e.to_string()))
        })
    }

    fn seal_with(
        &self,
        body: &[u8],
        mut random: impl FnMut(&mut [u8]) -> Result<(), EncryptError>,
    ) -> Result<Vec<u8>, EncryptError> {
        let mut document = parse(body)?;
        for path in &self.fields {
            let Some(value) = path_mut(&mut document, path) else {
                continue;
            };
            let plaintext = value.to_string();
            let mut nonce = [0u8; NONCE_LEN];
            random(&mut nonce)?;
            let sealed = self
                .cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext.as_bytes(),
                        aad: path.as_bytes(),
                    },
                )
                .map_err(|_| field(path, "cannot be encrypted"))?;
            let mut envelope = nonce.to_vec();
            envelope.extend_from_slice(&sealed);
            *value = Value::String(format!("{PREFIX}{}", BASE64.encode(envelope)));
        }
        Ok(document.to_string().into_bytes())
    }

    /// Opens each configured field the body has; a field that is not an
    /// envelope or fails authentication is an error naming it.
    pub fn open(&self, body: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let mut document = parse(body)?;
        for path in &self.fields {
            let Some(value) = path_mut(&mut document, path) else {
                continue;
            };
            let envelope = value
                .as_str()
                .and_then(|s| s.strip_prefix(PREFIX))
                .ok_or_else(|| field(path, &format!("is not a {PREFIX} envelope")))?;
            let envelope = BASE64
                .decode(envelope)
                .map_err(|e| field(path, &format!("the envelope is not base64: {e}")))?;
            if envelope.len() < NONCE_LEN + TAG_LEN {
                return Err(field(path, "the envelope is too short"));
            }
            let (nonce, sealed) = envelope.split_at(NONCE_LEN);
            let plaintext = self
                .cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: path.as_bytes(),
                    },
                )
                .map_err(|_| {
                    field(
                        path,
                        "authentication failed (wrong key, or a changed or moved value)",
                    )
                })?;
            *value = serde_json::from_slice(&plaintext)
                .map_err(|e| field(path, &format!("the plaintext is not JSON: {e}")))?;
        }
        Ok(document.to_string().into_bytes())
    }
}

fn field(path: &str, problem: &str) -> EncryptError {
    EncryptError::Field {
        field: path.to_string(),
        problem: problem.to_string(),
    }
}

fn parse(body: &[u8]) -> Result<Value, EncryptError> {
    serde_json::from_slice(body).map_err(|e| EncryptError::NotJson(e.to_string()))
}

/// `customer.email`, `items.0.sku`.
fn path_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get_mut(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn cipher(paths: &[&str]) -> FieldCipher {
        FieldCipher::new(&KEY, paths.iter().map(|p| p.to_string()).collect()).unwrap()
    }

    fn counter(nonce: &mut [u8]) -> Result<(), EncryptError> {
        for (i, b) in nonce.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(())
    }

    #[test]
    fn round_trips_values_of_any_type_and_keeps_key_order() {
        let body = json!({"id": 1, "ssn": "123-45-6789", "card": {"n": 4242}, "tags": [1, 2],
                          "customer": {"email": "a@b.c", "name": "Ada"}})
        .to_string();
        let c = cipher(&["ssn", "card", "customer.email", "tags.1", "missing"]);
        let sealed = c.seal(body.as_bytes()).unwrap();
        let sealed_json: Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(sealed_json["id"], 1);
        assert_eq!(sealed_json["customer"]["name"], "Ada");
        for value in [
            &sealed_json["ssn"],
            &sealed_json["card"],
            &sealed_json["customer"]["email"],
            &sealed_json["tags"][1],
        ] {
            assert!(value.as_str().unwrap().starts_with("wh1:"), "{value}");
        }
        assert!(!String::from_utf8_lossy(&sealed).contains("123-45"));
        assert_eq!(c.open(&sealed).unwrap(), body.as_bytes());
    }

    #[test]
    fn the_envelope_is_the_plugins_layout() {
        // Same key, nonce and field as the aes-gcm-fields plugin's test:
        // nonce ‖ ciphertext of `"x"` ‖ tag.
        let sealed = cipher(&["a"]).seal_with(br#"{"a":"x"}"#, counter).unwrap();
        let sealed: Value = serde_json::from_slice(&sealed).unwrap();
        let raw = BASE64
            .decode(sealed["a"].as_str().unwrap().strip_prefix("wh1:").unwrap())
            .unwrap();
        assert_eq!(raw.len(), NONCE_LEN + 3 + TAG_LEN);
        assert_eq!(&raw[..NONCE_LEN], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    }

    #[test]
    fn wrong_key_moved_field_and_plain_values_are_rejected() {
        let c = cipher(&["a", "b"]);
        let sealed = c.seal(br#"{"a":"x","b":"y"}"#).unwrap();
        let other = FieldCipher::new(&[8; 32], vec!["a".into()]).unwrap();
        assert!(
            matches!(other.open(&sealed), Err(EncryptError::Field { field, .. }) if field == "a")
        );
        // b's envelope moved into a fails: the path is authenticated.
        let mut moved: Value = serde_json::from_slice(&sealed).unwrap();
        moved["a"] = moved["b"].clone();
        let e = c.open(moved.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("authentication failed"), "{e}");
        let e = c.open(br#"{"a":"plain"}"#).unwrap_err();
        assert_eq!(e.to_string(), "field `a`: is not a wh1: envelope");
        assert!(matches!(c.seal(b"not json"), Err(EncryptError::NotJson(_))));
        assert_eq!(
            FieldCipher::new(&[1; 16], vec![]).unwrap_err(),
            EncryptError::KeyLength(16)
        );
    }
}
