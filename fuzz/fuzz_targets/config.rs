//! The config loader, `Config::from_toml`, and the config it loads.
//! The body and its invariants: `wasmhook::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmhook::fuzzing::config(data));
