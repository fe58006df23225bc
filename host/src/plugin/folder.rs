//! The plugins folder: what is in it, loaded (or reloaded) when a file
//! changes, dropped when one goes, and a task that keeps looking (hot
//! reload).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};

use super::{Change, Manifest, PluginError, Plugins};

/// Modification stamp of a plugin's two files.
pub(super) type Stamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

impl Plugins {
    /// The plugins folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compares the folder with what is loaded and applies the difference.
    /// Blocking (it compiles); run it off the async workers.
    pub fn rescan(&self) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut present = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                    continue;
                }
                let Some(name) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                let stamp = (file_stamp(&path), file_stamp(&path.with_extension("toml")));
                present.insert(name, (path, stamp));
            }
        }
        let mut stamps = match self.stamps.lock() {
            Ok(stamps) => stamps,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut names: Vec<&String> = present.keys().collect();
        names.sort();
        for name in names {
            let (path, stamp) = &present[name];
            if stamps.get(name) == Some(stamp) {
                continue;
            }
            stamps.insert(name.clone(), *stamp);
            let loaded = Manifest::load(&path.with_extension("toml"))
                .map_err(|message| PluginError::Load {
                    file: path.with_extension("toml"),
                    message,
                })
                .and_then(|manifest| self.runtime.load(name, path, manifest));
            match loaded {
                Ok(mut plugin) => {
                    plugin.counters = Some(self.metrics.plugin(name));
                    let role = plugin.role;
                    self.write().insert(name.clone(), Arc::new(plugin));
                    info!(plugin = %name, %role, file = %path.display(), "plugin loaded");
                    changes.push(Change::Loaded(name.clone(), role));
                }
                Err(e) => {
                    let kept = self.read().contains_key(name);
                    error!(plugin = %name, error = %e, kept_previous = kept, "plugin failed to load");
                    changes.push(Change::Failed(name.clone(), e));
                }
            }
        }
        let gone: Vec<String> = stamps
            .keys()
            .filter(|n| !present.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            stamps.remove(&name);
            if self.write().remove(&name).is_some() {
                info!(plugin = %name, "plugin removed");
                changes.push(Change::Removed(name));
            }
        }
        changes
    }

    /// Rescans every `interval` until `shutdown` turns true.
    pub fn watch(
        &self,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let plugins = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    _ = tokio::time::sleep(interval) => {}
                }
                let scanner = plugins.clone();
                if tokio::task::spawn_blocking(move || scanner.rescan())
                    .await
                    .is_err()
                {
                    error!("plugin rescan panicked");
                }
            }
        })
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
