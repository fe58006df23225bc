//! Wasm plugins through the real pipeline: the example plugins built by
//! `plugins/build.sh`, hostile test components, hot reload, bad files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use wasmhook::plugin::{Change, IncomingRequest, PluginError, Plugins, Role, TrapKind, Verdict};

use crate::utils::{
    fraiseql_order, free_port, plugin_dist, post, wasmhook, InProcess, Running, TestReceiver,
};

/// Copies `NAME.wasm` from dist into `dir` as `AS.wasm`, with `toml` as its manifest.
fn install(dir: &Path, name: &str, as_name: &str, toml: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        plugin_dist().join(format!("{name}.wasm")),
        dir.join(format!("{as_name}.wasm")),
    )
    .unwrap();
    let manifest = dir.join(format!("{as_name}.toml"));
    match toml {
        Some(text) => std::fs::write(manifest, text).unwrap(),
        None => {
            let sample = plugin_dist().join(format!("{name}.toml"));
            if sample.exists() {
                std::fs::copy(sample, manifest).unwrap();
            }
        }
    }
}

fn plugins_config(dir: &Path, cache: &Path, extra: &str) -> String {
    format!(
        "[plugins]\ndir = {:?}\ncache_dir = {:?}\nwatch_interval_ms = 100\n{extra}",
        dir.display().to_string(),
        cache.display().to_string()
    )
}

#[tokio::test]
async fn condition_and_transform_plugins_select_and_build_the_request() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "high-value-order",
        "high-value-order",
        Some("[config]\nthreshold = 1000\n"),
    );
    install(
        &dir,
        "slack-message",
        "slack-message",
        Some("[config]\nchannel = \"#orders\"\n"),
    );
    let config = plugins_config(
        &dir,
        &tmp.path().join("cache"),
        &format!(
            "[[observer]]\nname = \"big\"\nentity = \"order\"\ncondition = \"plugin:high-value-order\"\n\
             [[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:slack-message\"\n",
            receiver.url("/slack")
        ),
    );
    let wasmhook = InProcess::start(&config).await;
    let events: Vec<String> = [(1, 500), (2, 5000), (3, 1001), (4, 1000)]
        .iter()
        .map(|(id, total)| {
            fraiseql_order(
                "created",
                json!({"id": id, "total": total, "status": "paid", "customer_email": "a@x"}),
                None,
            )
            .to_string()
        })
        .collect();
    let (status, answer) = wasmhook.post_events(events.join("\n")).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver
        .wait_until("2 slack messages", Duration::from_secs(20), |r| {
            r.len() == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests().len(), 2, "only totals over 1000");
    for r in &got {
        let body = r.json();
        assert!(body["blocks"].is_array(), "{body}");
        assert!(
            body["text"].as_str().unwrap().starts_with("New order "),
            "{body}"
        );
        assert_eq!(body["channel"], "#orders", "{body}");
        assert_eq!(r.header("content-type"), "application/json");
    }
    // A non-numeric total is the plugin's invalid-input error: DLQ, with the reason.
    let bad = fraiseql_order("created", json!({"id": 9, "total": "lots"}), None);
    wasmhook.post_events(bad.to_string()).await;
    let dlq = wait_dlq(&wasmhook, 1).await;
    let reason = dlq[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("plugin \"high-value-order\" returned invalid-input error"),
        "{reason}"
    );
    let text = wasmhook.metrics().await;
    for line in [
        r#"wasmhook_plugin_calls_total{plugin="high-value-order",result="ok"} 4"#,
        r#"wasmhook_plugin_calls_total{plugin="high-value-order",result="error"} 1"#,
        r#"wasmhook_plugin_calls_total{plugin="slack-message",result="ok"} 2"#,
        r#"wasmhook_webhook_failure_total{observer="big",webhook="0",reason="plugin"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    wasmhook.stop().await;
}

#[tokio::test]
async fn python_transform_plugin_runs_in_the_pipeline() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "python-redact",
        "redact",
        Some("[config]\nredact = [\"email\", \"ssn\"]\n"),
    );
    let config = plugins_config(
        &dir,
        &tmp.path().join("cache"),
        &format!(
            "[[observer]]\nname = \"users\"\nentity = \"user\"\n[[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:redact\"\n",
            receiver.url("/users")
        ),
    );
    let wasmhook = InProcess::start(&config).await;
    let event = json!({"entity": "user", "op": "INSERT", "data": {"id": 1, "name": "Ada", "email": "ada@x", "ssn": "123"}});
    let (status, answer) = wasmhook.post_events(event.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver
        .wait_until("the redacted user", Duration::from_secs(60), |r| {
            r.len() == 1
        })
        .await;
    // Its contract: with no rendered body, an envelope of the event with
    // the listed fields removed from the row.
    let body = got[0].json();
    assert_eq!(body["entity"], "user", "{body}");
    assert_eq!(body["data"], json!({"id": 1, "name": "Ada"}), "{body}");
    wasmhook.stop().await;
}

