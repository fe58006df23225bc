//! The `wasmhook` binary: everything lives in the library.

/// jemalloc rather than glibc's malloc: the pipeline allocates small,
/// short-lived buffers per event on many threads (JSON values, rendered
/// bodies, sled nodes), and glibc's malloc took about a fifth of the CPU in
/// profiles of the benchmark; jemalloc doubled the end-to-end rates at the
/// same peak RSS (mimalloc was as fast but held five times the memory with
/// Wasm plugins). Figures: docs/BENCHMARKS.md, "Allocator".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start-up (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them). Freed pages go back to the system
/// after about a second rather than jemalloc's default ten: sled's 512 KiB
/// log buffers and the rendered bodies of a burst are freed at a high rate,
/// and with ten seconds of decay the pages they had held kept RSS ~30 MB
/// higher (100k events queued: 177 -> 144 MB, docs/BENCHMARKS.md).
///
/// 64 arenas rather than four per core, so that each of our threads gets
/// one of its own (jemalloc gives a new thread the least used). A plugin
/// call that is not proven quick runs on a thread at nice 10
/// (`plugin::admission::aside`); sharing an arena with an async worker, it
/// can be preempted while it holds the arena's lock, and the worker waits
/// for a thread that gets a tenth of its CPU. Beside a plugin that
/// busy-waits through its timeout, the healthy observer's rate went from
/// 91% and 90% to 95% and 93% (docs/RELIABILITY.md).
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
