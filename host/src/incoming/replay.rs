//! Replay protection: a provider's delivery id seen within the window is
//! answered 200 without being processed again. Ids live in sled, so a
//! restart does not reopen the window.

use std::time::Duration;

use crate::clock::now_ms;
use crate::store::{Store, StoreError};

/// Remembered delivery ids, with their expiry.
#[derive(Clone)]
pub struct Seen {
    tree: sled::Tree,
}

impl Seen {
    /// Opens the tree in the main database.
    pub fn open(store: &Store) -> Result<Seen, StoreError> {
        Ok(Seen {
            tree: store.tree("incoming_seen")?,
        })
    }

    /// Records `key` for `window`; false if it was already there and not
    /// expired (a replay). Atomic, so two concurrent copies cannot both pass.
    pub fn first_time(&self, key: &str, window: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        let expiry = (now + window.as_millis() as u64).to_be_bytes();
        loop {
            let current = self.tree.get(key)?;
            if let Some(value) = &current {
                if expiry_of(value) > now {
                    return Ok(false);
                }
            }
            match self
                .tree
                .compare_and_swap(key, current, Some(&expiry[..]))?
            {
                Ok(()) => return Ok(true),
                Err(_) => continue,
            }
        }
    }

    /// Forgets `key` (the request could not be stored, so the provider's
    /// retry must not be treated as a replay).
    pub fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// Drops expired ids; returns how many.
    pub fn purge(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, value) = item?;
            if expiry_of(&value) <= now {
                self.tree.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn expiry_of(value: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = value.len().min(8);
    bytes[8 - n..].copy_from_slice(&value[value.len() - n..]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_id_passes_once_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open_in(dir.path()).await;
        let seen = Seen::open(&store).unwrap();
        assert!(seen
            .first_time("github/abc", Duration::from_secs(60))
            .unwrap());
        assert!(!seen
            .first_time("github/abc", Duration::from_secs(60))
            .unwrap());
        assert!(seen
            .first_time("github/other", Duration::from_secs(60))
            .unwrap());
        seen.forget("github/abc").unwrap();
        assert!(seen
            .first_time("github/abc", Duration::from_secs(60))
            .unwrap());
        assert!(seen.first_time("stripe/x", Duration::ZERO).unwrap());
        assert!(
            seen.first_time("stripe/x", Duration::ZERO).unwrap(),
            "an expired id passes again"
        );
        assert_eq!(seen.purge().unwrap(), 1);
    }
}
