//! The wall clock and the ids every stage stamps things with.
//!
//! Not a stage: sources, plugins, delivery and storage all read the time
//! and make ids, and none of them should have to import another stage (or
//! the storage) to do so. In: nothing. Out: unix milliseconds, RFC 3339
//! times, v7 UUIDs.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time as RFC 3339, for events that carry no timestamp.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A new id; v7 UUIDs sort by creation time, which keeps DLQ listings in
/// order.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Ids for the deliveries that die while one batch is accepted: v7 UUIDs
/// (time-ordered, like every delivery id) that share all but their last 16
/// bits, [`Family::SIZE`] at most, then a new family begins. The DLQ keeps
/// a family's letters together in one record (a grave) and finds them from
/// any one id.
#[derive(Debug)]
pub struct Family {
    base: [u8; 16],
    next: u16,
}

impl Default for Family {
    fn default() -> Family {
        Family {
            base: *uuid::Uuid::now_v7().as_bytes(),
            next: 0,
        }
    }
}

impl Family {
    /// Ids per family at most: bounds the record a later retry or purge of
    /// one letter rewrites (about 50 KB with 1 KB entities).
    pub const SIZE: u16 = 32;

    /// The next id of the family.
    pub fn next_id(&mut self) -> String {
        if self.next == Self::SIZE {
            *self = Family::default();
        }
        let mut bytes = self.base;
        bytes[14..].copy_from_slice(&self.next.to_be_bytes());
        self.next += 1;
        uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
    }
}
