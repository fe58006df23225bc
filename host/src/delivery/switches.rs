//! Webhooks switched off by an operator (`wasmhook webhook disable`). Their
//! deliveries are not attempted and not lost: they wait, parked, until the
//! webhook is enabled again. The switch survives restarts (the store).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::store::{Store, StoreError};

/// Which webhook: observer name and position.
pub type WebhookId = (String, usize);

/// One switched-off webhook, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disabled {
    /// Observer name.
    pub observer: String,
    /// Position of the webhook in the observer.
    pub webhook: usize,
    /// Deliveries waiting for it in this process.
    pub parked: usize,
}

/// The switches, shared by the dispatcher and the admin API.
#[derive(Clone)]
pub struct Switches {
    store: Store,
    disabled: Arc<RwLock<HashSet<WebhookId>>>,
    parked: Arc<Mutex<HashMap<WebhookId, Vec<u64>>>>,
}

impl Switches {
    /// Loads the switched-off webhooks.
    pub async fn open(store: &Store) -> Result<Switches, StoreError> {
        let disabled: HashSet<WebhookId> = store.disabled_webhooks().await?.into_iter().collect();
        Ok(Switches {
            store: store.clone(),
            disabled: Arc::new(RwLock::new(disabled)),
            parked: Arc::default(),
        })
    }

    /// True when the webhook is switched off.
    pub fn is_disabled(&self, observer: &str, webhook: usize) -> bool {
        let disabled = self.disabled.read().unwrap_or_else(|p| p.into_inner());
        !disabled.is_empty() && disabled.contains(&(observer.to_string(), webhook))
    }

    /// Keeps a delivery until its webhook is enabled; false (and nothing
    /// kept) when the webhook is on. Checked under the same lock `enable`
    /// takes, so a delivery cannot be parked just after its release.
    pub fn park(&self, observer: &str, webhook: usize, key: u64) -> bool {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_disabled(observer, webhook) {
            return false;
        }
        parked
            .entry((observer.to_string(), webhook))
            .or_default()
            .push(key);
        true
    }

    /// Switches a webhook off.
    pub async fn disable(&self, observer: &str, webhook: usize) -> Result<(), StoreError> {
        self.store.switch_webhook(observer, webhook, true).await?;
        self.disabled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((observer.to_string(), webhook));
        Ok(())
    }

    /// Switches a webhook on; returns the parked deliveries to schedule.
    pub async fn enable(&self, observer: &str, webhook: usize) -> Result<Vec<u64>, StoreError> {
        self.store.switch_webhook(observer, webhook, false).await?;
        let id = (observer.to_string(), webhook);
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        self.disabled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        Ok(parked.remove(&id).unwrap_or_default())
    }

    /// The switched-off webhooks.
    pub fn list(&self) -> Vec<Disabled> {
        let disabled = self.disabled.read().unwrap_or_else(|p| p.into_inner());
        let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Disabled> = disabled
            .iter()
            .map(|(observer, webhook)| Disabled {
                observer: observer.clone(),
                webhook: *webhook,
                parked: parked
                    .get(&(observer.clone(), *webhook))
                    .map_or(0, Vec::len),
            })
            .collect();
        out.sort_by(|a, b| (&a.observer, a.webhook).cmp(&(&b.observer, b.webhook)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn switches_park_and_release_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open_in(dir.path()).await;
        let switches = Switches::open(&store).await.unwrap();
        switches.disable("orders", 1).await.unwrap();
        assert!(switches.is_disabled("orders", 1));
        assert!(!switches.is_disabled("orders", 0));
        assert!(switches.park("orders", 1, 7));
        assert!(switches.park("orders", 1, 9));
        assert!(
            !switches.park("orders", 0, 8),
            "an enabled webhook parks nothing"
        );
        assert_eq!(
            switches.list(),
            vec![Disabled {
                observer: "orders".into(),
                webhook: 1,
                parked: 2
            }]
        );
        let reopened = Switches::open(&store).await.unwrap();
        assert!(reopened.is_disabled("orders", 1));
        assert_eq!(switches.enable("orders", 1).await.unwrap(), vec![7, 9]);
        assert!(!switches.is_disabled("orders", 1));
        assert!(Switches::open(&store).await.unwrap().list().is_empty());
    }
}
