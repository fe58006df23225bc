//! Replay protection: a provider's delivery id seen within the window is
//! answered 200 without being processed again. Ids are kept by the store,
//! so a restart does not reopen the window.

use std::time::Duration;

use crate::store::{Store, StoreError};

/// Remembered delivery ids, with their expiry.
#[derive(Clone)]
pub struct Seen {
    store: Store,
}

impl Seen {
    /// The ids `store` keeps.
    pub fn new(store: Store) -> Seen {
        Seen { store }
    }

    /// Records `key` for `window`; false if it was already there and not
    /// expired (a replay). Atomic, so two concurrent copies cannot both pass.
    pub async fn first_time(&self, key: &str, window: Duration) -> Result<bool, StoreError> {
        self.store.replay_first_time(key, window).await
    }

    /// Forgets `key` (the request could not be stored, so the provider's
    /// retry must not be treated as a replay).
    pub async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.store.replay_forget(key).await
    }

    /// Drops expired ids; returns how many.
    pub async fn purge(&self) -> Result<usize, StoreError> {
        self.store.replay_purge().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delivery_id_passes_once_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open_in(dir.path()).await;
        let seen = Seen::new(store);
        assert!(seen
            .first_time("github/abc", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(!seen
            .first_time("github/abc", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(seen
            .first_time("github/other", Duration::from_secs(60))
            .await
            .unwrap());
        seen.forget("github/abc").await.unwrap();
        assert!(seen
            .first_time("github/abc", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(seen.first_time("stripe/x", Duration::ZERO).await.unwrap());
        assert!(
            seen.first_time("stripe/x", Duration::ZERO).await.unwrap(),
            "an expired id passes again"
        );
        assert_eq!(seen.purge().await.unwrap(), 1);
    }
}
