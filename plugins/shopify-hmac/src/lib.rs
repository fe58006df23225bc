//! Verifier: Shopify's webhook signature, `X-Shopify-Hmac-Sha256:
//! base64(HMAC-SHA256(secret, raw body))`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmhook_sdk::{verifier, Error, Request, Verdict};

const HEADER: &str = "X-Shopify-Hmac-Sha256";

/// Shopify signs no timestamp, so `now` is unused: replays are the
/// receiver's to deduplicate (on `X-Shopify-Webhook-Id`).
fn verify(request: &Request, secret: &[u8], _now: u64) -> Result<Verdict, Error> {
    if secret.is_empty() {
        return Err(Error::config("no secret: grant the app's client secret"));
    }
    let Some(signature) = request.header(HEADER) else {
        return Ok(Verdict::rejected(format!("missing {HEADER}")));
    };
    let Ok(signature) = BASE64.decode(signature.trim()) else {
        return Ok(Verdict::rejected(format!("{HEADER} is not base64")));
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Error::config("the secret cannot key HMAC-SHA256"))?;
    mac.update(request.body());
    // `verify_slice` compares in constant time.
    Ok(match mac.verify_slice(&signature) {
        Ok(()) => Verdict::Ok,
        Err(_) => Verdict::rejected(format!("{HEADER} does not match the body")),
    })
}

verifier!(verify);

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"hush";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        BASE64.encode(mac.finalize().into_bytes())
    }

    fn request(header: &str, value: &str) -> Request {
        Request::new("POST", "/shopify")
            .with_header(header, value)
            .with_body(BODY)
    }

    #[test]
    fn accepts_the_right_signature_under_any_header_case() {
        for header in [HEADER, "x-shopify-hmac-sha256", "X-SHOPIFY-HMAC-SHA256"] {
            let verdict = verify(&request(header, &sign(BODY)), SECRET, 0).unwrap();
            assert_eq!(verdict, Verdict::Ok, "{header}");
        }
    }

    #[test]
    fn known_vector() {
        // The well-known HMAC-SHA256 example: key "key", the quick brown fox.
        let request = Request::new("POST", "/")
            .with_header(HEADER, "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=")
            .with_body(&b"The quick brown fox jumps over the lazy dog"[..]);
        assert_eq!(verify(&request, b"key", 0).unwrap(), Verdict::Ok);
    }

    #[test]
    fn rejects_missing_wrong_and_malformed_signatures() {
        let bare = Request::new("POST", "/shopify").with_body(BODY);
        assert_eq!(
            verify(&bare, SECRET, 0).unwrap(),
            Verdict::rejected("missing X-Shopify-Hmac-Sha256")
        );
        let wrong = request(HEADER, &sign(b"{}"));
        assert!(matches!(
            verify(&wrong, SECRET, 0).unwrap(),
            Verdict::Rejected(_)
        ));
        let malformed = request(HEADER, "not base64!");
        assert!(matches!(
            verify(&malformed, SECRET, 0).unwrap(),
            Verdict::Rejected(_)
        ));
    }

    #[test]
    fn empty_secret_is_a_config_error() {
        assert!(matches!(
            verify(&request(HEADER, "x"), b"", 0),
            Err(Error::Config(_))
        ));
    }
}
