//! Encryption: AES-256-GCM on the fields of a JSON body named in
//! `config.fields`, each replaced by a `wh1:` envelope string.
//!
//! Envelope, version 1: `"wh1:" + base64(nonce ‖ ciphertext ‖ tag)` with
//! standard, padded base64; a 12-byte random nonce; a 16-byte tag; the
//! plaintext is the field's JSON text (so `42`, `"x"` and `{"a":1}` all
//! round-trip); the associated data is the field's path as configured
//! (`customer.email`), so an envelope moved to another field fails to decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use wasmhook_sdk::{encryption, get_path_mut, Error};

/// Prefix of a version-1 envelope.
const PREFIX: &str = "wh1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Dotted paths of the fields to encrypt (`ssn`, `customer.email`).
    fields: Vec<String>,
}

fn encrypt(plaintext: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    let config: Config = wasmhook_sdk::config()?;
    encrypt_fields(plaintext, key, &config.fields, |len| {
        wasmhook_sdk::random_bytes(len)
    })
}

fn decrypt(ciphertext: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    let config: Config = wasmhook_sdk::config()?;
    decrypt_fields(ciphertext, key, &config.fields)
}

encryption!(encrypt, decrypt);

fn cipher(key: &[u8]) -> Result<Aes256Gcm, Error> {
    if key.len() != KEY_LEN {
        return Err(Error::config(format!(
            "the key must be {KEY_LEN} bytes (AES-256), not {}",
            key.len()
        )));
    }
    Aes256Gcm::new_from_slice(key).map_err(|_| Error::config("the key is not an AES-256 key"))
}

fn parse_body(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid_input(format!("the body is not JSON: {e}")))
}

fn to_body(body: &Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::failed(format!("cannot write the body: {e}")))
}

/// Encrypts each listed field that the body has; absent fields are skipped.
fn encrypt_fields(
    body: &[u8],
    key: &[u8],
    fields: &[String],
    random_bytes: impl Fn(usize) -> Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let cipher = cipher(key)?;
    let mut body = parse_body(body)?;
    for path in fields {
        let Some(value) = get_path_mut(&mut body, path) else {
            continue;
        };
        let plaintext = serde_json::to_vec(value)
            .map_err(|e| Error::failed(format!("cannot write field `{path}`: {e}")))?;
        let nonce = random_bytes(NONCE_LEN);
        if nonce.len() != NONCE_LEN {
            return Err(Error::failed("the host returned too few random bytes"));
        }
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: path.as_bytes(),
                },
            )
            .map_err(|_| Error::failed(format!("cannot encrypt field `{path}`")))?;
        let mut envelope = nonce;
        envelope.extend_from_slice(&sealed);
        *value = Value::String(format!("{PREFIX}{}", BASE64.encode(envelope)));
    }
    to_body(&body)
}

