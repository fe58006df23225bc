//! Wasm plugins: sandboxed components that decide (condition), build
//! (transform), encrypt (encryption) or verify (verifier). The only module
//! that knows wasmtime; the rest of the host calls [`Plugins`] by name.
//!
//! Every `*.wasm` in the plugins folder is loaded under its file stem, with
//! `NAME.toml` beside it for limits and config (`manifest`). The folder is
//! watched (`Plugins::rescan`): a new or replaced file is compiled and swapped
//! in, a removed one is dropped, a broken one is reported and the previous
//! version keeps serving. Calls in flight hold their own `Arc` of the version
//! they started on.

mod admission;
mod bindings;
pub mod manifest;
mod runtime;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::event::Event;
use crate::metrics::Metrics;
use admission::{Admission, Outcome};
use bindings::types;
pub use manifest::{Isolation, Limits, Manifest};
use runtime::{Bound, Loaded, Runtime};

/// What a plugin does, read from the interface it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Exports `wasmhook:plugin/condition`.
    Condition,
    /// Exports `wasmhook:plugin/transform`.
    Transform,
    /// Exports `wasmhook:plugin/encryption`.
    Encryption,
    /// Exports `wasmhook:plugin/verifier`.
    Verifier,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Condition => "condition",
            Role::Transform => "transform",
            Role::Encryption => "encryption",
            Role::Verifier => "verifier",
        })
    }
}

/// How a call was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// The fuel budget ran out (a loop, or simply too much work).
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The wall-clock deadline passed.
    Timeout {
        /// The deadline.
        timeout: Duration,
    },
    /// Memory growth past the cap.
    Memory {
        /// The cap, bytes.
        limit: usize,
    },
    /// Recursion too deep.
    StackOverflow,
    /// `unreachable` (a Rust panic ends here).
    Unreachable,
    /// Any other trap.
    Other(String),
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrapKind::OutOfFuel { fuel } => write!(f, "ran out of fuel ({fuel} units)"),
            TrapKind::Timeout { timeout } => {
                write!(f, "exceeded its timeout of {} ms", timeout.as_millis())
            }
            TrapKind::Memory { limit } => {
                write!(f, "exceeded its memory limit of {} MiB", limit >> 20)
            }
            TrapKind::StackOverflow => f.write_str("overflowed its stack"),
            TrapKind::Unreachable => f.write_str("trapped: unreachable code (a panic?)"),
            TrapKind::Other(text) => write!(f, "trapped: {text}"),
        }
    }
}

/// A plugin call or load that failed. `Display` is the DLQ reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// No plugin with that name is loaded.
    #[error("plugin {0:?} is not loaded")]
    NotLoaded(String),
    /// The plugin has another role.
    #[error("plugin {name:?} is a {found} plugin, not a {expected} plugin")]
    WrongRole {
        /// Plugin name.
        name: String,
        /// Role the caller needs.
        expected: Role,
        /// Role it has.
        found: Role,
    },
    /// The file is not a usable component.
    #[error("plugin file {}: {message}", file.display())]
    Load {
        /// The `.wasm` file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The call was stopped by the sandbox.
    #[error("plugin {plugin:?} {kind} during {during}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Which call.
        during: String,
        /// How it was stopped.
        kind: TrapKind,
    },
    /// The plugin returned its `error` variant.
    #[error("plugin {plugin:?} returned {kind} error: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// `invalid-input`, `config` or `failed`.
        kind: &'static str,
        /// Its message.
        message: String,
    },
    /// The plugin returned something the host will not use.
    #[error("plugin {plugin:?} returned {message}")]
    Output {
        /// Plugin name.
        plugin: String,
        /// What was wrong with it.
        message: String,
    },
    /// The plugin failed too often in a row and is not called for a while
    /// (see `admission`).
    #[error(
        "plugin {plugin:?} is suspended for another {} ms after {failures} failed calls in a row (last: {last})",
        remaining.as_millis()
    )]
    Suspended {
        /// Plugin name.
        plugin: String,
        /// Until the next probe call.
        remaining: Duration,
        /// Failed calls in a row.
        failures: u32,
        /// The last failure.
        last: String,
    },
    /// wasmtime itself could not be set up.
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// What a transform returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// Request body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Content type, if the plugin set one.
    pub content_type: Option<String>,
}

/// An incoming request, for verifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers as received.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// A verifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The signature holds.
    Ok,
    /// It does not, with the plugin's reason.
    Rejected(String),
}

/// One loaded plugin, for `plugin list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// File stem.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The `.wasm` file.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Budgets.
    pub limits: Limits,
    /// Instance reuse.
    pub isolation: Isolation,
}

