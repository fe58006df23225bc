//! The `verifier` role: `verify(request, secret, now) -> result<verdict, error>`.

super::bindings!("verifier-plugin", "$crate::__private::verifier::bindings");
super::type_conversions!();

use crate::{Request, Verdict};

pub use bindings::export;
pub use bindings::exports::wasmhook::plugin::verifier::Guest;
/// The generated request record.
pub type WitRequest = wit::Request;
/// The generated verdict variant.
pub type WitVerdict = wit::Verdict;
/// The generated error variant.
pub type WitError = wit::Error;
/// `list<u8>`.
pub type Bytes = Vec<u8>;

/// Runs a plugin's verify function on a generated request.
pub fn verify(
    request: WitRequest,
    secret: &[u8],
    now: u64,
    verify: impl FnOnce(&Request, &[u8], u64) -> Result<Verdict, Error>,
) -> Result<WitVerdict, WitError> {
    let wit::Request {
        method,
        path,
        headers,
        body,
    } = request;
    let request = Request {
        method,
        path,
        headers: headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body,
    };
    Ok(match verify(&request, secret, now)? {
        Verdict::Ok => wit::Verdict::Ok,
        Verdict::Rejected(reason) => wit::Verdict::Rejected(reason),
    })
}
