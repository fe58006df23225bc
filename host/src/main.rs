//! The `wasmhook` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    wasmhook::cli::main()
}
