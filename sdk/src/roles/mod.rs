//! One module per role, each generating the bindings of its own WIT world and
//! converting between the generated types and the SDK's.
//!
//! Each world lives in its own module (behind its own feature) because
//! wit-bindgen embeds a world's type section wherever it is generated, and
//! componentization then demands every export of every embedded world.

#[cfg(feature = "condition")]
pub mod condition;
#[cfg(feature = "encryption")]
pub mod encryption;
#[cfg(feature = "transform")]
pub mod transform;
#[cfg(feature = "verifier")]
pub mod verifier;

/// Generates the bindings of `$world` into a `bindings` module, with an
/// `export!` macro that the role macros reach through `$crate`.
macro_rules! bindings {
    ($world:literal, $module:literal) => {
        #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
        pub mod bindings {
            wit_bindgen::generate!({
                path: "../wit",
                world: $world,
                pub_export_macro: true,
                default_bindings_module: $module,
            });
        }
    };
}
pub(crate) use bindings;

/// Converts the generated `types` of one world to and from the SDK's types.
/// Every world generates its own copy of `wasmhook:plugin/types`, so this runs
/// once per role module.
macro_rules! type_conversions {
    () => {
        use crate::{Error, Event};
        use bindings::wasmhook::plugin::types as wit;

        impl From<Error> for wit::Error {
            fn from(error: Error) -> Self {
                match error {
                    Error::InvalidInput(message) => wit::Error::InvalidInput(message),
                    Error::Config(message) => wit::Error::Config(message),
                    Error::Failed(message) => wit::Error::Failed(message),
                }
            }
        }

        #[allow(dead_code)]
        fn event_from_wit(event: wit::Event) -> Result<Event, Error> {
            let wit::Event { meta, data, old } = event;
            Event::from_parts(
                crate::event::Meta {
                    id: meta.id,
                    entity: meta.entity,
                    operation: meta.operation,
                    entity_id: meta.entity_id,
                    timestamp: meta.timestamp,
                    source: meta.source,
                },
                data,
                old,
            )
        }
    };
}
pub(crate) use type_conversions;