#[tokio::test]
async fn encryption_plugin_encrypts_fields_and_round_trips() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "aes-gcm-fields",
        "aes",
        Some("[config]\nfields = [\"email\", \"ssn\"]\n"),
    );
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let config = plugins_config(
        &dir,
        &tmp.path().join("cache"),
        &format!(
            "[[observer]]\nname = \"users\"\nentity = \"user\"\n[[observer.webhook]]\nurl = \"{}\"\nencryption = {{ plugin = \"aes\", key = \"{key}\" }}\n",
            receiver.url("/users")
        ),
    );
    let wasmhook = InProcess::start(&config).await;
    let row = json!({"id": 1, "name": "Ada", "email": "ada@x", "ssn": {"n": 123}});
    for _ in 0..2 {
        wasmhook
            .post_events(json!({"entity": "user", "op": "INSERT", "data": row}).to_string())
            .await;
    }
    let got = receiver
        .wait_until("2 encrypted users", Duration::from_secs(20), |r| {
            r.len() == 2
        })
        .await;
    let (a, b) = (got[0].json(), got[1].json());
    assert_eq!(a["name"], "Ada");
    let email = a["email"].as_str().unwrap();
    assert!(email.starts_with("wh1:"), "{a}");
    assert_ne!(a["email"], b["email"], "a fresh nonce per message");

    let (plugins, _) = Plugins::load(&dir, None).unwrap();
    let key_bytes = hex_decode(key);
    let plain = plugins.decrypt("aes", &got[0].body, &key_bytes).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&plain).unwrap(),
        row
    );
    // The built-in encryption writes and opens the same envelope.
    let builtin = wasmhook::payload::encrypt::FieldCipher::new(
        &key_bytes,
        vec!["email".into(), "ssn".into()],
    )
    .unwrap();
    let opened = builtin.open(&got[0].body).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&opened).unwrap(),
        row
    );
    // A wrong key is the plugin's error, never garbage.
    let wrong = plugins
        .decrypt("aes", &got[0].body, &[7u8; 32])
        .unwrap_err();
    assert!(matches!(wrong, PluginError::Guest { .. }), "{wrong}");
    wasmhook.stop().await;
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn verifier_plugin_checks_shopify_signatures() {
    use base64::Engine;
    use hmac::Mac;
    let tmp = tempfile::tempdir().unwrap();
    install(tmp.path(), "shopify-hmac", "shopify-hmac", None);
    let (plugins, _) = Plugins::load(tmp.path(), None).unwrap();
    assert_eq!(plugins.role("shopify-hmac"), Some(Role::Verifier));
    let body = br#"{"id": 820982911946154508, "email": "jon@example.com"}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"shpss_secret").unwrap();
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let request = |sig: &str, body: &[u8]| IncomingRequest {
        method: "POST".into(),
        path: "/webhooks/shopify".into(),
        headers: vec![
            ("x-shopify-hmac-sha256".into(), sig.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.to_vec(),
    };
    assert_eq!(
        plugins
            .verify(
                "shopify-hmac",
                &request(&signature, body),
                b"shpss_secret",
                0
            )
            .unwrap(),
        Verdict::Ok
    );
    let tampered = plugins
        .verify(
            "shopify-hmac",
            &request(&signature, b"{}"),
            b"shpss_secret",
            0,
        )
        .unwrap();
    assert!(matches!(tampered, Verdict::Rejected(_)), "{tampered:?}");
    let wrong_secret = plugins
        .verify("shopify-hmac", &request(&signature, body), b"other", 0)
        .unwrap();
    assert!(matches!(wrong_secret, Verdict::Rejected(_)));
    let mut missing = request(&signature, body);
    missing.headers.remove(0);
    assert!(
        matches!(plugins.verify("shopify-hmac", &missing, b"shpss_secret", 0).unwrap(), Verdict::Rejected(r) if r.contains("X-Shopify-Hmac-Sha256"))
    );
}

// A multi-threaded runtime, as `wasmhook run` has: a `wasm32-wasip2` guest
// that panics (`start`) writes its message to stderr, and wasmtime-wasi's
// blocking stream calls panic the host when a plugin runs on a
// current-thread runtime's own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_own_deliveries() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let limits =
        "[limits]\nfuel = 50000000\nmemory_mb = 32\ntimeout_ms = 200\nmax_output_bytes = 1048576\n";
    // `start` traps while its component is instantiated, before any export runs.
    let modes = [
        "loop",
        "memory",
        "recursion",
        "trap",
        "huge",
        "slow",
        "start",
    ];
    for mode in modes {
        let extra = if mode == "slow" { "ms = 2000\n" } else { "" };
        // Calls not proven quick run at a lower CPU priority, so on a busy
        // machine any of them could meet a short timeout before its own
        // limit: only `slow`, which tests the timeout, keeps it short.
        let limits = if mode == "slow" {
            limits.to_string()
        } else {
            limits.replace("timeout_ms = 200", "timeout_ms = 60000")
        };
        install(
            &dir,
            "misbehave",
            mode,
            Some(&format!("{limits}[config]\nmode = \"{mode}\"\n{extra}")),
        );
    }
    install(
        &dir,
        "misbehave",
        "fine",
        Some(&format!(
            "{}[config]\nmode = \"ok\"\n",
            limits.replace("timeout_ms = 200", "timeout_ms = 60000")
        )),
    );
    let mut observers = String::new();
    for mode in modes.iter().chain(["fine"].iter()) {
        observers.push_str(&format!(
            "[[observer]]\nname = \"{mode}\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:{mode}\"\n",
            receiver.url(&format!("/{mode}"))
        ));
    }
    observers.push_str(&format!(
        "[[observer]]\nname = \"plain\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/plain")
    ));
    let wasmhook =
        InProcess::start(&plugins_config(&dir, &tmp.path().join("cache"), &observers)).await;
    for i in 0..3 {
        let (status, answer) = wasmhook
            .post_events(fraiseql_order("created", json!({"id": i}), None).to_string())
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    let got = receiver
        .wait_until("healthy deliveries", Duration::from_secs(30), |r| {
            r.len() == 6
        })
        .await;
    assert!(
        got.iter().all(|r| r.path == "/plain" || r.path == "/fine"),
        "only healthy observers deliver"
    );
    let dlq = wait_dlq(&wasmhook, 3 * modes.len()).await;
    let reason_of = |mode: &str| -> String {
        let reasons: Vec<&str> = dlq
            .iter()
            .filter(|e| e["observer"] == mode)
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), 3, "{mode}: {reasons:?}");
        reasons[0].to_string()
    };
    for (mode, expected) in [
        ("loop", "ran out of fuel"),
        ("memory", "exceeded its memory limit of 32 MiB"),
        ("recursion", "overflowed its stack"),
        ("trap", "trapped"),
        ("huge", ""),
        ("slow", "exceeded its timeout of 200 ms"),
        // Every delivery tries a fresh instance, and each one panics again.
        (
            "start",
            "trapped: unreachable code (a panic?) during instantiation",
        ),
    ] {
        let reason = reason_of(mode);
        assert!(reason.contains(&format!("plugin \"{mode}\"")), "{reason}");
        assert!(reason.contains(expected), "{mode}: {reason}");
    }
    let huge = reason_of("huge");
    assert!(
        huge.contains("memory limit") || huge.contains("over its limit"),
        "{huge}"
    );
    wasmhook.stop().await;
}

