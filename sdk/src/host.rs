//! The host's imports: logging, time, randomness and the plugin's config.
//!
//! On wasm32 these call `wasmhook:plugin/host`. Elsewhere (a plugin's unit
//! tests) they are served by [`testing`], so plugin logic can be tested with
//! plain `cargo test`.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// The host allows at most this many random bytes per call.
const RANDOM_BYTES_PER_CALL: usize = 65536;

#[cfg(target_arch = "wasm32")]
mod imports {
    // Every world generates the same `host` import; use the enabled role's.
    #[cfg(feature = "condition")]
    use crate::roles::condition::bindings::wasmhook::plugin::host;
    #[cfg(all(
        not(any(feature = "condition", feature = "transform")),
        feature = "encryption"
    ))]
    use crate::roles::encryption::bindings::wasmhook::plugin::host;
    #[cfg(all(not(feature = "condition"), feature = "transform"))]
    use crate::roles::transform::bindings::wasmhook::plugin::host;
    #[cfg(all(
        not(any(feature = "condition", feature = "transform", feature = "encryption")),
        feature = "verifier"
    ))]
    use crate::roles::verifier::bindings::wasmhook::plugin::host;

    pub(super) fn log(level: crate::log::Level, message: &str) {
        use crate::log::Level as L;
        let level = match level {
            L::Trace => host::Level::Trace,
            L::Debug => host::Level::Debug,
            L::Info => host::Level::Info,
            L::Warn => host::Level::Warn,
            L::Error => host::Level::Error,
        };
        host::log(level, message);
    }

    pub(super) fn now_ms() -> u64 {
        host::now_ms()
    }

    pub(super) fn random_bytes(len: u32) -> Vec<u8> {
        host::random_bytes(len)
    }

    pub(super) fn config() -> String {
        host::config()
    }

    // Only the roles that handle events import `event-context`.
    #[cfg(feature = "condition")]
    use crate::roles::condition::bindings::wasmhook::plugin::event_context;
    #[cfg(all(not(feature = "condition"), feature = "transform"))]
    use crate::roles::transform::bindings::wasmhook::plugin::event_context;

    #[cfg(any(feature = "condition", feature = "transform"))]
    pub(super) fn metadata() -> String {
        event_context::metadata()
    }
}

#[cfg(target_arch = "wasm32")]
use imports as backend;
#[cfg(not(target_arch = "wasm32"))]
use testing as backend;

/// Writes to wasmhook's log, tagged with the plugin's name.
pub mod log {
    /// A log level.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        /// Very detailed.
        Trace,
        /// Detailed.
        Debug,
        /// Normal.
        Info,
        /// Something looks wrong.
        Warn,
        /// Something failed.
        Error,
    }

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        super::backend::log(level, message);
    }

    /// Logs at `trace` level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }

    /// Logs at `debug` level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    /// Logs at `info` level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at `warn` level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    /// Logs at `error` level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Wall-clock time, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    backend::now_ms()
}

/// `len` cryptographically secure random bytes from the host.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let chunk = (len - bytes.len()).min(RANDOM_BYTES_PER_CALL);
        // `chunk` is at most 65536, so it fits in a u32.
        let got = backend::random_bytes(chunk as u32);
        if got.is_empty() {
            // A host that returns nothing would make this loop forever.
            panic!("the host returned no random bytes");
        }
        bytes.extend_from_slice(&got[..got.len().min(chunk)]);
    }
    bytes
}

/// What the envelope of the event being handled says beyond its rows, as a
/// JSON object: FraiseQL's `tenant_id`, `user_id`, `actor_type`,
/// `trace_context`, ...; Hasura's `trigger`, `schema`, `session`,
/// `delivery_info`. `{}` when the envelope carries none. Condition and
/// transform plugins only: the other roles handle no event.
#[cfg(any(feature = "condition", feature = "transform"))]
pub fn metadata() -> Value {
    serde_json::from_str(&backend::metadata()).unwrap_or(Value::Object(Default::default()))
}

