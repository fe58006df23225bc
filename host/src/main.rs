//! The `wasmhook` binary: everything lives in the library.

/// jemalloc rather than glibc's malloc: the pipeline allocates small,
/// short-lived buffers per event on many threads (JSON values, rendered
/// bodies, sled nodes), and glibc's malloc took about a fifth of the CPU in
/// profiles of the benchmark; jemalloc doubled the end-to-end rates at the
/// same peak RSS (mimalloc was as fast but held five times the memory with
/// Wasm plugins). Figures: docs/BENCHMARKS.md, "Allocator".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
