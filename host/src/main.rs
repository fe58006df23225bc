//! The `wasmhook` binary: everything lives in the library.

/// jemalloc rather than glibc's malloc: the pipeline allocates many small,
/// short-lived buffers per event on several threads, which jemalloc serves
/// far more cheaply; mimalloc was as fast but held far more memory once
/// Wasm plugins ran. Figures: docs/BENCHMARKS.md, "Allocator".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`_RJEM_MALLOC_CONF` in the environment overrides
/// them). Freed pages go back after about a second rather than ten, since a
/// burst frees sled's log buffers and rendered bodies fast. 64 arenas give
/// each of our threads its own, so that a plugin call running at nice 10
/// (`plugin::admission::aside`) does not share an arena, and the arena's
/// lock, with an async worker. Figures: docs/BENCHMARKS.md, "Allocator".
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: MallocConf =
    MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:64".as_ptr());

/// jemalloc reads `malloc_conf` as a `const char *`: a pointer with
/// nothing around it, which a `&[u8]` (pointer and length) only happens to
/// start with.
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, immutable for the whole run.
unsafe impl Sync for MallocConf {}

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
