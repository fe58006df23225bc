//! Incoming signature headers: GitHub, Stripe, Standard Webhooks, generic HMAC.
//! The body and its invariants: `wasmhook::fuzzing::signature`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmhook::fuzzing::signature(data));