/// Decrypts each listed field that the body has; a listed field that is not
/// a `wh1:` envelope, or fails authentication, is an `invalid-input` error.
fn decrypt_fields(body: &[u8], key: &[u8], fields: &[String]) -> Result<Vec<u8>, Error> {
    let cipher = cipher(key)?;
    let mut body = parse_body(body)?;
    for path in fields {
        let Some(value) = get_path_mut(&mut body, path) else {
            continue;
        };
        let envelope = value
            .as_str()
            .and_then(|s| s.strip_prefix(PREFIX))
            .ok_or_else(|| {
                Error::invalid_input(format!("field `{path}` is not a {PREFIX} envelope"))
            })?;
        let envelope = BASE64.decode(envelope).map_err(|e| {
            Error::invalid_input(format!("field `{path}`: the envelope is not base64: {e}"))
        })?;
        if envelope.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::invalid_input(format!(
                "field `{path}`: the envelope is too short"
            )));
        }
        let (nonce, sealed) = envelope.split_at(NONCE_LEN);
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: path.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::invalid_input(format!(
                    "field `{path}`: authentication failed (wrong key, or a changed or moved value)"
                ))
            })?;
        *value = serde_json::from_slice(&plaintext).map_err(|e| {
            Error::invalid_input(format!("field `{path}`: the plaintext is not JSON: {e}"))
        })?;
    }
    to_body(&body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn fields(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    fn counter_nonce(len: usize) -> Vec<u8> {
        (0..len as u8).collect()
    }

    #[test]
    fn round_trips_values_of_any_type() {
        let body = json!({"id": 1, "ssn": "123-45-6789", "card": {"n": 4242}, "tags": [1, 2],
                          "customer": {"email": "a@b.c", "name": "Ada"}});
        let body = serde_json::to_vec(&body).unwrap();
        let paths = fields(&["ssn", "card", "customer.email", "tags.1", "missing"]);
        let sealed = encrypt_fields(&body, &KEY, &paths, counter_nonce).unwrap();
        let sealed_json: Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(sealed_json["id"], 1);
        assert_eq!(sealed_json["customer"]["name"], "Ada");
        for path in ["ssn", "card", "customer.email", "tags.1"] {
            let value = wasmhook_sdk::get_path(&sealed_json, path).unwrap();
            assert!(
                value.as_str().unwrap().starts_with("wh1:"),
                "{path}: {value}"
            );
        }
        let opened = decrypt_fields(&sealed, &KEY, &paths).unwrap();
        assert_eq!(opened, body, "keys keep their order too");
    }

    #[test]
    fn envelope_layout_is_nonce_ciphertext_tag() {
        let sealed = encrypt_fields(br#"{"a":"x"}"#, &KEY, &fields(&["a"]), counter_nonce).unwrap();
        let sealed: Value = serde_json::from_slice(&sealed).unwrap();
        let raw = BASE64
            .decode(sealed["a"].as_str().unwrap().strip_prefix("wh1:").unwrap())
            .unwrap();
        // `"x"` is 3 bytes of JSON.
        assert_eq!(raw.len(), NONCE_LEN + 3 + TAG_LEN);
        assert_eq!(&raw[..NONCE_LEN], counter_nonce(NONCE_LEN).as_slice());
    }

    #[test]
    fn wrong_key_moved_field_and_plain_values_are_rejected() {
        let sealed = encrypt_fields(
            br#"{"a":"x","b":"y"}"#,
            &KEY,
            &fields(&["a", "b"]),
            counter_nonce,
        )
        .unwrap();
        let wrong_key = decrypt_fields(&sealed, &[8; 32], &fields(&["a"])).unwrap_err();
        assert!(matches!(wrong_key, Error::InvalidInput(_)), "{wrong_key}");

        let mut swapped: Value = serde_json::from_slice(&sealed).unwrap();
        let a = swapped["a"].take();
        swapped["a"] = swapped["b"].take();
        swapped["b"] = a;
        let swapped = serde_json::to_vec(&swapped).unwrap();
        assert!(decrypt_fields(&swapped, &KEY, &fields(&["a"])).is_err());

        let plain = decrypt_fields(br#"{"a":"x"}"#, &KEY, &fields(&["a"])).unwrap_err();
        assert!(matches!(plain, Error::InvalidInput(_)), "{plain}");
    }

    #[test]
    fn key_must_be_32_bytes_and_body_json() {
        let error = encrypt_fields(b"{}", &[0; 16], &fields(&["a"]), counter_nonce).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
        let error = encrypt_fields(b"not json", &KEY, &fields(&["a"]), counter_nonce).unwrap_err();
        assert!(matches!(error, Error::InvalidInput(_)), "{error}");
    }

    #[test]
    fn entry_points_read_config() {
        wasmhook_sdk::testing::set_config(r#"{"fields": ["a"]}"#);
        let sealed = encrypt(br#"{"a":[1,2],"b":3}"#, &KEY).unwrap();
        assert_eq!(decrypt(&sealed, &KEY).unwrap(), br#"{"a":[1,2],"b":3}"#);
        wasmhook_sdk::testing::set_config("{}");
        assert!(matches!(encrypt(b"{}", &KEY), Err(Error::Config(_))));
    }
}
