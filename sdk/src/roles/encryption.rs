//! The `encryption` role: `encrypt`/`decrypt(bytes, key) -> result<list<u8>, error>`.

super::bindings!(
    "encryption-plugin",
    "$crate::__private::encryption::bindings"
);
super::type_conversions!();

pub use bindings::export;
pub use bindings::exports::wasmhook::plugin::encryption::Guest;
/// The generated error variant.
pub type WitError = wit::Error;
/// `list<u8>`.
pub type Bytes = Vec<u8>;

/// Runs a plugin's encrypt or decrypt function.
pub fn call(
    input: &[u8],
    key: &[u8],
    function: impl FnOnce(&[u8], &[u8]) -> Result<Vec<u8>, Error>,
) -> Result<Bytes, WitError> {
    Ok(function(input, key)?)
}
