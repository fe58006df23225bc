//! Compatibility proof: wasmhook consumes what the real FraiseQL publishes.
//!
//! The tests (`tests/e2e`) publish with FraiseQL's own crates
//! (`fraiseql-observers`' `NatsTransport`, `fraiseql-cdc-sinks`'
//! `NatsJetStreamSink`, and the change-log migrations and capture trigger
//! on a private PostgreSQL 15), run the real `wasmhook` binary as a child
//! process against them, and check what reaches a webhook receiver. See
//! README.md.
//!
//! This library holds only the FraiseQL version the proof is about.

/// The FraiseQL release these tests publish with. Cargo.toml pins the
/// `fraiseql-*` dev-dependencies to exactly this version; a test checks
/// that the lockfile agrees.
pub const FRAISEQL_VERSION: &str = "2.19.0";