fn empty_event() -> wasmhook::event::Event {
    wasmhook::event::Event {
        id: "e".into(),
        entity: "order".into(),
        operation: wasmhook::event::Operation::Insert,
        entity_id: None,
        timestamp: "2026-03-02T14:00:00Z".into(),
        envelope: wasmhook::event::Envelope::Native,
        source: "test".into(),
        data: json!({}),
        old: None,
        meta: Default::default(),
    }
}

#[test]
fn the_sandbox_grants_no_filesystem_environment_or_network() {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        "misbehave",
        "escape",
        Some("[config]\nmode = \"escape\"\n"),
    );
    std::env::set_var("WASMHOOK_TEST_SECRET_ENV", "leak");
    let (plugins, _) = Plugins::load(tmp.path(), None).unwrap();
    let out = plugins.transform("escape", &empty_event(), None).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    for key in ["file", "dir", "network"] {
        assert!(
            report[key].as_str().unwrap().starts_with("denied"),
            "{key}: {report}"
        );
    }
    assert_eq!(report["env"], 0, "{report}");
    assert_eq!(report["args"], 0, "{report}");
}

/// A plugin that waits in a host call (a WASI sleep: `subscribe-duration`,
/// then `pollable.block`) spends no fuel and meets no epoch check, so
/// neither budget would stop it: the wait must be refused outright.
#[test]
fn a_plugin_that_sleeps_is_stopped_not_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    install(
        tmp.path(),
        "misbehave",
        "sleeper",
        Some("[limits]\ntimeout_ms = 200\n[config]\nmode = \"sleep\"\nms = 5000\n"),
    );
    let (plugins, _) = Plugins::load(tmp.path(), None).unwrap();
    let result = plugins.transform("sleeper", &empty_event(), None);
    let error = result.expect_err("the sleep must not be waited out");
    let text = error.to_string();
    // Waited out, the call would end as a timeout once the sleep returned.
    // A wasip2 build is told waits are refused; the fallback target's std
    // cannot sleep at all and panics.
    assert!(
        matches!(&error, PluginError::Trap { plugin, kind, .. }
            if plugin == "sleeper" && !matches!(kind, TrapKind::Timeout { .. })),
        "{text}"
    );
}

/// Instance slots are reused, and the memory a call touched is reset in
/// place rather than unmapped (`plugin/runtime.rs`): a fresh instance must
/// still start from the component's initial memory, static data and heap
/// alike, while a warm one keeps its state between calls.
#[test]
fn a_fresh_instance_never_sees_what_an_earlier_call_left_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, isolation) in [("warm", "warm"), ("fresh", "fresh")] {
        install(
            tmp.path(),
            "misbehave",
            name,
            Some(&format!(
                "isolation = \"{isolation}\"\n[config]\nmode = \"remember\"\n"
            )),
        );
    }
    let (plugins, _) = Plugins::load(tmp.path(), None).unwrap();
    let event = empty_event();
    let call = |name: &str| -> serde_json::Value {
        let out = plugins.transform(name, &event, None).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    };
    for i in 0..20u64 {
        // One caller at a time: the warm pool hands back the same instance.
        assert_eq!(
            call("warm"),
            json!({"calls_before": i, "kept_before": i}),
            "warm call {i}"
        );
        assert_eq!(
            call("fresh"),
            json!({"calls_before": 0, "kept_before": 0}),
            "fresh call {i}"
        );
    }
}

