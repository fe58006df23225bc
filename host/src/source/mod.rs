//! Sources: where events come from. Each bus is one file; all of them hand
//! raw messages to [`crate::pipeline::Pipeline`], which parses envelopes
//! (`envelope`) and stores the resulting deliveries before a source may
//! acknowledge anything.

pub mod envelope;
pub mod http;
pub mod nats;
