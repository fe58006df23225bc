//! Secrets never leak: a real run with every secret-bearing option, failing
//! deliveries, refused incoming webhooks and the admin API and CLI used, then
//! a search of everything wasmhook wrote or answered for each secret.

use std::time::Duration;

use serde_json::json;

use crate::utils::{free_port, post, wasmhook_env, Running, TestReceiver};

const SIGNING: &str = "sgn-secret-5f1c9a";
const ROTATED: &str = "sgn-old-secret-77e2d0";
const STANDARD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ENCRYPTION: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const ADMIN: &str = "adm-token-3b8e41";
const BEARER: &str = "bearer-token-9d2c6a";
const QUERY: &str = "query-token-4a7f13";
const INCOMING: &str = "gh-incoming-secret-0c5e88";
const INGEST: &str = "ingest-token-61d0b2";
const PROXY: &str = "proxy-password-2e9b7c";

#[tokio::test]
async fn no_secret_reaches_logs_metrics_dlq_listings_or_errors() {
    let receiver = TestReceiver::start().await;
    // Everything fails: retries, then the DLQ.
    receiver.set_status(500);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"${{ADMIN}}\"\ningest_token = \"${{INGEST}}\"\n[storage]\npath = \"db\"\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.signing]\nsecrets = [\"${{SIGNING}}\", \"{ROTATED}\"]\n\
             [webhooks.retry]\nmax_attempts = 2\ninitial_delay = \"10ms\"\n\
             [webhooks.incoming.github]\npath = \"/webhooks/github\"\nscheme = \"github\"\nsecret = \"${{INCOMING}}\"\n\
             [[observer]]\nname = \"users\"\nentity = \"user\"\n\
             [[observer.webhook]]\nurl = \"{}?token={QUERY}\"\nheaders = {{ Authorization = \"Bearer ${{BEARER}}\" }}\n\
             body = {{ id = \"{{{{ id }}}}\", email = \"{{{{ email }}}}\" }}\n\
             encryption = {{ algorithm = \"AES-256-GCM\", key = \"${{KEY}}\", fields = [\"email\"] }}\n\
             [[observer.webhook]]\nurl = \"{}\"\nsigning = {{ scheme = \"standard-webhooks\", secret = \"{STANDARD}\" }}\n\
             [[observer.webhook]]\nurl = \"http://127.0.0.1:1/refused?api_key={QUERY}\"\n\
             [[observer.webhook]]\nurl = \"http://127.0.0.1:1/proxied\"\nproxy = \"http://relay:${{PROXY}}@127.0.0.1:1\"\n",
            receiver.url("/users"),
            receiver.url("/std")
        ),
    )
    .unwrap();
    let env = [
        ("ADMIN", ADMIN),
        ("SIGNING", SIGNING),
        ("BEARER", BEARER),
        ("KEY", ENCRYPTION),
        ("INCOMING", INCOMING),
        ("INGEST", INGEST),
        ("PROXY", PROXY),
    ];
    let running = Running::start_with_env(&config, dir.path(), port, &env).await;
    let events: Vec<String> = (0..5)
        .map(|i| {
            json!({"entity": "user", "op": "INSERT", "data": {"id": i, "email": format!("u{i}@x")}})
                .to_string()
        })
        .collect();
    let ingest = |body: String| {
        reqwest::Client::new()
            .post(running.url("/events"))
            .bearer_auth(INGEST)
            .body(body)
            .send()
    };
    let accepted = ingest(events.join("\n")).await.unwrap();
    assert_eq!(accepted.status(), 202);
    // A bad event, a wrong ingest token and refused incoming webhooks
    // produce error answers.
    let mut answers = Vec::new();
    let bad = ingest("{\"nope\": 1}".into()).await.unwrap();
    answers.push(bad.text().await.unwrap());
    let (status, answer) = post(&running.url("/events"), "{\"nope\": 1}").await;
    assert_eq!(status, 401);
    answers.push(answer.to_string());
    let refused = reqwest::Client::new()
        .post(running.url("/webhooks/github"))
        .header("X-Hub-Signature-256", "sha256=00")
        .header("X-GitHub-Event", "push")
        .body("{}")
        .send()
        .await
        .unwrap();
    answers.push(refused.text().await.unwrap());
    let unauthorized = reqwest::get(running.url("/admin/dlq")).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    answers.push(unauthorized.text().await.unwrap());

    // Wait for every delivery to die (15 deliveries, 2 attempts each; one
    // webhook's port refuses connections).
    let client = reqwest::Client::new();
    let mut listing = String::new();
    for _ in 0..200 {
        listing = client
            .get(running.url("/admin/dlq"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if serde_json::from_str::<serde_json::Value>(&listing)
            .map(|v| v.as_array().map_or(0, Vec::len))
            .unwrap_or(0)
            >= 20
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entries: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 20, "{listing}");
    let first = entries[0]["id"].as_str().unwrap().to_string();
    assert!(
        listing.contains("token=***"),
        "the URL is shown, its token hidden: {listing}"
    );
    let metrics = reqwest::get(running.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The CLI, through the admin API, and the check command.
    let config_arg = config.to_str().unwrap();
    let mut outputs = vec![listing, metrics];
    outputs.extend(answers);
    for args in [
        vec!["dlq", "--config", config_arg, "list"],
        vec!["dlq", "--config", config_arg, "list", "--json"],
        vec!["dlq", "--config", config_arg, "show", first.as_str()],
        vec!["check", "--config", config_arg],
    ] {
        let (code, out, err) = wasmhook_env(&args, dir.path(), &env);
        assert_eq!(code, 0, "{args:?}: {err}");
        outputs.push(out);
        outputs.push(err);
    }
    let shown = outputs[outputs.len() - 4].clone();
    assert!(
        shown.contains("\"Authorization\""),
        "dlq show still shows which headers: {shown}"
    );
    drop(running);
    // Every log line the process wrote, at debug level.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            outputs.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    let all = outputs.join("\n");
    assert!(all.len() > 1000, "something was written");
    for secret in [
        INGEST,
        SIGNING,
        ROTATED,
        STANDARD,
        &STANDARD[6..],
        ENCRYPTION,
        ADMIN,
        BEARER,
        QUERY,
        INCOMING,
        PROXY,
    ] {
        let holder = outputs.iter().find(|o| o.contains(secret));
        assert!(
            holder.is_none(),
            "{secret} leaked in:\n{}",
            holder.map_or("", |h| h.as_str())
        );
    }
}

/// The buses' credentials (a NATS token and password, a PostgreSQL and a
/// Redis password) stay out of `check`, of the errors of a refused
/// connection and of the debug log, whether they sit in keys or in URLs.
#[tokio::test]
async fn bus_credentials_stay_out_of_check_errors_and_logs() {
    const NATS_TOKEN: &str = "nats-token-7c1e55";
    const NATS_PASSWORD: &str = "nats-pass-2b9f04";
    const PG_PASSWORD: &str = "pg-pass-5d3a7e";
    const REDIS_PASSWORD: &str = "redis-pass-8e6c12";
    let dir = tempfile::tempdir().unwrap();
    // A server that wants another token: the connection is refused.
    let nats = crate::utils::NatsServer::start().await.unwrap();
    let mut outputs = Vec::new();
    for (name, observers) in [
        (
            "nats",
            format!(
                "backend = \"nats\"\nnats_url = \"nats://app:{NATS_PASSWORD}@127.0.0.1:{}\"",
                nats.port
            ),
        ),
        (
            "nats-token",
            format!(
                "backend = \"jetstream\"\nnats_url = \"{}\"\ntoken = \"${{NATS_TOKEN}}\"",
                nats.url()
            ),
        ),
        (
            "postgres",
            format!(
                "backend = \"postgres\"\npostgres_url = \"postgres://app:{PG_PASSWORD}@127.0.0.1:{}/app?sslmode=require\"",
                free_port()
            ),
        ),
        (
            "redis",
            format!(
                "backend = \"redis-streams\"\nredis_url = \"rediss://app:{REDIS_PASSWORD}@127.0.0.1:{}\"",
                free_port()
            ),
        ),
    ] {
        let port = free_port();
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{name}\"\n\
                 [observers]\n{observers}\n\
                 [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"http://127.0.0.1:9/x\"\n"
            ),
        )
        .unwrap();
        let env = [("NATS_TOKEN", NATS_TOKEN)];
        let (code, out, err) =
            wasmhook_env(&["check", "--config", config.to_str().unwrap()], dir.path(), &env);
        assert_eq!(code, 0, "{name}: {out}{err}");
        outputs.push(out);
        outputs.push(err);
        // Running against a server that refuses or is not there: errors
        // and retries are logged at debug level.
        let running = Running::start_with_env(&config, dir.path(), port, &env).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        outputs.push(running.log());
    }
    let all = outputs.join("\n");
    assert!(
        all.contains("reconnecting") || all.contains("NATS"),
        "the failures were logged: {all}"
    );
    for secret in [NATS_TOKEN, NATS_PASSWORD, PG_PASSWORD, REDIS_PASSWORD] {
        let holder = outputs.iter().find(|o| o.contains(secret));
        assert!(
            holder.is_none(),
            "{secret} leaked in:\n{}",
            holder.map_or("", |h| h.as_str())
        );
    }
}
