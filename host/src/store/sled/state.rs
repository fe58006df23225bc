//! The small state other stages keep between runs, one tree each:
//! switched-off webhooks (`delivery::switches`), the provider delivery ids
//! an incoming receiver has seen (`incoming::replay`), the last run of each
//! schedule (`schedule`), and the key the readiness probe writes.

use std::time::Duration;

use super::{u64_key, Database, MARKS};
use crate::clock::now_ms;
use crate::store::error::StoreError;

/// A switched-off webhook's key: observer name, NUL, position.
fn switch_key(observer: &str, webhook: usize) -> Vec<u8> {
    format!("{observer}\0{webhook}").into_bytes()
}

impl Database {
    /// The switched-off webhooks: (observer, position).
    pub(crate) fn disabled_webhooks(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let mut disabled = Vec::new();
        for item in self.switches.iter() {
            let (k, _) = item?;
            let text = String::from_utf8_lossy(&k).into_owned();
            if let Some((observer, index)) = text.split_once('\0') {
                if let Ok(index) = index.parse() {
                    disabled.push((observer.to_string(), index));
                }
            }
        }
        Ok(disabled)
    }

    /// Switches a webhook off or on, on disk before it returns.
    pub(crate) fn switch_webhook(
        &self,
        observer: &str,
        webhook: usize,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let key = switch_key(observer, webhook);
        if disabled {
            self.switches.insert(key, &[])?;
        } else {
            self.switches.remove(key)?;
        }
        self.switches.flush()?;
        Ok(())
    }

    /// Records `key` for `window`; false if it was already there and not
    /// expired (a replay). Atomic, so two concurrent copies cannot both pass.
    pub(crate) fn replay_first_time(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let expiry = (now + window.as_millis() as u64).to_be_bytes();
        loop {
            let current = self.seen.get(key)?;
            if let Some(value) = &current {
                if u64_key(value) > now {
                    return Ok(false);
                }
            }
            match self
                .seen
                .compare_and_swap(key, current, Some(&expiry[..]))?
            {
                Ok(()) => return Ok(true),
                Err(_) => continue,
            }
        }
    }

    /// Forgets `key`.
    pub(crate) fn replay_forget(&self, key: &str) -> Result<(), StoreError> {
        self.seen.remove(key)?;
        Ok(())
    }

    /// Drops expired ids; returns how many.
    pub(crate) fn replay_purge(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut removed = 0;
        for item in self.seen.iter() {
            let (key, value) = item?;
            if u64_key(&value) <= now {
                self.seen.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The last run the schedule `name` handled, unix milliseconds.
    pub(crate) fn schedule_mark(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let Some(bytes) = self.marks.get(name.as_bytes())? else {
            return Ok(None);
        };
        let ms = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            key: format!("{MARKS}/{name}"),
            source,
        })?;
        Ok(Some(ms))
    }

    /// Records the last run the schedule `name` handled, and waits until it
    /// is on disk.
    pub(crate) async fn save_schedule_mark(
        &self,
        name: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&at_ms).unwrap_or_default();
        self.marks.insert(name.as_bytes(), value)?;
        self.flush().await
    }

    /// Ok when new work would be taken: the filesystem is above the reserve
    /// and a write goes through.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        self.check_space()?;
        self.health.insert("probe", &now_ms().to_be_bytes())?;
        Ok(())
    }
}
