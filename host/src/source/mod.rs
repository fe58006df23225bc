//! Sources: where events come from. Each bus is one file; all of them hand
//! raw messages to [`crate::pipeline::Pipeline`], which parses envelopes
//! (`envelope`) and stores the resulting deliveries before a source may
//! acknowledge anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub mod envelope;
pub mod http;
pub mod jetstream;
pub mod nats;

/// Whether the source is connected to its bus, for `/readyz`. The embedded
/// HTTP source is always connected.
#[derive(Clone, Debug)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    /// Starts as `initially`.
    pub fn new(initially: bool) -> Connected {
        Connected(Arc::new(AtomicBool::new(initially)))
    }

    /// Records a connection change.
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
    }

    /// The last state recorded.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
