//! Condition parser and evaluator: `Condition::parse`, then `eval`.
//! The body and its invariants: `wasmhook::fuzzing::condition`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmhook::fuzzing::condition(data));