/// `wasmhook plugin list` and `plugin test`, run as a user would, on a
/// folder with a condition, a working transform and a trapping one.
#[test]
fn the_plugin_cli_lists_plugins_and_runs_one_on_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "high-value-order",
        "high-value-order",
        Some("[config]\nthreshold = 1000\n"),
    );
    install(
        &dir,
        "misbehave",
        "echo",
        Some("isolation = \"fresh\"\n[config]\nmode = \"ok\"\n"),
    );
    install(
        &dir,
        "misbehave",
        "trapper",
        Some("[limits]\nfuel = 1000000\n[config]\nmode = \"trap\"\n"),
    );
    let order = |total: u32| {
        format!(
            r#"{{"event":"fraiseql.order.updated","entity_type":"Order","operation":"updated","entity_id":"o1","entity":{{"id":"o1","total":{total}}}}}"#
        )
    };
    std::fs::write(tmp.path().join("big.json"), order(1500)).unwrap();
    std::fs::write(tmp.path().join("small.json"), order(10)).unwrap();
    std::fs::write(tmp.path().join("broken.json"), "{oops").unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["plugin", "--dir", "plugins"];
        all.extend_from_slice(args);
        wasmhook(&all, tmp.path())
    };

    let (code, out, err) = run(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    let condition = entry("high-value-order");
    assert_eq!(condition["role"], "condition");
    assert_eq!(
        condition["size"],
        std::fs::metadata(dir.join("high-value-order.wasm"))
            .unwrap()
            .len()
    );
    assert_eq!(entry("echo")["role"], "transform");
    assert_eq!(entry("echo")["isolation"], "fresh");
    assert_eq!(entry("trapper")["limits"]["fuel"], 1_000_000);
    assert_eq!(entry("trapper")["limits"]["timeout_ms"], 1_000);
    let (code, out, _) = run(&["list"]);
    assert_eq!(code, 0);
    for name in [
        "high-value-order",
        "echo",
        "trapper",
        "condition",
        "transform",
    ] {
        assert!(out.contains(name), "{name} not in:\n{out}");
    }

    let (code, out, err) = run(&["test", "high-value-order", "--event", "big.json"]);
    assert_eq!((code, out.trim()), (0, "true"), "{err}");
    let (code, out, err) = run(&["test", "high-value-order", "--event", "small.json"]);
    assert_eq!((code, out.trim()), (0, "false"), "{err}");
    let (code, out, err) = run(&["test", "echo", "--event", "big.json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("content-type: application/json"), "{out}");
    assert!(out.contains(r#""total":1500"#), "{out}");

    // Errors name what went wrong, and exit non-zero.
    let (code, _, err) = run(&["test", "trapper", "--event", "big.json"]);
    assert_ne!(code, 0);
    assert!(err.contains("trapper") && err.contains("trapped"), "{err}");
    let (code, _, err) = run(&["test", "high-value-order", "--event", "broken.json"]);
    assert_ne!(code, 0);
    assert!(err.contains("not JSON"), "{err}");
    let (code, _, err) = run(&["test", "nope", "--event", "big.json"]);
    assert_ne!(code, 0);
    assert!(err.contains("\"nope\" is not loaded"), "{err}");
    let (code, _, err) = run(&["test", "high-value-order"]);
    assert_ne!(code, 0);
    assert!(err.contains("--event"), "{err}");
}

#[tokio::test]
async fn hot_reload_swaps_plugins_while_events_flow_and_loses_none() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "slack-message",
        "notify",
        Some("[config]\nchannel = \"#v1\"\n"),
    );
    let config = plugins_config(
        &dir,
        &tmp.path().join("cache"),
        &format!(
            "[webhooks.retry]\nmax_attempts = 1\n[[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:notify\"\n",
            receiver.url("/n")
        ),
    );
    let wasmhook = InProcess::start(&config).await;
    let post = |i: i64| {
        let body = fraiseql_order(
            "created",
            json!({"id": i, "total": 10, "status": "paid"}),
            None,
        )
        .to_string();
        let url = wasmhook.url("/events");
        async move { crate::utils::post(&url, body).await.0 }
    };
    let channel =
        |r: &crate::utils::Received| r.json()["channel"].as_str().unwrap_or_default().to_string();
    let mut sent = 0;
    for _ in 0..10 {
        assert_eq!(post(sent).await, 202);
        sent += 1;
    }
    // A new config for the same component: picked up without a restart.
    // (How fast is a benchmark's business; here it only has to happen.)
    std::fs::write(dir.join("notify.toml"), "[config]\nchannel = \"#v2\"\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(post(sent).await, 202);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let requests = receiver.requests();
        if requests.last().is_some_and(|r| channel(r) == "#v2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new version did not take effect within 2 s"
        );
    }
    // A broken replacement is reported and the previous version keeps serving.
    let good = std::fs::read(dir.join("notify.wasm")).unwrap();
    std::fs::write(dir.join("notify.wasm"), b"not wasm at all").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..5 {
        assert_eq!(post(sent).await, 202);
        sent += 1;
    }
    // A different component under the same name replaces it.
    std::fs::write(dir.join("notify.wasm"), &good).unwrap();
    install(
        &dir,
        "misbehave",
        "notify",
        Some("[config]\nmode = \"ok\"\n"),
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..5 {
        assert_eq!(post(sent).await, 202);
        sent += 1;
    }
    let got = receiver
        .wait_until("every event", Duration::from_secs(20), |r| {
            r.len() as i64 == sent
        })
        .await;
    assert!(got
        .iter()
        .skip(10)
        .take(1)
        .all(|r| channel(r) == "#v1" || channel(r) == "#v2"));
    assert_eq!(
        wasmhook.get_json("/admin/dlq").await,
        json!([]),
        "no event lost"
    );
    // Removal: later events die with a clear reason, in the DLQ.
    std::fs::remove_file(dir.join("notify.wasm")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let dlq = loop {
        assert_eq!(post(sent).await, 202);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = wasmhook.get_json("/admin/dlq").await;
        if !list.as_array().unwrap().is_empty() {
            break list.as_array().unwrap().clone();
        }
        assert!(std::time::Instant::now() < deadline, "removal not noticed");
    };
    assert!(
        dlq[0]["reason"]
            .as_str()
            .unwrap()
            .contains("plugin \"notify\" is not loaded"),
        "{}",
        dlq[0]
    );
    wasmhook.stop().await;
}

#[test]
fn bad_files_and_bad_references_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("garbage.wasm"), b"hello").unwrap();
    // A core module (magic + version 1), not a component.
    std::fs::write(tmp.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    // An empty component: valid, but it exports no plugin role.
    std::fs::write(tmp.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    std::fs::write(tmp.path().join("badtoml.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    std::fs::write(tmp.path().join("badtoml.toml"), "[limits]\nfuel = -1\n").unwrap();
    let (plugins, changes) = Plugins::load(tmp.path(), None).unwrap();
    assert!(plugins.list().is_empty());
    let failure = |name: &str| -> String {
        changes
            .iter()
            .find_map(|c| match c {
                Change::Failed(n, e) if n == name => Some(e.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no failure for {name}: {changes:?}"))
    };
    assert!(
        failure("garbage").contains("garbage.wasm: not a WebAssembly component"),
        "{}",
        failure("garbage")
    );
    assert!(
        failure("core").contains("core WebAssembly module, not a component"),
        "{}",
        failure("core")
    );
    assert!(
        failure("empty").contains("exports none of wasmhook:plugin/"),
        "{}",
        failure("empty")
    );
    assert!(
        failure("badtoml").contains("badtoml.toml"),
        "{}",
        failure("badtoml")
    );

    install(tmp.path(), "high-value-order", "hv", None);
    let (plugins, _) = Plugins::load(tmp.path(), None).unwrap();
    let text = |extra: &str| {
        format!(
            "[plugins]\ndir = {:?}\n[[observer]]\nname = \"o\"\nentity = \"order\"\n{extra}\n[[observer.webhook]]\nurl = \"http://127.0.0.1:1/\"\n",
            tmp.path().display().to_string()
        )
    };
    for (extra, expected) in [
        (
            "condition = \"plugin:nope\"",
            "observer[0] (\"o\").condition: plugin \"nope\" is not loaded",
        ),
        ("condition = \"plugin:\"", "is not \"plugin:NAME\""),
    ] {
        let config =
            wasmhook::config::Config::from_toml(&text(extra), Path::new("t.toml"), &|_| None);
        let message = match config {
            Err(e) => e.to_string(),
            Ok(config) => config.check_plugins(&plugins).unwrap_err().to_string(),
        };
        assert!(message.contains(expected), "{message}");
    }
    let wrong_role = "[[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://127.0.0.1:1/\"\ntransform = \"plugin:hv\"\n";
    let config =
        wasmhook::config::Config::from_toml(wrong_role, Path::new("t.toml"), &|_| None).unwrap();
    let message = config.check_plugins(&plugins).unwrap_err().to_string();
    assert!(
        message.contains("plugin \"hv\" is a condition plugin, not a transform plugin"),
        "{message}"
    );
}

async fn wait_dlq(wasmhook: &InProcess, n: usize) -> Vec<serde_json::Value> {
    let mut list = serde_json::Value::Null;
    for _ in 0..400 {
        list = wasmhook.get_json("/admin/dlq").await;
        if list.as_array().is_some_and(|l| l.len() >= n) {
            return list.as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("DLQ did not reach {n} entries: {list}");
}

/// Calls of one plugin counted in `/metrics`, by result.
async fn plugin_calls(wasmhook: &InProcess, plugin: &str, result: &str) -> f64 {
    let text = wasmhook.metrics().await;
    let labels = [
        format!("plugin=\"{plugin}\""),
        format!("result=\"{result}\""),
    ];
    text.lines()
        .filter(|l| l.starts_with("wasmhook_plugin_calls_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two observers of every order: `plugin`'s transform to `/PLUGIN`, and a
/// plain webhook to `/plain`.
fn beside_a_plain_observer(receiver: &TestReceiver, plugin: &str) -> String {
    format!(
        "[[observer]]\nname = \"{plugin}\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:{plugin}\"\n\
         [[observer]]\nname = \"plain\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url(&format!("/{plugin}")),
        receiver.url("/plain")
    )
}

/// `misbehave` installed as `name` with `manifest`, beside a plain
/// observer, in a wasmhook started in process; the temporary folder holds
/// the plugins and must outlive it.
async fn start_misbehave_beside_plain(
    receiver: &TestReceiver,
    name: &str,
    manifest: &str,
) -> (InProcess, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(&dir, "misbehave", name, Some(manifest));
    let observers = beside_a_plain_observer(receiver, name);
    let wasmhook =
        InProcess::start(&plugins_config(&dir, &tmp.path().join("cache"), &observers)).await;
    (wasmhook, tmp)
}

/// A transform that takes seconds holds back its own deliveries only: the
/// event is accepted (and the plain observer served) before the plugin has
/// finished, because a plugin-built request is built at its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_transform_does_not_hold_back_acceptance_or_other_observers() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "misbehave",
        "slow",
        Some("[limits]\ntimeout_ms = 20000\nfuel = 100000000000\n[config]\nmode = \"slow\"\nms = 3000\n"),
    );
    let observers = beside_a_plain_observer(&receiver, "slow");
    let wasmhook =
        InProcess::start(&plugins_config(&dir, &tmp.path().join("cache"), &observers)).await;
    let (status, answer) = wasmhook
        .post_events(fraiseql_order("created", json!({"id": 1}), None).to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
    // The plugin sleeps 3 s per call: had acceptance run it, the call
    // would be counted by now.
    assert_eq!(plugin_calls(&wasmhook, "slow", "ok").await, 0.0);
    let got = receiver
        .wait_until("the plain delivery", Duration::from_secs(30), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(got[0].path, "/plain", "the plain observer is served first");
    let got = receiver
        .wait_until("both deliveries", Duration::from_secs(30), |r| r.len() == 2)
        .await;
    assert_eq!(got[1].path, "/slow");
    assert_eq!(plugin_calls(&wasmhook, "slow", "ok").await, 1.0);
    wasmhook.stop().await;
}

/// After the back-off, the next event's delivery carries the probe: let
/// through at acceptance, its attempt calls the plugin (a real call, not a
/// refusal), and the failed probe suspends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_plugin_is_probed_by_a_delivery_after_its_back_off() {
    let receiver = TestReceiver::start().await;
    let (wasmhook, _tmp) = start_misbehave_beside_plain(
        &receiver,
        "spin",
        "[limits]\nfuel = 20000000\nsuspend_after = 2\n[config]\nmode = \"loop\"\n",
    )
    .await;
    let post = |i: i64| fraiseql_order("created", json!({"id": i}), None).to_string();
    for i in 0..3 {
        assert_eq!(wasmhook.post_events(post(i)).await.0, 202);
        wait_dlq(&wasmhook, i as usize + 1).await;
    }
    // Two failed calls, then a refusal: suspended for 1 s.
    assert_eq!(plugin_calls(&wasmhook, "spin", "trap").await, 2.0);
    assert_eq!(plugin_calls(&wasmhook, "spin", "suspended").await, 1.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(wasmhook.post_events(post(3)).await.0, 202);
    let dlq = wait_dlq(&wasmhook, 4).await;
    assert_eq!(
        plugin_calls(&wasmhook, "spin", "trap").await,
        3.0,
        "the probe ran the plugin: {dlq:?}"
    );
    assert_eq!(plugin_calls(&wasmhook, "spin", "suspended").await, 1.0);
    // The failed probe suspends it again (2 s): the next one is refused.
    assert_eq!(wasmhook.post_events(post(4)).await.0, 202);
    wait_dlq(&wasmhook, 5).await;
    assert_eq!(plugin_calls(&wasmhook, "spin", "suspended").await, 2.0);
    receiver
        .wait_until("the plain deliveries", Duration::from_secs(30), |r| {
            r.len() == 5
        })
        .await;
    wasmhook.stop().await;
}

/// Deliveries waiting for a busy plugin wait without a thread: the runtime
/// gains no thread per waiting delivery (before 2026-12-04 each waited in
/// `block_in_place`, and the runtime started a thread to replace each: 103
/// of them beside one hostile plugin in the bench), and the plugin still
/// runs one call at a time. The test has a runtime of its own, whose
/// threads it counts as they start and stop.
#[test]
fn deliveries_waiting_for_a_busy_plugin_hold_no_threads() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (alive, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (started, stopped) = (alive.clone(), alive.clone());
    let highest = peak.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || {
            let now = started.fetch_add(1, Ordering::SeqCst) + 1;
            highest.fetch_max(now, Ordering::SeqCst);
        })
        .on_thread_stop(move || {
            stopped.fetch_sub(1, Ordering::SeqCst);
        })
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let receiver = TestReceiver::start().await;
        let (wasmhook, _tmp) = start_misbehave_beside_plain(
            &receiver,
            "busy",
            "[limits]\ntimeout_ms = 20000\nfuel = 100000000000\nmax_concurrency = 1\n\
             [config]\nmode = \"slow\"\nms = 100\n",
        )
        .await;
        let events: Vec<_> = (0..16)
            .map(|i| fraiseql_order("created", json!({"id": i}), None))
            .collect();
        let (status, answer) = wasmhook
            .post_events(serde_json::Value::Array(events).to_string())
            .await;
        assert_eq!(status, 202, "{answer}");
        // The plugin takes 100 ms a call, one at a time: 1.6 s for all.
        let got = receiver
            .wait_until("every delivery", Duration::from_secs(30), |r| r.len() == 32)
            .await;
        assert_eq!(got.iter().filter(|r| r.path == "/busy").count(), 16);
        assert_eq!(plugin_calls(&wasmhook, "busy", "ok").await, 16.0);
        wasmhook.stop().await;
    });
    // Two workers, the one that replaces a worker waiting for a call
    // (which runs on a thread of its own, `admission::aside`, not counted
    // here), and a few for storage. Waiting in `block_in_place`, the 15
    // deliveries behind the first made it 21.
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= 8,
        "{peak} runtime threads at once while deliveries waited for the plugin"
    );
}

/// A plugin that fails `suspend_after` times in a row is suspended: its
/// calls fail at once, with the last failure in the reason, and the
/// deliveries still reach the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_in_a_row_is_suspended_and_its_deliveries_reach_the_dlq() {
    let receiver = TestReceiver::start().await;
    let (wasmhook, _tmp) = start_misbehave_beside_plain(
        &receiver,
        "spin",
        "[limits]\nfuel = 20000000\nsuspend_after = 2\n[config]\nmode = \"loop\"\n",
    )
    .await;
    let post = |i: i64| fraiseql_order("created", json!({"id": i}), None).to_string();
    // Two failures, one after the other.
    for i in 0..2 {
        assert_eq!(wasmhook.post_events(post(i)).await.0, 202);
        wait_dlq(&wasmhook, i as usize + 1).await;
    }
    for i in 2..6 {
        assert_eq!(wasmhook.post_events(post(i)).await.0, 202);
    }
    let dlq = wait_dlq(&wasmhook, 6).await;
    let reasons: Vec<&str> = dlq.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().all(|r| r.contains("ran out of fuel")),
        "every reason names the failure: {reasons:?}"
    );
    let suspended = reasons
        .iter()
        .filter(|r| r.contains("plugin \"spin\" is suspended for another"))
        .count();
    assert!(suspended >= 1, "{reasons:?}");
    assert_eq!(
        plugin_calls(&wasmhook, "spin", "suspended").await,
        suspended as f64
    );
    assert!(plugin_calls(&wasmhook, "spin", "trap").await >= 2.0);
    receiver
        .wait_until("the plain deliveries", Duration::from_secs(30), |r| {
            r.len() == 6
        })
        .await;
    wasmhook.stop().await;
}

/// A transform reads the event's metadata through `event-context`: a
/// FraiseQL v2 event's tenant and actor reach the plugin, and an event
/// without any gives it `{}`.
#[tokio::test]
async fn plugins_read_the_events_metadata() {
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "misbehave",
        "meta",
        Some("[config]\nmode = \"metadata\"\n"),
    );
    let config = plugins_config(
        &dir,
        &tmp.path().join("cache"),
        &format!(
            "[[observer]]\nname = \"orders\"\nentity = \"order\"\n\
             [[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:meta\"\n",
            receiver.url("/meta")
        ),
    );
    let wasmhook = InProcess::start(&config).await;
    let v2 = json!({"id": "e-1", "event_type": "INSERT", "entity_type": "Order",
        "entity_id": "1", "data": {"id": 1}, "changes": null, "user_id": "u-7",
        "tenant_id": "t-1", "timestamp": "2026-12-07T04:14:57Z", "seq": 2, "actor_type": "user"});
    let plain = fraiseql_order("created", json!({"id": 2}), None);
    let (status, answer) = wasmhook.post_events(format!("{v2}\n{plain}")).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver
        .wait_until("both", Duration::from_secs(20), |r| r.len() == 2)
        .await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    assert!(
        bodies.contains(
            &json!({"tenant_id": "t-1", "user_id": "u-7", "actor_type": "user", "seq": 2})
        ),
        "{bodies:?}"
    );
    assert!(bodies.contains(&json!({})), "{bodies:?}");
    wasmhook.stop().await;
}

/// Whether `plugins/build.sh` built these JavaScript components. It skips
/// them, saying so, only on a machine without Node.js; there the tests that
/// need them say so too and pass, and anywhere else a missing one fails.
fn js_components_built(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !plugin_dist().join(format!("{name}.wasm")).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        !node,
        "{missing:?} missing from plugins/dist although node is installed: run plugins/build.sh"
    );
    eprintln!("skipped: no node here, so plugins/build.sh built no JavaScript plugins");
    false
}

/// The componentize-js components of `plugins/`.
const JS_COMPONENTS: [&str; 3] = ["js-paid-order", "ts-discord-order", "js-sandbox-probe"];

/// A compile cache shared by the JavaScript tests, in process and in the
/// binary, and kept between runs (keyed by content and engine, so never
/// stale): a 12 MB componentize-js component takes tens of seconds to
/// compile on a busy machine. The first caller fills it while the others
/// wait, so that tests running at once do not each compile the same ones.
fn js_cache() -> PathBuf {
    static FILLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILLED
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("js-plugin-cache");
            let tmp = tempfile::tempdir().unwrap();
            for name in JS_COMPONENTS {
                if plugin_dist().join(format!("{name}.wasm")).exists() {
                    install(tmp.path(), name, name, None);
                }
            }
            Plugins::load(tmp.path(), Some(cache.clone())).unwrap();
            cache
        })
        .clone()
}

/// The JavaScript condition and the TypeScript transform, built by
/// componentize-js with its default flags (so importing `wasi:http` and the
/// rest of WASI 0.2), select and build deliveries in `wasmhook run`; the
/// condition's `error` answer reaches the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_typescript_plugins_deliver_through_wasmhook_run() {
    if !js_components_built(&["js-paid-order", "ts-discord-order"]) {
        return;
    }
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(
        &dir,
        "js-paid-order",
        "paid-order",
        Some("[config]\nmin_total = 1000\nstatuses = [\"paid\", \"captured\"]\n"),
    );
    install(
        &dir,
        "ts-discord-order",
        "discord",
        Some("[config]\nusername = \"Orders\"\n"),
    );
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"adm\"\n[storage]\npath = \"db\"\n\
         [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n{}\
         [[observer]]\nname = \"paid\"\nentity = \"order\"\ncondition = \"plugin:paid-order\"\n\
         [[observer.webhook]]\nurl = \"{}\"\ntransform = \"plugin:discord\"\n",
        plugins_config(&dir, &js_cache(), ""),
        receiver.url("/discord")
    );
    let config_path = tmp.path().join("wasmhook.toml");
    std::fs::write(&config_path, config).unwrap();
    let running = Running::start(&config_path, tmp.path(), port).await;
    let ada = json!({"name": "Ada", "email": "ada@example.com"});
    let events: Vec<String> = [
        json!({"id": 1, "total": 1500, "status": "paid", "currency": "EUR", "customer": ada}),
        json!({"id": 2, "total": 500, "status": "paid"}),
        json!({"id": 3, "total": 5000, "status": "pending"}),
        json!({"id": 4, "total": "2000.00", "status": "Captured", "items": [{"name": "Widget", "quantity": 2}]}),
    ]
    .into_iter()
    .map(|row| fraiseql_order("created", row, None).to_string())
    .collect();
    let (status, answer) = post(&running.url("/events"), events.join("\n")).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver
        .wait_until("2 Discord messages", Duration::from_secs(120), |r| {
            r.len() == 2
        })
        .await;
    let mut bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|b| b["content"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        bodies[0]["content"], "New order 1: paid, 1500 EUR, Ada <ada@example.com>",
        "{}",
        bodies[0]
    );
    assert_eq!(bodies[0]["username"], "Orders");
    assert_eq!(bodies[0]["allowed_mentions"], json!({"parse": []}));
    let embed = &bodies[0]["embeds"][0];
    assert_eq!(embed["title"], "New order 1");
    assert_eq!(embed["color"], 0x2ecc71);
    assert_eq!(
        embed["fields"][1],
        json!({"name": "Total", "value": "1500 EUR", "inline": true})
    );
    assert_eq!(embed["timestamp"], "2026-03-02T14:00:00Z");
    assert_eq!(bodies[1]["content"], "New order 4: Captured, 2000.00, -");
    assert_eq!(bodies[1]["embeds"][0]["fields"][3]["value"], "2 × Widget");
    assert!(got
        .iter()
        .all(|r| r.header("content-type") == "application/json"));

    // A total that is not a number: the condition's invalid-input error, as
    // the thrown PluginError's payload, is the DLQ reason.
    let bad = fraiseql_order(
        "created",
        json!({"id": 9, "status": "paid", "total": "lots"}),
        None,
    );
    let (status, _) = post(&running.url("/events"), bad.to_string()).await;
    assert_eq!(status, 202);
    let config_arg = config_path.to_str().unwrap();
    let mut listed = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, out, err) = wasmhook(
            &["dlq", "--config", config_arg, "list", "--json"],
            tmp.path(),
        );
        assert_eq!(code, 0, "{err}");
        listed = serde_json::from_str(&out).unwrap();
        if listed.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = listed.to_string();
    assert!(
        text.contains(r#"plugin \"paid-order\" returned invalid-input error: the order has a total that is not a number (\"lots\")"#),
        "{text}"
    );
    assert_eq!(receiver.requests().len(), 2, "nothing else was delivered");
}

/// `wasmhook plugin test` runs the JavaScript condition and the TypeScript
/// transform on event files, as a plugin author would while writing one.
#[test]
fn plugin_test_runs_the_javascript_and_typescript_plugins() {
    if !js_components_built(&["js-paid-order", "ts-discord-order"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    install(&dir, "js-paid-order", "js-paid-order", None);
    install(&dir, "ts-discord-order", "ts-discord-order", None);
    let order = |status: &str, total: u32| {
        fraiseql_order(
            "updated",
            json!({"id": "o1", "status": status, "total": total, "currency": "EUR"}),
            Some(json!({"id": "o1", "status": "pending"})),
        )
        .to_string()
    };
    std::fs::write(tmp.path().join("paid.json"), order("paid", 1500)).unwrap();
    std::fs::write(tmp.path().join("small.json"), order("paid", 10)).unwrap();
    // The config names the plugins folder and the shared compile cache.
    std::fs::write(
        tmp.path().join("wasmhook.toml"),
        plugins_config(&dir, &js_cache(), ""),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["plugin", "--config", "wasmhook.toml"];
        all.extend_from_slice(args);
        wasmhook(&all, tmp.path())
    };
    let (code, out, err) = run(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let roles: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("js-paid-order", "condition"),
            ("ts-discord-order", "transform")
        ]
    );

    let (code, out, err) = run(&["test", "js-paid-order", "--event", "paid.json"]);
    assert_eq!((code, out.trim()), (0, "true"), "{err}");
    let (code, out, err) = run(&["test", "js-paid-order", "--event", "small.json"]);
    assert_eq!((code, out.trim()), (0, "false"), "{err}");
    let (code, out, err) = run(&["test", "ts-discord-order", "--event", "paid.json"]);
    assert_eq!(code, 0, "{err}");
    let (head, body) = out.split_once("\n\n").unwrap();
    assert_eq!(head, "content-type: application/json", "{out}");
    let message: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(
        message["content"],
        "Order updated o1: pending → paid, 1500 EUR, -"
    );
    // The sample config names the sender.
    assert_eq!(message["username"], "Orders");
}

/// A plugin built by componentize-js with its defaults imports `wasi:http`:
/// it loads, and its `fetch` is refused where it is made, with the
/// interface named, before anything leaves the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_calling_fetch_is_refused_naming_wasi_http() {
    if !js_components_built(&["js-sandbox-probe"]) {
        return;
    }
    let receiver = TestReceiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let url = receiver.url("/stolen");
    for (name, mode) in [
        ("ok", "ok"),
        ("fetch", "fetch"),
        ("throw", "throw"),
        ("clock", "clock"),
        ("timer", "timer"),
    ] {
        install(
            tmp.path(),
            "js-sandbox-probe",
            name,
            Some(&format!("[config]\nmode = \"{mode}\"\nurl = \"{url}\"\n")),
        );
    }
    let (plugins, changes) = Plugins::load(tmp.path(), Some(js_cache())).unwrap();
    assert!(
        changes.iter().all(|c| matches!(c, Change::Loaded(..))),
        "{changes:?}"
    );
    let event = empty_event();
    let ok = plugins.transform("ok", &event, None).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ok.body).unwrap(),
        json!({"entity": "order", "data": {}})
    );

    let refused = plugins
        .transform("fetch", &event, None)
        .expect_err("a request must not be granted");
    let text = refused.to_string();
    assert!(
        matches!(&refused, PluginError::Trap { plugin, kind: TrapKind::Other(_), .. } if plugin == "fetch"),
        "{text}"
    );
    assert!(
        text.contains("wasi:http/outgoing-handler") && text.contains("not granted"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.requests().is_empty(), "nothing was sent");

    // Clocks and randomness work (and console output is discarded); a
    // timer never fires, since the call is over when the export returns.
    let report = |name: &str| -> serde_json::Value {
        let out = plugins.transform(name, &event, None).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    };
    let clock = report("clock");
    let now = wasmhook::clock::now_ms() as f64;
    assert!(
        (clock["now"].as_f64().unwrap() - now).abs() < 60_000.0,
        "{clock}"
    );
    assert_eq!(clock["bytes"].as_array().unwrap().len(), 8, "{clock}");
    assert_eq!(report("timer"), json!({"fired": false}));

    // A plain exception, not the WIT `error` variant, fails the call too.
    let thrown = plugins.transform("throw", &event, None).unwrap_err();
    assert!(thrown.to_string().contains("plugin \"throw\""), "{thrown}");
}
