//! The `condition` role: `evaluate(event) -> result<bool, error>`.

super::bindings!("condition-plugin", "$crate::__private::condition::bindings");
super::type_conversions!();

pub use bindings::export;
pub use bindings::exports::wasmhook::plugin::condition::Guest;
/// The generated event record.
pub type WitEvent = wit::Event;
/// The generated error variant.
pub type WitError = wit::Error;

/// Runs a plugin's condition function on a generated event.
pub fn evaluate(
    event: WitEvent,
    evaluate: impl FnOnce(&Event) -> Result<bool, Error>,
) -> Result<bool, WitError> {
    let event = event_from_wit(event)?;
    Ok(evaluate(&event)?)
}
