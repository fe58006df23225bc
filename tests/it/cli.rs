//! The real binary: `check`, the `dlq` commands (while `run` runs and after),
//! and the quickstart config.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::utils::{fraiseql_order, free_port, post, wasmhook, Running, TestReceiver};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_prints_observers_or_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml");
    let (code, out, err) = wasmhook(
        &["check", "--config", quickstart.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on_order_shipped : order UPDATE"), "{out}");
    assert!(
        out.contains("when status.changed() && status == 'shipped'"),
        "{out}"
    );
    assert!(
        out.contains("-> POST http://127.0.0.1:9000/analytics"),
        "{out}"
    );

    for (text, expected) in [
        ("[[observer]]\nname = \"o\"\nentity = \"order\"\ncondition = \"status == \"\n[[observer.webhook]]\nurl = \"http://x\"\n",
         "bad.toml: observer[0] (\"o\").condition: column 11: expected a value, path or '(', found end of input"),
        ("[webhooks.signing]\nsecret = \"${WASMHOOK_TEST_UNSET_VAR}\"\n",
         "bad.toml: webhooks.signing.secret: environment variable WASMHOOK_TEST_UNSET_VAR is not set"),
        ("[webhooks]\nretry = 3\n", "bad.toml: webhooks.retry: invalid type: integer `3`, expected struct RetrySection"),
        ("[observer]\n", "bad.toml: observer: invalid type: map, expected a sequence"),
        ("[server]\nlisten = \"0.0.0.0:18080\"\n",
         "bad.toml: server.ingest_token: server.listen 0.0.0.0:18080 is reachable from other machines"),
    ] {
        let path = write(dir.path(), "bad.toml", text);
        let (code, _, err) = wasmhook(&["check", "--config", path.to_str().unwrap()], dir.path());
        assert_eq!(code, 1, "{text}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(expected), "{text}\n got: {err}\nwant: {expected}");
    }
    let (code, _, err) = wasmhook(&["check", "--config", "missing.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read config file missing.toml"),
        "{err}"
    );
}

#[tokio::test]
async fn dlq_commands_work_while_running_and_after() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write(
        dir.path(),
        "wasmhook.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"adm\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.retry]\nmax_attempts = 2\ninitial_delay = \"20ms\"\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n\
             [[observer]]\nname = \"users\"\nentity = \"user\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            receiver.url("/orders"),
            receiver.url("/users")
        ),
    );
    let config = config.to_str().unwrap().to_string();
    let mut running = Running::start(Path::new(&config), dir.path(), port).await;
    let events = [
        fraiseql_order("created", json!({"id": "a"}), None),
        fraiseql_order("created", json!({"id": "b"}), None),
        json!({"entity": "user", "op": "INSERT", "data": {"id": "u"}}),
    ];
    let body: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let (status, _) = post(&running.url("/events"), body.join("\n")).await;
    assert_eq!(status, 202);
    receiver
        .wait_until("6 failed attempts", Duration::from_secs(10), |r| {
            r.len() == 6
        })
        .await;

    // While `run` holds the database the CLI goes through the admin API.
    let list = |extra: &[&str]| {
        let mut args = vec!["dlq", "--config", &config, "list", "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = wasmhook(&args, dir.path());
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let mut entries = list(&[]);
    for _ in 0..50 {
        if entries.as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        entries = list(&[]);
    }
    assert_eq!(entries.as_array().unwrap().len(), 3, "{entries}");
    for key in [
        "id",
        "observer",
        "url",
        "event_id",
        "attempts",
        "last_status",
        "last_error",
        "failed_at",
    ] {
        assert!(
            entries[0].get(key).is_some(),
            "missing {key}: {}",
            entries[0]
        );
    }
    assert_eq!(entries[0]["last_status"], 503);
    assert_eq!(list(&["--observer", "users"]).as_array().unwrap().len(), 1);
    assert_eq!(list(&["--older-than", "1h"]).as_array().unwrap().len(), 0);

    let users_id = list(&["--observer", "users"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, _) = wasmhook(&["dlq", "--config", &config, "show", &users_id], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("\"entity_id\": \"u\""), "{out}");
    let (code, _, err) = wasmhook(&["dlq", "--config", &config, "show", "nope"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("no DLQ entry with id nope"), "{err}");

    // The receiver is fixed: retry-all of one observer delivers its entries.
    receiver.set_status(200);
    let (code, out, err) = wasmhook(
        &[
            "dlq",
            "--config",
            &config,
            "retry-all",
            "--observer",
            "orders",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("requeued 2"), "{out}");
    receiver
        .wait_until("orders redelivered", Duration::from_secs(10), |r| {
            r.iter()
                .filter(|r| r.status == 200 && r.path == "/orders")
                .count()
                == 2
        })
        .await;
    assert_eq!(list(&[]).as_array().unwrap().len(), 1);
    assert_eq!(running.terminate(), 0, "SIGTERM exits cleanly");

    // With no process running the CLI opens the database itself.
    let entries = list(&[]);
    assert_eq!(entries[0]["id"], users_id.as_str());
    let (code, out, _) = wasmhook(
        &["dlq", "--config", &config, "retry", &users_id],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(out.contains("requeued"), "{out}");
    assert_eq!(list(&[]).as_array().unwrap().len(), 0);
    // ... and the next start delivers it.
    let _running = Running::start(Path::new(&config), dir.path(), port).await;
    receiver
        .wait_until("user redelivered", Duration::from_secs(10), |r| {
            r.iter().any(|r| r.status == 200 && r.path == "/users")
        })
        .await;
    let (code, out, _) = wasmhook(&["dlq", "--config", &config, "purge"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("purged 0"), "{out}");
}

/// The binary's built-in jemalloc options (`malloc_conf` in main.rs) are
/// the ones jemalloc reads at start-up; jemalloc's `confirm_conf` lists
/// every option it applied, and where it came from.
#[test]
fn jemalloc_applies_the_built_in_options() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = crate::utils::wasmhook_env(
        &["--version"],
        dir.path(),
        &[("_RJEM_MALLOC_CONF", "confirm_conf:true")],
    );
    assert_eq!(code, 0, "{err}");
    let global = err
        .lines()
        .skip_while(|line| !line.contains("global variable malloc_conf)"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        global.contains("\"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:64\"")
            && global.contains("Set conf value: dirty_decay_ms:1000")
            && global.contains("Set conf value: muzzy_decay_ms:0")
            && global.contains("Set conf value: narenas:64"),
        "{err}"
    );
}
