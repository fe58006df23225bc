//! Replays the fuzz corpus (`fuzz/corpus/TARGET/`) through the same target
//! bodies the cargo-fuzz targets run (`wasmhook::fuzzing`), on stable, so a
//! finding that was fixed stays fixed. Fuzzing itself needs nightly:
//! `cd fuzz && cargo +nightly fuzz run TARGET`.
//!
//! The bodies sit behind the host's `fuzzing` feature, out of the binary;
//! the host's dev-dependency on itself turns it on for every test build, so
//! a plain `cargo test` runs this replay.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use wasmhook::fuzzing;

type Target = fn(&[u8]);

/// Runs every file of one target's corpus and names all the files that
/// failed, not only the first.
fn replay(target: &str, body: Target) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap();
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files failed (reproduce with \
         `cd fuzz && cargo +nightly fuzz run {target} FILE`):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn fuzz_corpus_condition() {
    replay("condition", fuzzing::condition);
}

#[test]
fn fuzz_corpus_template() {
    replay("template", fuzzing::template);
}

#[test]
fn fuzz_corpus_envelope() {
    replay("envelope", fuzzing::envelope);
}

#[test]
fn fuzz_corpus_signature() {
    replay("signature", fuzzing::signature);
}

#[test]
fn fuzz_corpus_config() {
    replay("config", fuzzing::config);
}
