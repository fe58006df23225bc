//! Envelope detection and parsing on arbitrary bytes.
//! The body and its invariants: `wasmhook::fuzzing::envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmhook::fuzzing::envelope(data));
