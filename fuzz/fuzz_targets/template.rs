//! Template parser and renderer: `TextTemplate` and `JsonTemplate`, compiled and rendered.
//! The body and its invariants: `wasmhook::fuzzing::template`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmhook::fuzzing::template(data));