/// Runs `work`, which may call plugins, from async code. A plugin call can
/// take its whole budget (a timeout of a second, by default); on a
/// multi-threaded runtime the worker hands its other tasks to another thread
/// meanwhile (`block_in_place`), so ingest, sources and deliveries that need
/// no plugin keep running. A current-thread runtime (tests, the CLI) has
/// nobody to hand them to and runs `work` in place. See also
/// [`Plugins::run`], which skips the hand-over for plugins proven quick.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Modification stamp of a plugin's two files.
type Stamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

/// The loaded plugins, shared by every stage; cheap to clone.
#[derive(Clone)]
pub struct Plugins {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    loaded: Arc<RwLock<HashMap<String, Arc<Loaded>>>>,
    /// What each file looked like when last loaded (or tried).
    stamps: Arc<Mutex<HashMap<String, Stamp>>>,
    metrics: Metrics,
    /// Versions whose slot the work holding this handle has taken ahead
    /// ([`Plugins::reserve`]): its calls of them take no other.
    reserved: Arc<[Arc<Loaded>]>,
}

/// Slots of the plugins a piece of work will call, taken by async code
/// before the work goes to a thread that may block (see
/// [`Plugins::reserve`]); given back on drop.
pub struct Reserved {
    plugins: Plugins,
    _slots: Vec<admission::Slot>,
}

impl Reserved {
    /// The plugins, calling the reserved ones in the slots held here.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }
}

/// What a rescan changed, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A plugin was loaded or replaced.
    Loaded(String, Role),
    /// A plugin's file disappeared.
    Removed(String),
    /// A file could not be loaded; the previous version (if any) stays.
    Failed(String, PluginError),
}

impl Plugins {
    /// Loads every plugin in `dir` (a missing folder is an empty one).
    /// Compiled artifacts are cached in `cache_dir`. Files that fail to load
    /// are returned with their errors, not fatal: a config that references
    /// one fails its own check.
    pub fn load(
        dir: &Path,
        cache_dir: Option<PathBuf>,
    ) -> Result<(Plugins, Vec<Change>), PluginError> {
        Self::load_with_metrics(dir, cache_dir, Metrics::default())
    }

    /// Like [`Plugins::load`], counting calls in `metrics`.
    pub fn load_with_metrics(
        dir: &Path,
        cache_dir: Option<PathBuf>,
        metrics: Metrics,
    ) -> Result<(Plugins, Vec<Change>), PluginError> {
        let plugins = Plugins {
            runtime: Runtime::new(cache_dir)?,
            dir: dir.to_path_buf(),
            loaded: Arc::default(),
            stamps: Arc::default(),
            metrics,
            reserved: Arc::new([]),
        };
        let changes = plugins.rescan();
        Ok((plugins, changes))
    }

    /// The error a call of `name` would fail with now because the plugin is
    /// suspended, without calling it: lets work that would only call a
    /// suspended plugin skip its storage round trips. `None` if the call
    /// should be made: the plugin is not suspended, or this work is let
    /// through to carry the next probe (see `admission`), or it is not
    /// loaded (the call reports that). A refusal counts as a suspended call.
    pub fn refusal(&self, name: &str) -> Option<PluginError> {
        self.counted_refusal(name, |suspension, now| suspension.refusal(name, now))
    }

    /// Like [`Plugins::refusal`], but never lets work through: for a
    /// delivery's attempt, which is on its way to the call, where the call
    /// itself becomes the probe when one is due. A refusal counts as a
    /// suspended call.
    pub fn suspended(&self, name: &str) -> Option<PluginError> {
        self.counted_refusal(name, |suspension, now| suspension.refused_now(name, now))
    }

    /// What `ask` says of the loaded `name` now, a refusal counted as a
    /// suspended call.
    fn counted_refusal(
        &self,
        name: &str,
        ask: impl FnOnce(&admission::Suspension, Instant) -> Option<PluginError>,
    ) -> Option<PluginError> {
        let plugin = self.read().get(name).cloned()?;
        let refused = ask(&plugin.suspension, Instant::now())?;
        if let Some(counters) = &plugin.counters {
            counters.suspended();
        }
        Some(refused)
    }