/// The plugin's `config` table from `NAME.toml`, as JSON.
///
/// A missing table is `{}`.
pub fn config_value() -> Result<Value, Error> {
    config()
}

/// The config text, fetched from the host once per instance: it cannot
/// change while the instance lives (a new `NAME.toml` means new instances),
/// and a call saved is most of a cheap plugin's cost.
#[cfg(target_arch = "wasm32")]
fn config_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(backend::config)
}

#[cfg(not(target_arch = "wasm32"))]
fn config_text() -> String {
    backend::config()
}

/// The plugin's `config` table, deserialized into `T`.
///
/// Give `T` `#[serde(default)]` fields for optional keys, and
/// `#[serde(deny_unknown_fields)]` to catch typos; a mismatch is a `config`
/// error naming the key.
pub fn config<T: DeserializeOwned>() -> Result<T, Error> {
    let text = config_text();
    let text: &str = text.as_ref();
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| Error::config(format!("invalid config: {e}")))
}

/// Stand-ins for the host when a plugin's code runs natively (unit tests).
///
/// `config` returns what [`testing::set_config`] set on this thread (`{}` by
/// default), `now_ms` the system clock, `random_bytes` a deterministic,
/// NOT secure sequence, and `log` prints to stderr.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use std::cell::{Cell, RefCell};

    use crate::log::Level;

    thread_local! {
        static CONFIG: RefCell<String> = RefCell::new("{}".to_string());
        static METADATA: RefCell<String> = RefCell::new("{}".to_string());
        static RANDOM_STATE: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
    }

    /// Sets the JSON that [`crate::config`] reads on this thread.
    pub fn set_config(json: impl Into<String>) {
        CONFIG.with(|config| *config.borrow_mut() = json.into());
    }

    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
    }

    pub(crate) fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// SplitMix64: deterministic test bytes, never for real keys or nonces.
    pub(crate) fn random_bytes(len: u32) -> Vec<u8> {
        RANDOM_STATE.with(|state| {
            (0..len)
                .map(|_| {
                    let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
                    state.set(z);
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    (z ^ (z >> 31)) as u8
                })
                .collect()
        })
    }

    pub(crate) fn config() -> String {
        CONFIG.with(|config| config.borrow().clone())
    }

    /// Sets the JSON that [`crate::metadata`] reads on this thread.
    pub fn set_metadata(json: impl Into<String>) {
        METADATA.with(|metadata| *metadata.borrow_mut() = json.into());
    }

    #[cfg_attr(
        not(any(feature = "condition", feature = "transform")),
        allow(dead_code)
    )]
    pub(crate) fn metadata() -> String {
        METADATA.with(|metadata| metadata.borrow().clone())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        threshold: f64,
    }

    #[cfg(any(feature = "condition", feature = "transform"))]
    #[test]
    fn metadata_reads_the_events_envelope_facts() {
        assert_eq!(metadata(), serde_json::json!({}));
        testing::set_metadata(r#"{"tenant_id": "t-1", "session": {"x-hasura-role": "user"}}"#);
        assert_eq!(metadata()["tenant_id"], "t-1");
        assert_eq!(metadata()["session"]["x-hasura-role"], "user");
    }

    #[test]
    fn config_parses_and_names_bad_keys() {
        testing::set_config(r#"{"threshold": 5}"#);
        assert_eq!(config::<Config>().unwrap(), Config { threshold: 5.0 });
        testing::set_config(r#"{"treshold": 5}"#);
        let error = config::<Config>().unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("treshold")),
            "{error}"
        );
        testing::set_config("");
        assert_eq!(config::<Config>().unwrap(), Config { threshold: 0.0 });
    }

    #[test]
    fn random_bytes_spans_several_calls() {
        let bytes = random_bytes(RANDOM_BYTES_PER_CALL + 10);
        assert_eq!(bytes.len(), RANDOM_BYTES_PER_CALL + 10);
    }
}
