//! Plugin call costs: warm and fresh instances of the Rust condition example,
//! the Python transform, the JavaScript condition and the TypeScript
//! transform (componentize-js), and start-up with ten cached plugins. Needs
//! `plugins/build.sh` to have run. Results: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use wasmhook::event::{Envelope, Event, Operation};
use wasmhook::plugin::Plugins;

fn dist() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    assert!(
        dir.join("high-value-order.wasm").exists(),
        "run plugins/build.sh first"
    );
    dir
}

fn install(dir: &Path, name: &str, as_name: &str, manifest: &str) {
    std::fs::copy(
        dist().join(format!("{name}.wasm")),
        dir.join(format!("{as_name}.wasm")),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{as_name}.toml")), manifest).unwrap();
}

/// A compile cache that outlives the run (keyed by content and engine, so
/// never stale): repeated runs, and profiles of them, measure calls rather
/// than compiling.
fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-bench-cache")
}

fn order() -> Event {
    Event {
        id: "e".into(),
        entity: "Order".into(),
        operation: Operation::Insert,
        entity_id: Some("1".into()),
        timestamp: "2026-03-02T14:00:00Z".into(),
        envelope: Envelope::Fraiseql,
        source: "bench".into(),
        data: json!({"id": 1, "total": 1500, "status": "paid", "customer_email": "a@x", "email": "a@x"}),
        old: None,
        meta: Default::default(),
    }
}

fn calls(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        "high-value-order",
        "warm",
        "[config]\nthreshold = 1000\n",
    );
    install(
        tmp.path(),
        "high-value-order",
        "fresh",
        "isolation = \"fresh\"\n[config]\nthreshold = 1000\n",
    );
    install(
        tmp.path(),
        "slack-message",
        "slack",
        "[config]\nchannel = \"#x\"\n",
    );
    let (plugins, _) = Plugins::load(tmp.path(), Some(cache())).unwrap();
    let event = order();
    assert!(plugins.condition("warm", &event).unwrap());
    c.bench_function("plugin/condition_warm", |b| {
        b.iter(|| plugins.condition("warm", black_box(&event)).unwrap())
    });
    c.bench_function("plugin/condition_fresh_instance", |b| {
        b.iter(|| plugins.condition("fresh", black_box(&event)).unwrap())
    });
    c.bench_function("plugin/transform_rust_slack", |b| {
        b.iter(|| plugins.transform("slack", black_box(&event), None).unwrap())
    });
}

fn python(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        "python-redact",
        "python",
        "[config]\nredact = [\"email\"]\n",
    );
    install(
        tmp.path(),
        "python-redact",
        "python_fresh",
        "isolation = \"fresh\"\n[config]\nredact = [\"email\"]\n",
    );
    let (plugins, _) = Plugins::load(tmp.path(), Some(cache())).unwrap();
    let event = order();
    c.bench_function("plugin/transform_python_redact", |b| {
        b.iter(|| {
            plugins
                .transform("python", black_box(&event), None)
                .unwrap()
        })
    });
    c.bench_function("plugin/transform_python_redact_fresh_instance", |b| {
        b.iter(|| {
            plugins
                .transform("python_fresh", black_box(&event), None)
                .unwrap()
        })
    });
}

/// componentize-js components (SpiderMonkey inside, about 12 MB each), on
/// warm and on fresh instances.
fn javascript(c: &mut Criterion) {
    if !dist().join("js-paid-order.wasm").exists() {
        eprintln!(
            "skipping the JavaScript rows: plugins/build.sh built no JavaScript plugins (no node?)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let condition = "[config]\nmin_total = 1000\n";
    let transform = "[config]\nusername = \"Orders\"\n";
    install(tmp.path(), "js-paid-order", "js_warm", condition);
    install(
        tmp.path(),
        "js-paid-order",
        "js_fresh",
        &format!("isolation = \"fresh\"\n{condition}"),
    );
    install(tmp.path(), "ts-discord-order", "ts_warm", transform);
    install(
        tmp.path(),
        "ts-discord-order",
        "ts_fresh",
        &format!("isolation = \"fresh\"\n{transform}"),
    );
    let (plugins, _) = Plugins::load(tmp.path(), Some(cache())).unwrap();
    let event = order();
    assert!(plugins.condition("js_warm", &event).unwrap());
    c.bench_function("plugin/condition_js_warm", |b| {
        b.iter(|| plugins.condition("js_warm", black_box(&event)).unwrap())
    });
    c.bench_function("plugin/condition_js_fresh_instance", |b| {
        b.iter(|| plugins.condition("js_fresh", black_box(&event)).unwrap())
    });
    c.bench_function("plugin/transform_ts_discord", |b| {
        b.iter(|| {
            plugins
                .transform("ts_warm", black_box(&event), None)
                .unwrap()
        })
    });
    c.bench_function("plugin/transform_ts_discord_fresh_instance", |b| {
        b.iter(|| {
            plugins
                .transform("ts_fresh", black_box(&event), None)
                .unwrap()
        })
    });
}

fn startup(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..10 {
        let name = [
            "high-value-order",
            "slack-message",
            "aes-gcm-fields",
            "shopify-hmac",
            "misbehave",
        ][i % 5];
        install(tmp.path(), name, &format!("p{i}"), "");
    }
    let cache = tmp.path().join("cache");
    let (plugins, _) = Plugins::load(tmp.path(), Some(cache.clone())).unwrap();
    assert_eq!(plugins.list().len(), 10);
    let mut group = c.benchmark_group("plugin");
    group.sample_size(10);
    group.bench_function("startup_10_cached", |b| {
        b.iter(|| Plugins::load(tmp.path(), Some(cache.clone())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, calls, python, javascript, startup);
criterion_main!(benches);