    /// Waits, holding no thread, for a slot of each plugin in `using`
    /// (bounded by its `max_concurrency`), so that work about to run
    /// through [`Plugins::run`] does not wait for one on a thread that may
    /// block: when a plugin is busy, every delivery waiting for it would
    /// hold a thread, and the async runtime would start one to replace
    /// each. Slots are taken in name order, so two reservations never wait
    /// on each other. A plugin not loaded is skipped (its call reports it).
    pub async fn reserve<'a>(&self, using: impl IntoIterator<Item = &'a str>) -> Reserved {
        let mut names: Vec<&str> = using.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let mut slots = Vec::with_capacity(names.len());
        let mut reserved = Vec::with_capacity(names.len());
        for name in names {
            let Some(plugin) = self.read().get(name).cloned() else {
                continue;
            };
            slots.push(plugin.slots.reserve().await);
            reserved.push(plugin);
        }
        Reserved {
            plugins: Plugins {
                reserved: reserved.into(),
                ..self.clone()
            },
            _slots: slots,
        }
    }

    /// Runs `work`, which calls (at most) the plugins named in `using`, from
    /// async code: in place when every one of them has proven quick (see
    /// `admission::Pace`), else through [`blocking`].
    pub fn run<'a, R>(
        &self,
        using: impl IntoIterator<Item = &'a str>,
        work: impl FnOnce() -> R,
    ) -> R {
        let quick = {
            let loaded = self.read();
            using
                .into_iter()
                .all(|name| loaded.get(name).is_some_and(|p| p.pace.proven_quick()))
        };
        if quick {
            work()
        } else {
            blocking(work)
        }
    }

    /// Looks the plugin up once, runs `call` on it, and counts the call by
    /// result in the plugin's own counters.
    fn measured<T: Send>(
        &self,
        name: &str,
        role: Role,
        call: impl FnOnce(&Loaded) -> Result<T, PluginError> + Send,
    ) -> Result<T, PluginError> {
        let plugin = match self.get(name, role) {
            Ok(plugin) => plugin,
            Err(e) => {
                self.metrics.plugin_call(name, "not_loaded", Duration::ZERO);
                return Err(e);
            }
        };
        // Suspension is checked once a slot is free: a plugin suspended
        // while this call waited fails it at once. The call's time counts
        // from here, and two clock reads serve every check (a read is a
        // few percent of a warm call).
        let reserved = self.reserved.iter().any(|held| Arc::ptr_eq(held, &plugin));
        let _slot = if reserved {
            None
        } else {
            Some(plugin.slots.take())
        };
        let started = Instant::now();
        let probe = match plugin.suspension.admit(name, started) {
            Admission::Run { probe } => probe,
            Admission::Refused(e) => {
                if let Some(counters) = &plugin.counters {
                    counters.suspended();
                }
                return Err(e);
            }
        };
        let result = if plugin.pace.proven_quick() {
            call(&plugin)
        } else {
            admission::aside(|| call(&plugin))
        };
        let ended = Instant::now();
        if plugin.pace.took(ended - started) {
            info!(plugin = %name, ms = (ended - started).as_millis() as u64, "plugin call was slow (by its fuel or its time): this version's calls now run off the async workers");
        }
        let threshold = plugin.manifest.limits.suspend_after;
        match plugin.suspension.record(&result, probe, threshold, ended) {
            Outcome::Unchanged => {}
            Outcome::Suspended(backoff) => {
                warn!(plugin = %name, seconds = backoff.as_secs(), failures = threshold, error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(), "plugin suspended after failing calls in a row; its calls fail until a probe call succeeds");
            }
            Outcome::Resumed => {
                info!(plugin = %name, "plugin serves again: a probe call succeeded")
            }
        }
        if let Some(counters) = &plugin.counters {
            let trapped = matches!(result, Err(PluginError::Trap { .. }));
            counters.record(result.is_ok(), trapped, ended - started);
        }
        result
    }

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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded plugins, by name.
    pub fn list(&self) -> Vec<PluginInfo> {
        let mut list: Vec<PluginInfo> = self
            .read()
            .values()
            .map(|p| PluginInfo {
                name: p.name.to_string(),
                role: p.role,
                file: p.file.clone(),
                size: p.size,
                limits: p.manifest.limits.clone(),
                isolation: p.manifest.isolation,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The role of a loaded plugin.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.read().get(name).map(|p| p.role)
    }

    /// Checks that `name` is loaded with `role` (config validation).
    pub fn expect(&self, name: &str, role: Role) -> Result<(), PluginError> {
        self.get(name, role).map(|_| ())
    }

    fn get(&self, name: &str, expected: Role) -> Result<Arc<Loaded>, PluginError> {
        let plugin = self
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotLoaded(name.to_string()))?;
        if plugin.role != expected {
            return Err(PluginError::WrongRole {
                name: name.to_string(),
                expected,
                found: plugin.role,
            });
        }
        Ok(plugin)
    }

    /// Runs a condition plugin.
    pub fn condition(&self, name: &str, event: &Event) -> Result<bool, PluginError> {
        self.measured(name, Role::Condition, |plugin| {
            let input = wit_event(event);
            let answer = plugin.call(&self.runtime, "evaluate", |store, bound| match bound {
                Bound::Condition(b) => b.wasmhook_plugin_condition().call_evaluate(store, &input),
                _ => unreachable!("role checked by get"),
            })?;
            answer.map_err(|e| guest_error(&plugin.name, e))
        })
    }

    /// Runs a transform plugin; `body` is what the webhook's template rendered.
    pub fn transform(
        &self,
        name: &str,
        event: &Event,
        body: Option<&[u8]>,
    ) -> Result<Transformed, PluginError> {
        self.measured(name, Role::Transform, |plugin| {
            let input = wit_event(event);
            let body = body.map(<[u8]>::to_vec);
            let answer = plugin.call(&self.runtime, "transform", |store, bound| match bound {
                Bound::Transform(b) => {
                    b.wasmhook_plugin_transform()
                        .call_transform(store, &input, body.as_deref())
                }
                _ => unreachable!("role checked by get"),
            })?;
            let payload = answer.map_err(|e| guest_error(&plugin.name, e))?;
            let limit = plugin.manifest.limits.max_output_bytes;
            if payload.body.len() > limit {
                return Err(PluginError::Output {
                    plugin: plugin.name.to_string(),
                    message: format!(
                        "a body of {} bytes, over its limit of {limit}",
                        payload.body.len()
                    ),
                });
            }
            Ok(Transformed {
                body: payload.body,
                headers: payload
                    .headers
                    .into_iter()
                    .map(|h| (h.name, h.value))
                    .collect(),
                content_type: payload.content_type,
            })
        })
    }

    /// Runs an encryption plugin's `encrypt`.
    pub fn encrypt(
        &self,
        name: &str,
        plaintext: &[u8],
        key: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        self.crypt(name, plaintext, key, true)
    }

    /// Runs an encryption plugin's `decrypt`.
    pub fn decrypt(
        &self,
        name: &str,
        ciphertext: &[u8],
        key: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        self.crypt(name, ciphertext, key, false)
    }

    fn crypt(
        &self,
        name: &str,
        input: &[u8],
        key: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>, PluginError> {
        self.measured(name, Role::Encryption, |plugin| {
            let what = if encrypt { "encrypt" } else { "decrypt" };
            let answer = plugin.call(&self.runtime, what, |store, bound| match bound {
                Bound::Encryption(b) if encrypt => b
                    .wasmhook_plugin_encryption()
                    .call_encrypt(store, input, key),
                Bound::Encryption(b) => b
                    .wasmhook_plugin_encryption()
                    .call_decrypt(store, input, key),
                _ => unreachable!("role checked by get"),
            })?;
            let output = answer.map_err(|e| guest_error(&plugin.name, e))?;
            let limit = plugin.manifest.limits.max_output_bytes;
            if output.len() > limit {
                return Err(PluginError::Output {
                    plugin: plugin.name.to_string(),
                    message: format!("{} bytes, over its limit of {limit}", output.len()),
                });
            }
            Ok(output)
        })
    }

    /// Runs a verifier plugin; `now` is Unix seconds.
    pub fn verify(
        &self,
        name: &str,
        request: &IncomingRequest,
        secret: &[u8],
        now: u64,
    ) -> Result<Verdict, PluginError> {
        self.measured(name, Role::Verifier, |plugin| {
            let input = types::Request {
                method: request.method.clone(),
                path: request.path.clone(),
                headers: request
                    .headers
                    .iter()
                    .map(|(name, value)| types::Header {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                body: request.body.clone(),
            };
            let answer = plugin.call(&self.runtime, "verify", |store, bound| match bound {
                Bound::Verifier(b) => b
                    .wasmhook_plugin_verifier()
                    .call_verify(store, &input, secret, now),
                _ => unreachable!("role checked by get"),
            })?;
            match answer.map_err(|e| guest_error(&plugin.name, e))? {
                types::Verdict::Ok => Ok(Verdict::Ok),
                types::Verdict::Rejected(reason) => Ok(Verdict::Rejected(reason)),
            }
        })
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn wit_event(event: &Event) -> types::Event {
    types::Event {
        meta: types::EventMeta {
            id: event.id.clone(),
            entity: event.entity.clone(),
            operation: event.operation.as_str().to_string(),
            entity_id: event.entity_id.clone(),
            timestamp: event.timestamp.clone(),
            source: event.source.clone(),
        },
        // `to_string` would go through `fmt::Write`, a call per token.
        data: json_text(&event.data),
        old: event.old.as_ref().map(json_text),
    }
}

/// A row as JSON text; a `Value` always serialises.
fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn guest_error(plugin: &str, error: types::Error) -> PluginError {
    let (kind, message) = match error {
        types::Error::InvalidInput(m) => ("invalid-input", m),
        types::Error::Config(m) => ("config", m),
        types::Error::Failed(m) => ("failed", m),
    };
    PluginError::Guest {
        plugin: plugin.to_string(),
        kind,
        message,
    }
}
