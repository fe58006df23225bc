//! Scheduled webhooks: cron runs through the same signing, retries and DLQ.
//! Schedules here use six-field expressions (seconds first) so a test waits
//! seconds, not minutes; every assertion waits on a condition.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

use crate::utils::{python_verify, InProcess, Received, TestReceiver};

const SECRET: &str = "schedule-test-secret";

fn config(receiver: &TestReceiver, cron: &str, extra: &str) -> String {
    format!(
        "[webhooks.signing]\nsecret = \"{SECRET}\"\n\n\
         [[schedule]]\nname = \"tick\"\ncron = \"{cron}\"\nurl = \"{}\"\n\
         body = {{ report = \"tick\", at = \"{{{{ _timestamp }}}}\", schedule = \"{{{{ name }}}}\" }}\n\
         headers = {{ Idempotency-Key = \"{{{{ _event_id }}}}\" }}\n\
         retry = {{ max_attempts = 3, initial_delay = \"50ms\", max_delay = \"200ms\" }}\n{extra}",
        receiver.url("/scheduled/tick")
    )
}

fn scheduled_at(request: &Received) -> DateTime<Utc> {
    let at = request.json()["at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    DateTime::parse_from_rfc3339(&at)
        .unwrap_or_else(|e| panic!("{at:?} is RFC 3339: {e}"))
        .to_utc()
}

#[tokio::test]
async fn a_schedule_delivers_signed_rendered_runs_and_retries_a_500() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[500]);
    let wasmhook = InProcess::start(&config(&receiver, "* * * * * *", "")).await;
    let got = receiver
        .wait_until(
            "the 500 retried and two more runs",
            Duration::from_secs(20),
            |r| r.iter().filter(|r| r.status == 200).count() >= 3,
        )
        .await;
    wasmhook.stop().await;

    // The first run got the scripted 500 and was retried: same delivery id
    // and body, answered 200.
    let failed = got
        .iter()
        .find(|r| r.status == 500)
        .expect("the scripted 500");
    let retried = got
        .iter()
        .find(|r| {
            r.status == 200
                && r.header("x-wasmhook-delivery") == failed.header("x-wasmhook-delivery")
        })
        .expect("the failed run is retried");
    assert_eq!(retried.body, failed.body);

    // Every request is signed with the configured secret.
    let items: Vec<_> = got
        .iter()
        .map(|r| {
            (
                r.header("x-wasmhook-signature").to_string(),
                r.header("x-wasmhook-timestamp").to_string(),
                r.body.clone(),
            )
        })
        .collect();
    assert_eq!(python_verify(SECRET, &items), vec![true; items.len()]);

    // Bodies and headers are rendered from the run: whole seconds, one run
    // per second, the stable event id as the idempotency key.
    let mut runs = BTreeSet::new();
    for request in &got {
        let body = request.json();
        assert_eq!(body["report"], "tick", "{body}");
        assert_eq!(body["schedule"], "tick", "{body}");
        let at = scheduled_at(request);
        assert_eq!(at.nanosecond(), 0, "{at}");
        let at_text = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        assert_eq!(
            request.header("idempotency-key"),
            format!("schedule:tick@{at_text}")
        );
        runs.insert(at);
    }
    assert!(runs.len() >= 3, "{runs:?}");
    // Within the last minute: the runs are the current ones, not stale.
    let oldest = *runs.iter().next().unwrap_or(&Utc::now());
    assert!(
        Utc::now() - oldest < chrono::TimeDelta::seconds(60),
        "{oldest}"
    );
}

#[tokio::test]
async fn a_run_the_receiver_refuses_lands_in_the_dlq_and_bus_events_cannot_reach_it() {
    let receiver = TestReceiver::start().await;
    receiver.set_status(400);
    let wasmhook = InProcess::start(&config(&receiver, "* * * * * *", "")).await;

    // An event that names the schedule as its entity is not a run.
    let (status, routed) = wasmhook
        .post_events(json!({"entity": "tick", "op": "SCHEDULED", "data": {}}).to_string())
        .await;
    assert_eq!(status, 202);
    assert_eq!(routed["events"][0]["deliveries"], json!([]), "{routed}");

    let mut entries = Vec::new();
    for _ in 0..400 {
        entries = wasmhook
            .get_json("/admin/dlq")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = entries.first().expect("a refused run reaches the DLQ");
    assert_eq!(entry["observer"], "schedule:tick", "{entry}");
    assert_eq!(entry["last_status"], 400, "{entry}");
    // 400 is not retried.
    assert_eq!(entry["attempts"], 1, "{entry}");
    let event_id = entry["event_id"].as_str().unwrap_or_default();
    assert!(event_id.starts_with("schedule:tick@"), "{entry}");
    assert!(receiver
        .requests()
        .iter()
        .all(|r| r.path == "/scheduled/tick"));
    wasmhook.stop().await;
}

/// A six-field expression matching only the second `at` (of its date, every
/// year).
fn only_at(at: DateTime<Utc>) -> String {
    format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    )
}

