//! Per-event hot paths: condition evaluation, body rendering, signing,
//! envelope parsing. Results and targets: docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use wasmhook::event::{Envelope, Event, Operation};
use wasmhook::observer::condition::Condition;
use wasmhook::payload::template::{JsonTemplate, TextTemplate};
use wasmhook::signing::{Algorithm, Signer};

fn order() -> Event {
    let row = |status: &str| {
        json!({
            "id": "550e8400-e29b-41d4-a716-446655440000", "identifier": "ORD-20260302140000",
            "customer_email": "ada@example.com", "total": 1234.5, "status": status,
            "country": "DE", "is_priority": false, "items": [{"sku": "A-1", "qty": 2}],
            "created_at": "2026-03-02T13:59:00Z"
        })
    };
    Event {
        id: "0193a5b2-0000-7000-8000-000000000000".into(),
        entity: "Order".into(),
        operation: Operation::Update,
        entity_id: Some("550e8400-e29b-41d4-a716-446655440000".into()),
        timestamp: "2026-03-02T14:00:00Z".into(),
        envelope: Envelope::Fraiseql,
        source: "bench".into(),
        data: row("shipped"),
        old: Some(row("paid")),
        meta: Default::default(),
    }
}

fn condition(c: &mut Criterion) {
    let event = order();
    let three =
        Condition::parse("status.changed() && status == 'shipped' && total > 1000").unwrap();
    assert!(three.eval(&event));
    c.bench_function("condition/three_clauses", |b| {
        b.iter(|| black_box(&three).eval(black_box(&event)))
    });
    let membership = Condition::parse("country IN ('DE', 'FR', 'UK')").unwrap();
    c.bench_function("condition/in_list", |b| {
        b.iter(|| black_box(&membership).eval(black_box(&event)))
    });
}

fn render(c: &mut Criterion) {
    let event = order();
    let body = JsonTemplate::parse(&json!({
        "order_id": "{{ id }}", "total": "{{ total }}", "customer": "{{ customer_email }}",
        "status": "{{ status }}", "at": "{{ _timestamp }}"
    }))
    .unwrap();
    let mut out = Vec::with_capacity(512);
    c.bench_function("render/body_five_fields", |b| {
        b.iter(|| {
            out.clear();
            body.render(black_box(&event), &mut out);
            black_box(out.len())
        })
    });
    let text = TextTemplate::parse(
        r#"{"event_type": "{{_entity}}.{{_event}}", "entity_id": "{{_id}}", "timestamp": "{{_timestamp}}", "data": {{_json}}, "changes": {{_changed}}}"#,
    )
    .unwrap();
    c.bench_function("render/body_template_json_changed", |b| {
        b.iter(|| {
            out.clear();
            text.render_json(black_box(&event), &mut out);
            black_box(out.len())
        })
    });
}

fn sign(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Bytes(1024));
    for (name, algorithm) in [
        ("hmac_sha256_1kb", Algorithm::Sha256),
        ("hmac_sha512_1kb", Algorithm::Sha512),
    ] {
        let signer = Signer::new(
            algorithm,
            b"whsec-bench-secret",
            "X-Sig".into(),
            "X-Ts".into(),
        );
        group.bench_function(name, |b| {
            b.iter(|| signer.sign(black_box(1_704_067_200), black_box(&body)))
        });
    }
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let text = json!({
        "event": "fraiseql.order.updated", "entity_type": "Order", "operation": "updated",
        "entity_id": "550e8400", "entity": order().data, "old": order().old, "timestamp": "2026-03-02T14:00:00Z"
    })
    .to_string();
    c.bench_function("envelope/fraiseql_parse", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_str(black_box(&text)).unwrap();
            wasmhook::source::envelope::parse(value, "bench").unwrap()
        })
    });
}

criterion_group!(benches, condition, render, sign, envelope);
criterion_main!(benches);
