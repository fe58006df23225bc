//! The delivery log through the real binary: `wasmhook deliveries list,
//! show, resend` while `run` holds the database (the admin API) and after
//! it stopped (directly), and the answers to bad input.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::utils::{
    fraiseql_order, free_port, post, python_standard_verify, wasmhook, Running, TestReceiver,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `wasmhook deliveries ARGS --json` as JSON; panics on a failed command.
fn deliveries(config: &str, dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["deliveries", "--config", config];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = wasmhook(&all, dir);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn count(listing: &Value, status: &str) -> usize {
    listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == status)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_listed_shown_and_resent_while_running_and_after() {
    let receiver = TestReceiver::start().await;
    // Events that carry "refuse" are answered 400 and die at once.
    receiver.answer_when(Some(("refuse", 400)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"adm\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.signing]\nscheme = \"standard-webhooks\"\nsecret = \"{SECRET}\"\n\
             [webhooks.retry]\nmax_attempts = 2\ninitial_delay = \"20ms\"\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n\
             [[observer]]\nname = \"audit\"\nentity = \"order\"\n[[observer.webhook]]\nname = \"audit-log\"\nurl = \"{}\"\n",
            receiver.url("/orders"),
            receiver.url("/audit")
        ),
    )
    .unwrap();
    let config = config_path.to_str().unwrap().to_string();
    let mut running = Running::start(&config_path, dir.path(), port).await;
    let (ok, refused) = (
        fraiseql_order("created", json!({"id": "ok"}), None),
        fraiseql_order("created", json!({"id": "refuse"}), None),
    );
    let (status, answer) = post(&running.url("/events"), format!("{ok}\n{refused}")).await;
    assert_eq!(status, 202, "{answer}");
    let ok_event = answer["events"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string();

    // While `run` holds the database the CLI goes through the admin API.
    let mut all = deliveries(&config, dir.path(), &["list"]);
    for _ in 0..100 {
        if count(&all, "delivered") == 2 && count(&all, "dead") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        all = deliveries(&config, dir.path(), &["list"]);
    }
    assert_eq!(
        (count(&all, "delivered"), count(&all, "dead")),
        (2, 2),
        "{all:#}"
    );
    for key in [
        "id",
        "event_id",
        "observer",
        "webhook",
        "webhook_index",
        "url",
        "status",
        "attempts",
        "last_status",
        "created_at",
        "finished_at",
    ] {
        assert!(all[0].get(key).is_some(), "missing {key}: {}", all[0]);
    }
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let listed = |args: &[&str]| {
        deliveries(&config, dir.path(), args)
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed(&["list", "--status", "dead"]), 2);
    assert_eq!(listed(&["list", "--observer", "audit"]), 2);
    assert_eq!(listed(&["list", "--event", &ok_event]), 2);
    assert_eq!(listed(&["list", "--limit", "1"]), 1);
    assert_eq!(listed(&["list", "--since", "1h"]), 4);
    assert_eq!(listed(&["list", "--until", "1h"]), 0);

    let delivered = deliveries(
        &config,
        dir.path(),
        &["list", "--event", &ok_event, "--observer", "orders"],
    );
    let id = delivered[0]["id"].as_str().unwrap().to_string();
    assert_eq!(delivered[0]["webhook"], "0");
    let audit = deliveries(
        &config,
        dir.path(),
        &["list", "--observer", "audit", "--status", "delivered"],
    );
    assert_eq!(audit[0]["webhook"], "audit-log");
    let (code, text, err) = wasmhook(
        &["deliveries", "--config", &config, "show", &id],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    for expected in [
        "status    delivered",
        &ok_event,
        "HTTP 200",
        "thanks",
        "webhook-id",
    ] {
        // Signature headers are added at each attempt, not stored: the
        // stored request has no webhook-id.
        if expected == "webhook-id" {
            assert!(!text.contains(expected), "{text}");
        } else {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }
    let dead = deliveries(
        &config,
        dir.path(),
        &["list", "--status", "dead", "--observer", "orders"],
    );
    let dead_id = dead[0]["id"].as_str().unwrap();
    let shown = deliveries(&config, dir.path(), &["show", dead_id]);
    assert!(
        shown["reason"].as_str().unwrap().contains("HTTP 400"),
        "{shown}"
    );
    assert_eq!(shown["timeline"].as_array().unwrap().len(), 1);
    assert_eq!(shown["timeline"][0]["status"], 400);
    assert!(shown["request"]["body"]
        .as_str()
        .unwrap()
        .contains("refuse"));

    // A resend: the same delivery id, signed anew (a later timestamp).
    let first = receiver
        .on("/orders")
        .into_iter()
        .find(|r| r.header("x-wasmhook-delivery") == id)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out, err) = wasmhook(
        &["deliveries", "--config", &config, "resend", &id],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("resent {id}")), "{out}");
    let got = receiver
        .wait_until("the resent delivery", Duration::from_secs(10), |r| {
            r.iter()
                .filter(|r| r.header("x-wasmhook-delivery") == id)
                .count()
                == 2
        })
        .await;
    let again = got
        .iter()
        .filter(|r| r.header("x-wasmhook-delivery") == id)
        .nth(1)
        .unwrap();
    assert_eq!(again.header("webhook-id"), id);
    assert!(
        again.header("webhook-timestamp").parse::<u64>().unwrap()
            > first.header("webhook-timestamp").parse::<u64>().unwrap()
    );
    assert_eq!(again.body, first.body);
    let verdicts = python_standard_verify(
        SECRET,
        &[(
            again.header("webhook-id").to_string(),
            again.header("webhook-timestamp").to_string(),
            again.header("webhook-signature").to_string(),
            again.body.clone(),
        )],
    );
    assert_eq!(verdicts, [true]);
    let mut shown = deliveries(&config, dir.path(), &["show", &id]);
    for _ in 0..100 {
        if shown["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        shown = deliveries(&config, dir.path(), &["show", &id]);
    }
    assert_eq!(shown["status"], "delivered");
    assert_eq!(shown["attempts"], 2, "both rounds in the timeline: {shown}");

    // Resend by filter: the audit webhook's deliveries, dead ones too
    // (out of the DLQ), now that the receiver takes everything.
    receiver.answer_when(None);
    let before = receiver.on("/audit").len();
    let (code, out, err) = wasmhook(
        &[
            "deliveries",
            "--config",
            &config,
            "resend",
            "--observer",
            "audit",
            "--since",
            "1h",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resent 2 deliveries"), "{out}");
    receiver
        .wait_until(
            "the resent audit deliveries",
            Duration::from_secs(10),
            |r| r.iter().filter(|r| r.path == "/audit").count() == before + 2,
        )
        .await;
    let (code, out, _) = wasmhook(&["dlq", "--config", &config, "list", "--json"], dir.path());
    assert_eq!(code, 0);
    let dlq: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        dlq.as_array().unwrap().len(),
        1,
        "only the orders one is left: {dlq}"
    );

    // Bad input names the problem.
    for (args, expected) in [
        (
            vec!["list", "--status", "done"],
            "--status: \"done\" is not a status",
        ),
        (vec!["list", "--since", "yesterday"], "--since"),
        (vec!["show", "no-such-id"], "no delivery with id no-such-id"),
        (vec!["resend"], "give a delivery id, or filters"),
    ] {
        let mut all = vec!["deliveries", "--config", &config];
        all.extend(args.iter().copied());
        let (code, _, err) = wasmhook(&all, dir.path());
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let client = reqwest::Client::new();
    for (path, status, expected) in [
        ("/admin/deliveries?since=yesterday", 400, "since"),
        ("/admin/deliveries?colour=red", 400, "colour"),
        ("/admin/deliveries/no-such-id", 404, "no-such-id"),
    ] {
        let response = client
            .get(running.url(path))
            .bearer_auth("adm")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(expected),
            "{path}: {body}"
        );
    }
    let page: Value = client
        .get(running.url("/admin/deliveries?limit=3"))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = page["next"].as_str().unwrap();
    let rest: Value = client
        .get(running.url(&format!("/admin/deliveries?before={next}")))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["deliveries"].as_array().unwrap().len() + rest["deliveries"].as_array().unwrap().len(),
        4,
        "{page} {rest}"
    );

    // Stopped: the CLI reads the log directly.
    assert_eq!(running.terminate(), 0);
    let after = deliveries(&config, dir.path(), &["list"]);
    assert_eq!(count(&after, "delivered"), 3, "{after:#}");
    assert_eq!(count(&after, "dead"), 1);
}