#[tokio::test]
async fn a_run_missed_while_stopped_is_fired_once_at_the_next_start() {
    let receiver = TestReceiver::start().await;
    // A run a few seconds ahead, that the first process will not live to see.
    let run = (Utc::now() + chrono::TimeDelta::seconds(4))
        .with_nanosecond(0)
        .unwrap_or_else(Utc::now);
    let text = config(&receiver, &only_at(run), "");
    let wasmhook = InProcess::start(&text).await;
    // Up long enough to record that it started before the run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = wasmhook.stop().await;
    assert!(
        Utc::now() < run,
        "the test machine is too slow for this test"
    );
    while Utc::now() < run + chrono::TimeDelta::milliseconds(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.requests().is_empty());

    let wasmhook = InProcess::start_in(&text, dir).await;
    let got = receiver
        .wait_until("the missed run", Duration::from_secs(10), |r| !r.is_empty())
        .await;
    assert_eq!(scheduled_at(&got[0]), run);
    let dir = wasmhook.stop().await;

    // Marked as done: a third start does not fire it again.
    let wasmhook = InProcess::start_in(&text, dir).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wasmhook.stop().await;
    assert_eq!(receiver.requests().len(), 1, "{:?}", receiver.requests());
}

#[test]
fn check_lists_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmhook.toml");
    std::fs::write(
        &path,
        "[[schedule]]\nname = \"daily-report\"\ncron = \"0 9 * * *\"\n\
         url = \"http://127.0.0.1:3002/webhooks/scheduled/daily-report\"\n",
    )
    .unwrap();
    let (code, out, err) =
        crate::utils::wasmhook(&["check", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("observers: 0"), "{out}");
    assert!(
        out.contains("daily-report : \"0 9 * * *\" UTC, next "),
        "{out}"
    );
    assert!(
        out.contains("-> POST http://127.0.0.1:3002/webhooks/scheduled/daily-report"),
        "{out}"
    );
}

/// One-off scheduled deliveries (Hasura's one-off scheduled events): added
/// with the CLI while `run` runs, sent once at their time although the
/// process restarted in between, listed, and cancelled into the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_delivery_fires_once_at_its_time_after_a_restart() {
    use crate::utils::{free_port, wasmhook, Running};
    let receiver = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"adm\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.signing]\nsecret = \"s3cret\"\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            receiver.url("/orders")
        ),
    )
    .unwrap();
    let config = config_path.to_str().unwrap().to_string();
    let schedule = |args: &[&str]| {
        let mut all = vec!["schedule", "--config", config.as_str()];
        all.extend_from_slice(args);
        wasmhook(&all, dir.path())
    };
    let mut running = Running::start(&config_path, dir.path(), port).await;
    let added = std::time::Instant::now();
    let url = receiver.url("/once");
    let (code, out, err) = schedule(&[
        "add",
        "--at",
        "+4s",
        "--url",
        &url,
        "--body",
        r#"{"report": "daily"}"#,
        "--header",
        "X-Kind=report",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let (code, out, err) = schedule(&["add", "--at", "+1h", "--url", &url]);
    assert_eq!(code, 0, "{err}");
    let later = out.split_whitespace().nth(1).unwrap().to_string();
    let (code, out, err) = schedule(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["due_at"].is_string()));

    let (code, _, err) = schedule(&["cancel", &later]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = schedule(&["list", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (_, out, _) = wasmhook(&["dlq", "--config", &config, "list", "--json"], dir.path());
    let dlq: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dlq[0]["id"], later.as_str());
    assert_eq!(dlq[0]["reason"], "cancelled by an operator");
    let (code, _, err) = schedule(&["cancel", &later]);
    assert_eq!(code, 1);
    assert!(err.contains("already been delivered or has died"), "{err}");

    // A restart before its time: it is still sent, once, and not early.
    assert_eq!(running.terminate(), 0);
    let _running = Running::start(&config_path, dir.path(), port).await;
    let got = receiver
        .wait_until("the one-off delivery", Duration::from_secs(20), |r| {
            r.iter().any(|r| r.path == "/once")
        })
        .await;
    let once = got.iter().find(|r| r.path == "/once").unwrap();
    assert!(
        once.at.duration_since(added) >= Duration::from_millis(3900),
        "sent {:?} after it was added, before its time",
        once.at.duration_since(added)
    );
    assert_eq!(once.json(), json!({"report": "daily"}));
    assert_eq!(once.header("x-kind"), "report");
    assert_eq!(once.header("x-wasmhook-delivery"), id);
    assert!(
        once.header("x-wasmhook-signature").starts_with("sha256="),
        "signed like every delivery"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.on("/once").len(), 1, "once");
    let (_, out, _) = schedule(&["list"]);
    assert!(out.contains("no one-off deliveries are waiting"), "{out}");

    for (args, expected) in [
        (
            vec!["add", "--at", "tomorrow", "--url", url.as_str()],
            "--at: \"tomorrow\"",
        ),
        (
            vec!["add", "--at", "+1s", "--url", "ftp://x"],
            "url: \"ftp://x\" is not an http or https URL",
        ),
        (
            vec![
                "add",
                "--at",
                "+1s",
                "--url",
                url.as_str(),
                "--header",
                "nope",
            ],
            "--header: \"nope\"",
        ),
    ] {
        let (code, _, err) = schedule(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
