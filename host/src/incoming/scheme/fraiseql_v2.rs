//! FraiseQL v2's observer webhooks: Stripe's layout in
//! `X-FraiseQL-Signature-256` (`t=<unix>,v1=<hex>` over `"{t}.{body}"`,
//! keyed with the secret as written), the event id in `X-FraiseQL-Event-Id`.

use super::{Headers, Rejection};

const SIGNATURE: &str = "X-FraiseQL-Signature-256";
/// The event id header, the delivery id of this scheme.
pub(super) const EVENT_ID: &str = "X-FraiseQL-Event-Id";

/// Verifies FraiseQL's header; Stripe's does not stand in for it.
pub(super) fn verify(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secrets: &[&[u8]],
    now: u64,
    tolerance: u64,
) -> Result<(), Rejection> {
    super::stripe::verify_layout(SIGNATURE, headers, body, secrets, now, tolerance)
}

#[cfg(test)]
mod tests {
    use super::SIGNATURE;
    use crate::incoming::scheme::cases::headers;
    use crate::incoming::scheme::stripe::tests::{
        stripe, STRIPE_BODY, STRIPE_SECRET, STRIPE_SIG, STRIPE_T,
    };
    use crate::incoming::scheme::Rejection::{Mismatch, MissingHeader, Stale};
    use crate::incoming::scheme::{delivery_id, verify, Scheme, DEFAULT_TOLERANCE_SECONDS};

    /// FraiseQL v2's observer webhooks: Stripe's layout under FraiseQL's
    /// header, the event id in `X-FraiseQL-Event-Id`; the Stripe header
    /// does not stand in for FraiseQL's.
    #[test]
    fn fraiseql_v2_scheme() {
        let good = headers(&[
            (
                "X-FraiseQL-Signature-256",
                &format!("t={STRIPE_T},v1={STRIPE_SIG}"),
            ),
            ("X-FraiseQL-Event-Id", "evt-9"),
        ]);
        let scheme = Scheme::FraiseqlV2 {
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        assert_eq!(
            verify(&scheme, &good, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
            Ok(())
        );
        assert_eq!(
            delivery_id(&scheme, &good, STRIPE_BODY).as_deref(),
            Some("evt-9")
        );
        assert_eq!(
            verify(&scheme, &good, b"{}", &[STRIPE_SECRET], STRIPE_T),
            Err(Mismatch)
        );
        assert_eq!(
            verify(
                &scheme,
                &good,
                STRIPE_BODY,
                &[STRIPE_SECRET],
                STRIPE_T + 301
            ),
            Err(Stale)
        );
        let as_stripe = stripe(&format!("t={STRIPE_T},v1={STRIPE_SIG}"));
        assert_eq!(
            verify(&scheme, &as_stripe, STRIPE_BODY, &[STRIPE_SECRET], STRIPE_T),
            Err(MissingHeader(SIGNATURE.to_owned()))
        );
    }

    /// What wasmhook's signing stage sends under `fraiseql-v2`, during a
    /// rotation, its own incoming side accepts under either secret.
    #[test]
    fn fraiseql_v2_accepts_what_signing_sends() {
        let body = br#"{"a":1}"#;
        let signer = crate::signing::Signer::fraiseql_v2(&[b"secret", b"old"]).unwrap();
        let sent: Vec<(String, String)> = signer
            .headers("delivery-1", "evt-1", 1704067200, body)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        let scheme = Scheme::FraiseqlV2 {
            tolerance_seconds: 300,
        };
        for secret in [&b"secret"[..], b"old"] {
            assert_eq!(verify(&scheme, &sent, body, &[secret], 1704067200), Ok(()));
        }
    }
}
