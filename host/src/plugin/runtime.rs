//! The wasmtime side: one engine and linker for every plugin, compilation
//! with an on-disk cache, and calls under a fuel budget, an epoch deadline
//! and a memory cap.
//!
//! A call runs on a warm instance when one is free (about a microsecond) or a
//! fresh one (tens of microseconds). An instance that trapped is dropped: its
//! memory may be inconsistent, so it never serves another call.
//!
//! Every plugin links against WASI 0.2, `wasi:http` included, with nothing
//! granted: components built with their toolchain's defaults (componentize-py,
//! componentize-js) load, and what they may not do fails when they try it.
//! Waiting (`wasi:io/poll`) and sending a request (`wasi:http/outgoing-handler`)
//! trap with the interface named; a WASI import wasmhook does not link at all
//! traps with its name when called.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{condition, encryption, event_context, host, transform, types, verifier};
use super::manifest::{Isolation, Limits, Manifest};
use super::{PluginError, Role, TrapKind};

/// How often the epoch advances; timeouts are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Warm instances kept per plugin.
const POOL_SIZE: usize = 16;

/// Plugin instances alive at once (warm pools and calls in flight).
const POOL_INSTANCES: u32 = 1000;

/// Table bytes reset with `memset` rather than `madvise` when a slot is
/// reused.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// Linear memory kept mapped when a slot is reused, where the kernel can
/// tell which pages a call touched (`PAGEMAP_SCAN`, Linux 6.7): only those
/// are reset, with `memset`, and the next instance takes no page faults
/// for them. A Rust guest's stack sits at the top of its first MiB with its
/// data and first heap pages above it, so 2 MiB covers what a small plugin
/// touches; pages it never touched are not resident and cost nothing.
/// Without the scan the whole prefix would be reset every time, so then
/// linear memory is left to `madvise` (keeping even 64 KiB cost more in
/// `memset` than the page faults it saved).
const MEMORY_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Instantiation (which runs the component's start code) gets this many
/// times a call's fuel.
const INSTANTIATE_FUEL_FACTOR: u64 = 20;

/// Per-store state: what the host imports and WASI see.
pub(crate) struct State {
    plugin: Arc<str>,
    config_json: Arc<str>,
    /// The current call's event metadata (JSON), for `event-context`.
    metadata: String,
    limits: StoreLimits,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: RefuseRequests,
    table: ResourceTable,
}

impl State {
    /// Sets what `event-context.metadata` answers during the next call.
    pub(crate) fn set_metadata(&mut self, metadata: String) {
        self.metadata = metadata;
    }
}

impl event_context::Host for State {
    fn metadata(&mut self) -> String {
        self.metadata.clone()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// What `wasi:http` sends with: nothing. `wasi:http/outgoing-handler.handle`
/// traps before it would get here (`refuse_requests`); should a request
/// reach this hook all the same, its response is the same refusal.
pub(crate) struct RefuseRequests;

/// The future of a request's connection, as wasmtime-wasi-http hands it over.
type Io = Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>;
/// A response and its connection's future.
type Responded = wasmtime_wasi_http::Result<(http::Response<wasmtime_wasi_http::WasiBody>, Io)>;

impl WasiHttpHooks for RefuseRequests {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _io: Io,
    ) -> Box<dyn std::future::Future<Output = Responded> + Send> {
        Box::new(std::future::ready(Err(
            wasmtime_wasi_http::Error::InternalError(Some(REQUEST_REFUSED.to_string())),
        )))
    }
}

impl types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; (len as usize).min(65_536)];
        if let Err(e) = getrandom::fill(&mut bytes) {
            // Never hand out zeros a plugin could mistake for a nonce: an
            // empty answer is something the guest can detect and refuse.
            tracing::error!(plugin = &*self.plugin, error = %e, "no OS randomness available");
            bytes.clear();
        }
        bytes
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }
}

