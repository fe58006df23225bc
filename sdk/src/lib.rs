//! Write wasmhook plugins in Rust.
//!
//! A plugin is a WebAssembly component that plays one role: `condition`,
//! `transform`, `encryption` or `verifier` (see `wit/plugin.wit`). With this
//! crate it is a typed function plus one macro line:
//!
//! ```ignore
//! use wasmhook_sdk::{condition, Error, Event};
//!
//! fn is_delete(event: &Event) -> Result<bool, Error> {
//!     Ok(event.operation() == &wasmhook_sdk::Operation::Delete)
//! }
//!
//! condition!(is_delete);
//! ```
//!
//! Enable exactly one role feature (`condition`, `transform`, `encryption`,
//! `verifier`) in the plugin's `Cargo.toml`; it selects the WIT world the
//! component is built for. The host helpers ([`log`], [`now_ms`],
//! [`random_bytes`], [`config`]) are the plugin's only ways out of the
//! sandbox. Off wasm32 (in a plugin's unit tests) they are served by
//! [`testing`] instead of the host.
//!
//! The bindings themselves (`wit_bindgen::generate!`) stay inside this crate:
//! plugins never name a generated type.
#![warn(missing_docs, unreachable_pub)]

#[cfg(not(any(
    feature = "condition",
    feature = "transform",
    feature = "encryption",
    feature = "verifier"
)))]
compile_error!(
    "wasmhook-sdk: enable the feature of your plugin's role: \
     `condition`, `transform`, `encryption` or `verifier`"
);

mod error;
mod event;
mod host;
mod path;
mod payload;
mod request;
mod roles;
mod row;

pub use error::{Error, ResultExt};
pub use event::{Event, EventBuilder, Operation};
#[cfg(any(feature = "condition", feature = "transform"))]
pub use host::metadata;
pub use host::{config, config_value, log, now_ms, random_bytes};
pub use path::{get_path, get_path_mut};
pub use payload::Payload;
pub use request::{Request, Verdict};

#[cfg(not(target_arch = "wasm32"))]
pub use host::testing;

/// Re-exported so plugins need no version of their own to agree with ours.
pub use serde;
/// Re-exported so plugins need no version of their own to agree with ours.
pub use serde_json;
pub use serde_json::{json, Value};

#[doc(hidden)]
pub mod __private {
    //! Used by the role macros; not part of the API.
    #[cfg(feature = "condition")]
    pub use crate::roles::condition;
    #[cfg(feature = "encryption")]
    pub use crate::roles::encryption;
    #[cfg(feature = "transform")]
    pub use crate::roles::transform;
    #[cfg(feature = "verifier")]
    pub use crate::roles::verifier;
}

/// Exports a condition: `fn(&Event) -> Result<bool, Error>`.
///
/// Needs the `condition` feature. Use it once per plugin, at module level.
#[cfg(feature = "condition")]
#[macro_export]
macro_rules! condition {
    ($evaluate:expr $(,)?) => {
        const _: () = {
            use $crate::__private::condition as __role;

            struct WasmhookCondition;

            impl __role::Guest for WasmhookCondition {
                fn evaluate(
                    event: __role::WitEvent,
                ) -> ::core::result::Result<bool, __role::WitError> {
                    __role::evaluate(event, $evaluate)
                }
            }

            $crate::__private::condition::export!(
                WasmhookCondition with_types_in $crate::__private::condition::bindings
            );
        };
    };
}

/// Exports a transform: `fn(&Event, Option<&[u8]>) -> Result<Payload, Error>`.
///
/// The second argument is what the webhook's `body`/`body_template`
/// rendered, if it has one. Needs the `transform` feature.
#[cfg(feature = "transform")]
#[macro_export]
macro_rules! transform {
    ($transform:expr $(,)?) => {
        const _: () = {
            use $crate::__private::transform as __role;

            struct WasmhookTransform;

            impl __role::Guest for WasmhookTransform {
                fn transform(
                    event: __role::WitEvent,
                    body: ::core::option::Option<$crate::__private::transform::Bytes>,
                ) -> ::core::result::Result<__role::WitPayload, __role::WitError> {
                    __role::transform(event, body, $transform)
                }
            }

            $crate::__private::transform::export!(
                WasmhookTransform with_types_in $crate::__private::transform::bindings
            );
        };
    };
}

/// Exports an encryption pair: two `fn(&[u8], &[u8]) -> Result<Vec<u8>, Error>`
/// taking `(input, key)`, the first encrypting, the second decrypting.
///
/// Needs the `encryption` feature.
#[cfg(feature = "encryption")]
#[macro_export]
macro_rules! encryption {
    ($encrypt:expr, $decrypt:expr $(,)?) => {
        const _: () = {
            use $crate::__private::encryption as __role;

            struct WasmhookEncryption;

            impl __role::Guest for WasmhookEncryption {
                fn encrypt(
                    plaintext: __role::Bytes,
                    key: __role::Bytes,
                ) -> ::core::result::Result<__role::Bytes, __role::WitError> {
                    __role::call(&plaintext, &key, $encrypt)
                }

                fn decrypt(
                    ciphertext: __role::Bytes,
                    key: __role::Bytes,
                ) -> ::core::result::Result<__role::Bytes, __role::WitError> {
                    __role::call(&ciphertext, &key, $decrypt)
                }
            }

            $crate::__private::encryption::export!(
                WasmhookEncryption with_types_in $crate::__private::encryption::bindings
            );
        };
    };
}

/// Exports a verifier: `fn(&Request, &[u8], u64) -> Result<Verdict, Error>`
/// taking the request, the secret and the current time in Unix seconds.
///
/// Needs the `verifier` feature.
#[cfg(feature = "verifier")]
#[macro_export]
macro_rules! verifier {
    ($verify:expr $(,)?) => {
        const _: () = {
            use $crate::__private::verifier as __role;

            struct WasmhookVerifier;

            impl __role::Guest for WasmhookVerifier {
                fn verify(
                    request: __role::WitRequest,
                    secret: __role::Bytes,
                    now: u64,
                ) -> ::core::result::Result<__role::WitVerdict, __role::WitError> {
                    __role::verify(request, &secret, now, $verify)
                }
            }

            $crate::__private::verifier::export!(
                WasmhookVerifier with_types_in $crate::__private::verifier::bindings
            );
        };
    };
}

/// Logs at `trace` level through the host, `format!`-style.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}

/// Logs at `debug` level through the host, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}

/// Logs at `info` level through the host, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Logs at `warn` level through the host, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Logs at `error` level through the host, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}
