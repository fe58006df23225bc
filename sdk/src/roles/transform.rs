//! The `transform` role: `transform(event, body) -> result<payload, error>`.

super::bindings!("transform-plugin", "$crate::__private::transform::bindings");
super::type_conversions!();

use crate::Payload;

pub use bindings::export;
pub use bindings::exports::wasmhook::plugin::transform::Guest;
/// The generated event record.
pub type WitEvent = wit::Event;
/// The generated error variant.
pub type WitError = wit::Error;
/// The generated payload record.
pub type WitPayload = wit::Payload;
/// `list<u8>`.
pub type Bytes = Vec<u8>;

/// Runs a plugin's transform function on a generated event and body.
pub fn transform(
    event: WitEvent,
    body: Option<Bytes>,
    transform: impl FnOnce(&Event, Option<&[u8]>) -> Result<Payload, Error>,
) -> Result<WitPayload, WitError> {
    let event = event_from_wit(event)?;
    let payload = transform(&event, body.as_deref())?;
    Ok(wit::Payload {
        body: payload.body,
        headers: payload
            .headers
            .into_iter()
            .map(|(name, value)| wit::Header { name, value })
            .collect(),
        content_type: payload.content_type,
    })
}
