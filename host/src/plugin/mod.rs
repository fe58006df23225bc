//! Wasm plugins: sandboxed components that decide (condition), build
//! (transform), encrypt (encryption) or verify (verifier). The only module
//! that knows wasmtime; the rest of the host calls [`Plugins`] by name.
//!
//! Every `*.wasm` in the plugins folder is loaded under its file stem, with
//! `NAME.toml` beside it for limits and config (`manifest`). The folder is
//! watched (`Plugins::rescan`): a new or replaced file is compiled and swapped
//! in, a removed one is dropped, a broken one is reported and the previous
//! version keeps serving (`folder`). Calls in flight hold their own `Arc` of
//! the version they started on.
//!
//! Here: the [`Plugins`] handle and what callers see of it. Beside it:
//! `folder` (loading and hot reload), `calls` (the typed call of each role),
//! `admission` (slots, suspension, pace), `runtime` (wasmtime).

mod admission;
mod bindings;
mod calls;
mod folder;
pub mod manifest;
mod runtime;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use folder::Stamp;
pub use manifest::{Isolation, Limits, Manifest};
use runtime::{Loaded, Runtime};

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
}