/// The engine, the linker and the compile cache.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    engine_hash: u64,
}

impl Runtime {
    pub(crate) fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Runtime>, PluginError> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // Instances come from a pool of pre-reserved slots: a fresh instance
        // (and every warm one) skips the mmap/munmap and first-touch page
        // faults of its linear memory, which were most of the cost of
        // `isolation = "fresh"`. The reservation is virtual address space.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .max_memory_size(super::manifest::MAX_MEMORY_BYTES)
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
        let mut scanned = pool.clone();
        scanned
            .pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES);
        let with_pool = |pool: PoolingAllocationConfig| {
            let mut pooled = config.clone();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            Engine::new(&pooled)
        };
        let engine = with_pool(scanned)
            .or_else(|e| {
                debug!(error = %format!("{e:#}"), "no PAGEMAP_SCAN: instance memory is reset with madvise");
                with_pool(pool)
            })
            .or_else(|e| {
                warn!(error = %format!("{e:#}"), "cannot reserve the plugin instance pool; allocating instances on demand");
                Engine::new(&config)
            })
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
            .and_then(|()| refuse_waits(&mut linker))
            .and_then(|()| refuse_requests(&mut linker))
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .and_then(|()| types::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s))
            .and_then(|()| {
                event_context::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            })
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasmhook-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        if let Some(dir) = &cache_dir {
            if let Err(e) = std::fs::create_dir_all(dir) {
                warn!(dir = %dir.display(), error = %e, "plugin cache directory unusable; compiling without cache");
            }
        }
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache_dir,
            engine_hash: hasher.finish(),
        }))
    }

    /// Compiles (or loads from the cache) and prepares a component.
    pub(crate) fn load(
        &self,
        name: &str,
        file: &Path,
        manifest: Manifest,
    ) -> Result<Loaded, PluginError> {
        let bytes = std::fs::read(file).map_err(|e| PluginError::Load {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let load_error = |message: String| PluginError::Load {
            file: file.to_path_buf(),
            message,
        };
        let component = self.compile(&bytes).map_err(load_error)?;
        let role = role_of(&self.engine, &component).map_err(load_error)?;
        let pre = self.link(name, &component).map_err(load_error)?;
        let pre = match role {
            Role::Condition => condition::ConditionPluginPre::new(pre).map(RolePre::Condition),
            Role::Transform => transform::TransformPluginPre::new(pre).map(RolePre::Transform),
            Role::Encryption => encryption::EncryptionPluginPre::new(pre).map(RolePre::Encryption),
            Role::Verifier => verifier::VerifierPluginPre::new(pre).map(RolePre::Verifier),
        }
        .map_err(|e| load_error(format!("does not match the {role} world: {e:#}")))?;
        let slots = super::admission::Slots::new(manifest.limits.max_concurrency);
        Ok(Loaded {
            name: Arc::from(name),
            role,
            file: file.to_path_buf(),
            size: bytes.len() as u64,
            config_json: Arc::from(manifest.config_json.as_str()),
            manifest,
            counters: None,
            suspension: Default::default(),
            pace: Default::default(),
            slots,
            pre,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Links a component. Should it import a WASI interface wasmhook does
    /// not link at all, say from a newer proposal, that interface is linked
    /// for it alone as functions that trap with their names when called: a
    /// component built with a toolchain's defaults loads, and a call to what
    /// is not granted fails. Any other import wasmhook does not offer fails
    /// the load.
    ///
    /// Only the interfaces wasmtime names as missing are stubbed, one at a
    /// time and under their exact names. (`define_unknown_imports_as_traps`
    /// would also define an exact-named stub for every WASI import whose
    /// version differs from the one linked, and exact names win over the
    /// semver match: a 0.2.10 import of a clock would trap instead of
    /// reading the 0.2.12 clock.)
    fn link(&self, name: &str, component: &Component) -> Result<InstancePre<State>, String> {
        let imports: Vec<(String, ComponentItem)> = component
            .component_type()
            .imports(&self.engine)
            .map(|(import, item)| (import.to_string(), item.ty))
            .collect();
        let mut stubbed: Vec<&str> = Vec::new();
        let mut linker: Option<Linker<State>> = None;
        loop {
            let error = match linker
                .as_ref()
                .unwrap_or(&self.linker)
                .instantiate_pre(component)
            {
                Ok(pre) => {
                    if !stubbed.is_empty() {
                        warn!(plugin = name, interfaces = %stubbed.join(", "), "plugin imports WASI that wasmhook does not link; calling it traps");
                    }
                    return Ok(pre);
                }
                Err(e) => format!("{e:#}"),
            };
            let foreign: Vec<&str> = imports
                .iter()
                .map(|(import, _)| import.as_str())
                .filter(|import| !import.starts_with("wasi:") && !offered(import))
                .collect();
            if !foreign.is_empty() {
                return Err(format!(
                    "cannot be linked: {error} (it imports {}, which this wasmhook does not offer)",
                    foreign.join(", ")
                ));
            }
            // The WASI interface wasmtime reports as missing, if it is one
            // not stubbed yet; anything else (a type that does not match, an
            // interface linked but lacking a function) fails the load.
            let missing = imports.iter().find(|(import, _)| {
                import.starts_with("wasi:")
                    && !stubbed.contains(&import.as_str())
                    && error.contains(&format!(
                        "`{import}`, but a matching implementation was not found"
                    ))
            });
            let Some((import, ComponentItem::ComponentInstance(interface))) = missing else {
                return Err(format!("cannot be linked: {error}"));
            };
            let scratch = linker.get_or_insert_with(|| self.linker.clone());
            stub_interface(scratch, &self.engine, import, interface).map_err(|e| {
                format!("cannot be linked: {error} (and stubbing {import} failed: {e:#})")
            })?;
            stubbed.push(import);
        }
    }

    fn compile(&self, bytes: &[u8]) -> Result<Component, String> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(|e| describe_compile_error(&e));
        };
        let key = format!(
            "{}-{:016x}.cwasm",
            hex::encode(Sha256::digest(bytes)),
            self.engine_hash
        );
        let cached = dir.join(key);
        if cached.exists() {
            // SAFETY: the file is one this runtime wrote (keyed by the source's
            // hash and the engine's compatibility hash) into its own cache
            // directory; deserialize still checks the engine compatibility.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    warn!(file = %cached.display(), error = %e, "unusable cached plugin artifact; recompiling")
                }
            }
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| describe_compile_error(&e))?;
        match component.serialize() {
            Ok(artifact) => {
                let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
                if let Err(e) =
                    std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, &cached))
                {
                    warn!(file = %cached.display(), error = %e, "cannot write the plugin cache");
                }
            }
            Err(e) => warn!(error = %e, "cannot serialize a compiled plugin"),
        }
        Ok(component)
    }

    fn new_store(&self, plugin: &Loaded) -> Store<State> {
        self.store_for(
            plugin.name.clone(),
            plugin.config_json.clone(),
            &plugin.manifest.limits,
        )
    }

    fn store_for(&self, plugin: Arc<str>, config_json: Arc<str>, limits: &Limits) -> Store<State> {
        let state = State {
            plugin,
            config_json,
            metadata: "{}".to_string(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .instances(64)
                .build(),
            // Nothing is granted: no preopened directories, environment,
            // arguments, network or inherited stdio.
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            http_hooks: RefuseRequests,
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store
    }
}

/// The `wasi:io` version wasmtime-wasi links (its `wit/deps/io.wit`); a
/// component importing any 0.2.x resolves to it.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// What a plugin that tries to wait is told.
const WAIT_REFUSED: &str =
    "waiting (wasi:io/poll, e.g. a sleep) is not granted to plugins: a wait would outlast the call's timeout";

/// Replaces WASI's two blocking waits with a trap. A guest blocked in a
/// host call spends no fuel and meets no epoch check, so a sleep would
/// hold its thread for as long as it asked, whatever the plugin's timeout
/// (measured: a 5 s sleep under a 200 ms timeout took 5 s, then failed).
/// Nothing a plugin is granted can become ready by waiting anyway: it has
/// no files, sockets or stdin.
fn refuse_waits(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    for name in ["poll", "[method]pollable.block"] {
        poll.func_new(name, |_, _, _, _| Err(wasmtime::Error::msg(WAIT_REFUSED)))?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:http` version wasmtime-wasi-http links (its `wit/deps/http.wit`);
/// a component importing any 0.2.x resolves to it.
const WASI_HTTP_OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// What a plugin that sends a request is told.
pub(crate) const REQUEST_REFUSED: &str =
    "sending a request (wasi:http/outgoing-handler, e.g. fetch) is not granted to plugins: \
     wasmhook sends the webhook's request itself, built from what a transform returns";

/// Replaces `wasi:http/outgoing-handler.handle` with a trap, so that a
/// request fails where it is made, with the interface named. Refused later,
/// in the response's future, the guest would learn of it only by waiting
/// for that future, and waiting traps with its own message (`refuse_waits`).
/// The rest of `wasi:http/types` stays: building a request grants nothing.
fn refuse_requests(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(WASI_HTTP_OUTGOING_HANDLER)?
        .func_new("handle", |_, _, _, _| {
            Err(wasmtime::Error::msg(REQUEST_REFUSED))
        })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The stand-in for a resource of an interface wasmhook does not link.
struct NotLinked;

/// Links `import`, a WASI interface the linker does not have, as functions
/// that trap with their names and resources nothing can make.
fn stub_interface(
    linker: &mut Linker<State>,
    engine: &Engine,
    import: &str,
    interface: &wasmtime::component::types::ComponentInstance,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(import)?;
    for (export, item) in interface.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let message = format!(
                    "{import}#{export} is not granted to plugins: wasmhook does not link {import}"
                );
                instance.func_new(export, move |_, _, _, _| {
                    Err(wasmtime::Error::msg(message.clone()))
                })?;
            }
            ComponentItem::Resource(_) => {
                instance.resource(
                    export,
                    wasmtime::component::ResourceType::host::<NotLinked>(),
                    |_, _| Ok(()),
                )?;
            }
            // Type exports need no definition.
            _ => {}
        }
    }
    Ok(())
}

/// Whether `import` is one of the interfaces of `wit/` the linker offers
/// (any 0.1.x version).
fn offered(import: &str) -> bool {
    let Some(rest) = import.strip_prefix("wasmhook:plugin/") else {
        return false;
    };
    let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
    matches!(interface, "types" | "host" | "event-context") && version.starts_with("0.1.")
}

fn describe_compile_error(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    if text.contains("magic header")
        || text.contains("unknown binary version")
        || text.contains("bad magic")
    {
        format!("not a WebAssembly component ({text})")
    } else if text.contains("wasm module with a component parser") || text.contains("core module") {
        format!("is a core WebAssembly module, not a component: build for wasm32-wasip2 or componentize it ({text})")
    } else {
        format!("invalid component: {text}")
    }
}

/// The role a component plays, read from its exports.
fn role_of(engine: &Engine, component: &Component) -> Result<Role, String> {
    let mut found = Vec::new();
    let mut roles = Vec::new();
    for (name, _) in component.component_type().exports(engine) {
        found.push(name.to_string());
        let Some(rest) = name.strip_prefix("wasmhook:plugin/") else {
            continue;
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if !version.starts_with("0.1.") {
            return Err(format!(
                "exports {name}, a version this wasmhook does not support (it speaks wasmhook:plugin@0.1.x)"
            ));
        }
        match interface {
            "condition" => roles.push(Role::Condition),
            "transform" => roles.push(Role::Transform),
            "encryption" => roles.push(Role::Encryption),
            "verifier" => roles.push(Role::Verifier),
            _ => {}
        }
    }
    match roles.as_slice() {
        [role] => Ok(*role),
        [] => Err(format!(
            "exports none of wasmhook:plugin/{{condition,transform,encryption,verifier}}@0.1.0 (it exports: {}); \
             build it against one of the worlds in wit/",
            if found.is_empty() { "nothing".to_string() } else { found.join(", ") }
        )),
        _ => Err("exports more than one plugin role; a plugin has exactly one".into()),
    }
}

enum RolePre {
    Condition(condition::ConditionPluginPre<State>),
    Transform(transform::TransformPluginPre<State>),
    Encryption(encryption::EncryptionPluginPre<State>),
    Verifier(verifier::VerifierPluginPre<State>),
}

/// A live instance of one role's bindings.
pub(crate) enum Bound {
    Condition(condition::ConditionPlugin),
    Transform(transform::TransformPlugin),
    Encryption(encryption::EncryptionPlugin),
    Verifier(verifier::VerifierPlugin),
}

struct Warm {
    store: Store<State>,
    bound: Bound,
}

/// A compiled plugin, ready to call.
pub(crate) struct Loaded {
    pub(crate) name: Arc<str>,
    pub(crate) role: Role,
    pub(crate) file: PathBuf,
    pub(crate) size: u64,
    pub(crate) manifest: Manifest,
    /// Set when the plugin joins the registry.
    pub(crate) counters: Option<crate::metrics::PluginCounters>,
    /// Its failure record (a new version starts clean).
    pub(crate) suspension: super::admission::Suspension,
    /// Whether its calls may run on an async worker.
    pub(crate) pace: super::admission::Pace,
    /// Bounds its concurrent calls.
    pub(crate) slots: super::admission::Slots,
    config_json: Arc<str>,
    pre: RolePre,
    pool: Mutex<Vec<Warm>>,
}

impl Loaded {
    fn limits(&self) -> &Limits {
        &self.manifest.limits
    }

    fn instantiate(&self, runtime: &Runtime) -> Result<Warm, PluginError> {
        let mut store = runtime.new_store(self);
        let armed = self.arm(&mut store, INSTANTIATE_FUEL_FACTOR)?;
        let bound = match &self.pre {
            RolePre::Condition(pre) => pre.instantiate(&mut store).map(Bound::Condition),
            RolePre::Transform(pre) => pre.instantiate(&mut store).map(Bound::Transform),
            RolePre::Encryption(pre) => pre.instantiate(&mut store).map(Bound::Encryption),
            RolePre::Verifier(pre) => pre.instantiate(&mut store).map(Bound::Verifier),
        };
        self.used(&store, armed);
        let bound = bound.map_err(|e| self.trap(&e, "instantiation"))?;
        Ok(Warm { store, bound })
    }

    /// Tells [`Loaded::pace`] how much guest work the store's last run did
    /// (the call's caller reports a change).
    fn used(&self, store: &Store<State>, armed: u64) {
        let left = store.get_fuel().unwrap_or(0);
        self.pace.used(armed.saturating_sub(left));
    }

    /// Sets the budgets for the next call: fuel and the wall-clock
    /// deadline. Returns the fuel given.
    fn arm(&self, store: &mut Store<State>, factor: u64) -> Result<u64, PluginError> {
        let limits = self.limits();
        let fuel = limits.fuel.saturating_mul(factor);
        store
            .set_fuel(fuel)
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let ticks = limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        store.set_epoch_deadline(ticks.saturating_mul(factor.min(10)) + 1);
        Ok(fuel)
    }

    /// Runs `call` on an instance under the plugin's budgets. A trap drops the
    /// instance; a clean return puts it back in the pool (warm isolation).
    pub(crate) fn call<R>(
        &self,
        runtime: &Runtime,
        what: &str,
        call: impl FnOnce(&mut Store<State>, &Bound) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let fresh = self.manifest.isolation == Isolation::Fresh;
        let pooled = if fresh {
            None
        } else {
            self.pool.lock().ok().and_then(|mut pool| pool.pop())
        };
        let mut warm = match pooled {
            Some(warm) => warm,
            None => self.instantiate(runtime)?,
        };
        let armed = self.arm(&mut warm.store, 1)?;
        let result = call(&mut warm.store, &warm.bound);
        self.used(&warm.store, armed);
        match result {
            Ok(result) => {
                if !fresh {
                    if let Ok(mut pool) = self.pool.lock() {
                        if pool.len() < POOL_SIZE {
                            pool.push(warm);
                        }
                    }
                }
                Ok(result)
            }
            Err(e) => {
                debug!(plugin = %self.name, "instance discarded after a trap");
                Err(self.trap(&e, what))
            }
        }
    }

    fn trap(&self, error: &wasmtime::Error, what: &str) -> PluginError {
        let limits = self.limits();
        let kind = match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => TrapKind::OutOfFuel { fuel: limits.fuel },
            Some(wasmtime::Trap::Interrupt) => TrapKind::Timeout {
                timeout: limits.timeout,
            },
            Some(wasmtime::Trap::StackOverflow) => TrapKind::StackOverflow,
            Some(wasmtime::Trap::UnreachableCodeReached) => TrapKind::Unreachable,
            Some(other) => TrapKind::Other(other.to_string()),
            None => {
                let text = format!("{error:#}");
                if text.contains("growing memory") || text.contains("memory minimum size") {
                    TrapKind::Memory {
                        limit: limits.memory_bytes,
                    }
                } else if error.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
                    // A host function's error (a refusal such as
                    // `REQUEST_REFUSED`) comes wrapped in the guest's
                    // backtrace of function numbers: the reason is the
                    // host's message.
                    TrapKind::Other(error.root_cause().to_string())
                } else {
                    TrapKind::Other(text)
                }
            }
        };
        PluginError::Trap {
            plugin: self.name.to_string(),
            during: what.to_string(),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component that imports `import`, an instance with one function
    /// `func` taking and returning nothing, and exports `run`, which calls
    /// it. (The real functions have other types: `func_new`, which refuses
    /// them, takes any, so linking still shows where a name resolves.)
    fn calling(runtime: &Runtime, import: &str, func: &str) -> Component {
        let text = format!(
            r#"(component
                (import "{import}" (instance $imported (export "{func}" (func))))
                (core func $lowered (canon lower (func $imported "{func}")))
                (core module $m
                    (import "host" "f" (func $f))
                    (func (export "run") call $f))
                (core instance $i (instantiate $m (with "host" (instance (export "f" (func $lowered))))))
                (func (export "run") (canon lift (core func $i "run"))))"#
        );
        Component::new(&runtime.engine, wat::parse_str(text).unwrap()).unwrap()
    }

    /// Links `component` and calls its `run` under default budgets.
    fn run(runtime: &Runtime, component: &Component) -> Result<(), String> {
        let pre = runtime.link("test", component)?;
        let mut store = runtime.store_for("test".into(), "{}".into(), &Limits::default());
        store.set_fuel(1_000_000).unwrap();
        store.set_epoch_deadline(1_000);
        let instance = pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .map_err(|e| format!("{e:#}"))?;
        run.call(&mut store, ()).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn what_is_not_granted_links_and_traps_naming_the_interface() {
        let runtime = Runtime::new(None).unwrap();
        for (import, func, expected) in [
            // componentize-js imports wasi:http 0.2.10; wasmtime-wasi-http
            // links 0.2.12, and the refusal must sit where 0.2.x resolves.
            (
                "wasi:http/outgoing-handler@0.2.10",
                "handle",
                REQUEST_REFUSED,
            ),
            ("wasi:io/poll@0.2.0", "poll", WAIT_REFUSED),
            // WASI that wasmhook does not link at all.
            (
                "wasi:keyvalue/store@0.2.0",
                "get",
                "wasi:keyvalue/store@0.2.0#get is not granted to plugins: wasmhook does not link wasi:keyvalue/store@0.2.0",
            ),
        ] {
            let component = calling(&runtime, import, func);
            let error = run(&runtime, &component).expect_err(import);
            assert!(error.contains(expected), "{import}: {error}");
        }
    }

    /// Stubbing an interface wasmhook does not link leaves the WASI it
    /// does link alone, whatever 0.2.x version the component names.
    #[test]
    fn a_stubbed_interface_leaves_the_linked_ones_working() {
        let runtime = Runtime::new(None).unwrap();
        let text = r#"(component
            (import "wasi:random/random@0.2.0" (instance $random
                (export "get-random-u64" (func (result u64)))))
            (import "wasi:keyvalue/store@0.2.0" (instance $kv (export "get" (func))))
            (core func $random (canon lower (func $random "get-random-u64")))
            (core func $get (canon lower (func $kv "get")))
            (core module $m
                (import "host" "random" (func $random (result i64)))
                (import "host" "get" (func $get))
                (func (export "random") (result i64) call $random)
                (func (export "get") call $get))
            (core instance $i (instantiate $m (with "host" (instance
                (export "random" (func $random))
                (export "get" (func $get))))))
            (func (export "random") (result u64) (canon lift (core func $i "random")))
            (func (export "get") (canon lift (core func $i "get"))))"#;
        let component = Component::new(&runtime.engine, wat::parse_str(text).unwrap()).unwrap();
        let pre = runtime.link("test", &component).unwrap();
        let mut store = runtime.store_for("test".into(), "{}".into(), &Limits::default());
        store.set_fuel(1_000_000).unwrap();
        store.set_epoch_deadline(1_000);
        let instance = pre.instantiate(&mut store).unwrap();
        let random = instance
            .get_typed_func::<(), (u64,)>(&mut store, "random")
            .unwrap();
        let draws: Vec<u64> = (0..2)
            .map(|_| random.call(&mut store, ()).unwrap().0)
            .collect();
        assert_ne!(draws[0], draws[1], "wasi:random is the real one");
        let get = instance
            .get_typed_func::<(), ()>(&mut store, "get")
            .unwrap();
        let error = format!("{:#}", get.call(&mut store, ()).unwrap_err());
        assert!(
            error.contains("wasi:keyvalue/store@0.2.0#get is not granted"),
            "{error}"
        );
    }

    #[test]
    fn an_import_wasmhook_does_not_offer_fails_the_load() {
        let runtime = Runtime::new(None).unwrap();
        for import in [
            "wasmhook:plugin/kv@0.1.0",
            "wasmhook:plugin/host@0.2.0",
            "acme:db/query@1.0.0",
        ] {
            let error = runtime
                .link("test", &calling(&runtime, import, "get"))
                .err()
                .unwrap_or_else(|| panic!("{import} linked"));
            assert!(
                error.starts_with("cannot be linked: ")
                    && error.contains(&format!(
                        "it imports {import}, which this wasmhook does not offer"
                    )),
                "{import}: {error}"
            );
        }
    }

    #[test]
    fn offered_names_the_interfaces_of_wit() {
        for (import, expected) in [
            ("wasmhook:plugin/host@0.1.0", true),
            ("wasmhook:plugin/types@0.1.3", true),
            ("wasmhook:plugin/event-context@0.1.0", true),
            ("wasmhook:plugin/host@0.2.0", false),
            ("wasmhook:plugin/host", false),
            ("wasmhook:plugin/condition@0.1.0", false),
            ("wasi:cli/stdout@0.2.0", false),
        ] {
            assert_eq!(offered(import), expected, "{import}");
        }
    }
}
