//! TLS to the buses, with certificates made by the test: a private
//! PostgreSQL cluster that accepts TCP only over TLS.

use std::time::Duration;

use serde_json::json;
use wasmhook_testkit::{PgOptions, TestCa};

use crate::utils::{delivered, fraiseql_order, free_port, readyz, wasmhook, Running, TestReceiver};

/// The PostgreSQL sources and `wasmhook pg install` over `sslmode=verify-full`
/// with the cluster's private CA; a wrong CA and a connection without TLS
/// are refused, the source named in the log, and `/readyz` stays 503.
#[tokio::test]
async fn postgres_sources_use_verified_tls_and_refuse_what_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "pg").unwrap();
    let server = ca.server("pg-server", &["localhost", "127.0.0.1"]).unwrap();
    let pg = PgOptions::new().tls_only(server).start().await.unwrap();
    let db = pg.client().await.unwrap();
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
        .await
        .unwrap();
    let verified = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port,
        ca.ca_file().display()
    );
    // The event log installed over TLS by the CLI.
    let (code, out, err) = wasmhook(
        &["pg", "install", "--dsn", &verified, "--table", "orders"],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}{err}");

    let receiver = TestReceiver::start().await;
    let start = |name: &str, backend: &str, url: &str| {
        let port = free_port();
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{name}\"\n\
                 [observers]\nbackend = \"{backend}\"\npostgres_url = \"{url}\"\npoll_interval = \"100ms\"\n\
                 [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
                 [[observer]]\nname = \"orders\"\nentity = \"orders\"\n\
                 [[observer.webhook]]\nurl = \"{}\"\n",
                receiver.url(&format!("/{name}"))
            ),
        )
        .unwrap();
        let dir = dir.path().to_path_buf();
        async move { Running::start(&config, &dir, port).await }
    };

    let log = start("log", "postgres-log", &verified).await;
    readyz(&log.url("/readyz"), 200).await;
    db.batch_execute("INSERT INTO orders VALUES (1, 'paid')")
        .await
        .unwrap();
    let listen = start(
        "listen",
        "postgres",
        &format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            pg.port,
            ca.ca_file().display()
        ),
    )
    .await;
    readyz(&listen.url("/readyz"), 200).await;
    let event = json!({"entity": "orders", "op": "INSERT", "data": {"id": 2}}).to_string();
    db.execute("SELECT pg_notify('fraiseql_events', $1)", &[&event])
        .await
        .unwrap();
    receiver
        .wait_until("both sources' deliveries", Duration::from_secs(30), |r| {
            delivered(r).len() == 2
        })
        .await;

    // A CA that did not sign the server's certificate, and no TLS at all.
    let other = TestCa::new(dir.path(), "other").unwrap();
    let wrong_ca = start(
        "wrong-ca",
        "postgres",
        &format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
            pg.port,
            other.ca_file().display()
        ),
    )
    .await;
    let plain = start(
        "plain",
        "postgres",
        &format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (running, name, expected) in [
        (&wrong_ca, "wrong-ca", "certificate"),
        (&plain, "plain", "no encryption"),
    ] {
        let status = reqwest::get(running.url("/readyz")).await.unwrap().status();
        assert_eq!(status.as_u16(), 503, "{name}");
        let log = running.log();
        assert!(
            log.contains("PostgreSQL LISTEN") && log.contains(expected),
            "{name}: {log}"
        );
    }
}

/// A running wasmhook whose `[observers]` section is `observers`, delivering
/// every `order` event to `receiver`'s `/PATH` (PATH = `name`).
async fn run_with(
    dir: &std::path::Path,
    name: &str,
    observers: &str,
    receiver: &TestReceiver,
) -> Running {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{name}\"\n\
             [observers]\n{observers}\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [[observer]]\nname = \"orders\"\nentity = \"order\"\n\
             [[observer.webhook]]\nurl = \"{}\"\n",
            receiver.url(&format!("/{name}"))
        ),
    )
    .unwrap();
    Running::start(&config, dir, port).await
}

/// Redis pub/sub and Streams over `rediss://` with a private CA, on a
/// server that requires a client certificate: delivered with the `tls`
/// table's certificate, never ready without it.
#[tokio::test]
async fn redis_over_tls_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "redis").unwrap();
    let server = ca
        .server("redis-server", &["localhost", "127.0.0.1"])
        .unwrap();
    let client = ca.client("redis-client", "wasmhook").unwrap();
    let redis = wasmhook_testkit::RedisServer::start_tls(
        free_port(),
        &dir.path().join("redis"),
        server,
        &ca.ca_file(),
        true,
    )
    .await
    .unwrap();
    let tls = format!(
        "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}",
        ca.ca_file().display(),
        client.cert.display(),
        client.key.display()
    );
    let receiver = TestReceiver::start().await;
    let pubsub = run_with(
        dir.path(),
        "pubsub",
        &format!(
            "backend = \"redis\"\nredis_url = \"{}\"\nchannels = [\"orders\"]\n{tls}",
            redis.url()
        ),
        &receiver,
    )
    .await;
    let streams = run_with(
        dir.path(),
        "streams",
        &format!(
            "backend = \"redis-streams\"\nredis_url = \"{}\"\nstream = \"orders\"\n{tls}",
            redis.url()
        ),
        &receiver,
    )
    .await;
    let no_cert = run_with(
        dir.path(),
        "nocert",
        &format!(
            "backend = \"redis-streams\"\nredis_url = \"{}\"\nstream = \"orders\"\ntls = {{ ca_file = \"{}\" }}",
            redis.url(),
            ca.ca_file().display()
        ),
        &receiver,
    )
    .await;
    readyz(&pubsub.url("/readyz"), 200).await;
    readyz(&streams.url("/readyz"), 200).await;

    // Published by redis-cli over TLS with the same client certificate.
    let event = fraiseql_order("created", json!({"id": 1}), None).to_string();
    for args in [
        vec!["PUBLISH", "orders", event.as_str()],
        vec!["XADD", "orders", "*", "payload", event.as_str()],
    ] {
        let output = std::process::Command::new("redis-cli")
            .args(["--tls", "-h", "localhost", "-p", &redis.port.to_string()])
            .arg("--cacert")
            .arg(ca.ca_file())
            .arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let got = receiver
        .wait_until("both sources' deliveries", Duration::from_secs(30), |r| {
            r.len() >= 2
        })
        .await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/pubsub", "/streams"]);
    let status = reqwest::get(no_cert.url("/readyz")).await.unwrap().status();
    assert_eq!(status.as_u16(), 503, "no client certificate, no connection");
}

/// nats-server with TLS (a private CA) and, separately, token,
/// user/password, nkey and operator (JWT) authorization: the core and
/// JetStream sources connect with the matching `[observers]` keys, a
/// `.creds` file among them; a wrong token never does.
#[tokio::test]
async fn nats_over_tls_and_with_each_kind_of_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "nats").unwrap();
    let server = ca
        .server("nats-server", &["localhost", "127.0.0.1"])
        .unwrap();
    let user = nkeys::KeyPair::new_user();
    let seed_file = dir.path().join("user.nk");
    std::fs::write(&seed_file, user.seed().unwrap()).unwrap();
    let receiver = TestReceiver::start().await;
    let publish = |url: String, options: async_nats::ConnectOptions, subject: &'static str| async move {
        let client = options.connect(url).await.unwrap();
        let event = fraiseql_order("created", json!({"id": 1}), None).to_string();
        client.publish(subject, event.into()).await.unwrap();
        client.flush().await.unwrap();
    };
    let seed = user.seed().unwrap();
    let operator = Operator::new();
    let creds = operator.user_creds("app");
    let creds_file = dir.path().join("app.creds");
    std::fs::write(&creds_file, &creds).unwrap();
    let ca_file = ca.ca_file();
    let client_options = |name: &str| match name {
        "tls" => async_nats::ConnectOptions::new()
            .add_root_certificates(ca_file.clone())
            .require_tls(true),
        "token" => async_nats::ConnectOptions::with_token("s3cret-token".into()),
        "user" => async_nats::ConnectOptions::with_user_and_password("app".into(), "pa55".into()),
        "creds" => async_nats::ConnectOptions::with_credentials(&creds).unwrap(),
        _ => async_nats::ConnectOptions::with_nkey(seed.clone()),
    };
    let cases: Vec<(&str, String, String)> = vec![
        (
            "tls",
            format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}",
                server.cert.display(),
                server.key.display()
            ),
            format!("tls = {{ ca_file = \"{}\" }}", ca.ca_file().display()),
        ),
        (
            "token",
            "authorization {\n  token: \"s3cret-token\"\n}".into(),
            "token = \"s3cret-token\"".into(),
        ),
        (
            "user",
            "authorization {\n  user: app\n  password: \"pa55\"\n}".into(),
            "user = \"app\"\npassword = \"pa55\"".into(),
        ),
        (
            "nkey",
            format!(
                "authorization {{\n  users: [{{ nkey: {} }}]\n}}",
                user.public_key()
            ),
            format!("nkey_seed_file = \"{}\"", seed_file.display()),
        ),
        (
            "creds",
            operator.server_config(),
            format!("credentials_file = \"{}\"", creds_file.display()),
        ),
    ];
    for (name, server_conf, observers) in cases {
        let nats = wasmhook_testkit::NatsOptions::new()
            .jetstream(dir.path().join(format!("js-{name}")))
            .config(&server_conf)
            .start()
            .await
            .unwrap();
        let url = if name == "tls" {
            format!("tls://localhost:{}", nats.port)
        } else {
            nats.url()
        };
        let core = run_with(
            dir.path(),
            &format!("{name}-core"),
            &format!("backend = \"nats\"\nnats_url = \"{url}\"\nsubjects = [\"orders.core\"]\n{observers}"),
            &receiver,
        )
        .await;
        let js = run_with(
            dir.path(),
            &format!("{name}-js"),
            &format!(
                "backend = \"jetstream\"\nnats_url = \"{url}\"\nstream = \"ORDERS\"\nsubjects = [\"orders.js\"]\n{observers}"
            ),
            &receiver,
        )
        .await;
        readyz(&core.url("/readyz"), 200).await;
        readyz(&js.url("/readyz"), 200).await;
        publish(url.clone(), client_options(name), "orders.core").await;
        publish(url.clone(), client_options(name), "orders.js").await;
        receiver
            .wait_until(name, Duration::from_secs(30), |r| {
                [format!("/{name}-core"), format!("/{name}-js")]
                    .iter()
                    .all(|path| r.iter().any(|req| &req.path == path))
            })
            .await;
        if name == "token" {
            let wrong = run_with(
                dir.path(),
                "wrong-token",
                &format!("backend = \"nats\"\nnats_url = \"{url}\"\ntoken = \"nope\""),
                &receiver,
            )
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let status = reqwest::get(wrong.url("/readyz")).await.unwrap().status();
            assert_eq!(status.as_u16(), 503, "a wrong token never connects");
        }
    }
}

/// A NATS operator with one account (JetStream enabled) and a system
/// account, as `nsc` would set them up: the server trusts the operator's
/// JWT, and a user proves itself with a `.creds` file (the user's JWT,
/// signed by the account, and the user's seed).
struct Operator {
    operator: nkeys::KeyPair,
    account: nkeys::KeyPair,
    system: nkeys::KeyPair,
}

impl Operator {
    fn new() -> Operator {
        Operator {
            operator: nkeys::KeyPair::new_operator(),
            account: nkeys::KeyPair::new_account(),
            system: nkeys::KeyPair::new_account(),
        }
    }

    /// A JWT as nats-server reads it: `ed25519-nkey` signed by `issuer`.
    fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string());
        let claims = json!({
            "jti": format!("{subject}-{name}"),
            "iat": 1_700_000_000,
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject,
            "nats": nats,
        });
        let signed = format!("{header}.{}", b64.encode(claims.to_string()));
        let signature = issuer.sign(signed.as_bytes()).unwrap();
        format!("{signed}.{}", b64.encode(signature))
    }

    /// An account's JWT; JetStream on unless it is the system account
    /// (nats-server refuses JetStream there).
    fn account_jwt(&self, account: &nkeys::KeyPair, name: &str, jetstream: bool) -> String {
        let storage = if jetstream { -1 } else { 0 };
        let nats = json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": storage, "disk_storage": storage,
                "streams": storage, "consumer": storage
            },
            "type": "account",
            "version": 2
        });
        Self::jwt(&self.operator, &account.public_key(), name, nats)
    }

    /// nats-server's trust: the operator, the system account and the
    /// accounts' JWTs in memory.
    fn server_config(&self) -> String {
        let operator = Self::jwt(
            &self.operator,
            &self.operator.public_key(),
            "test-operator",
            json!({"type": "operator", "version": 2}),
        );
        format!(
            "operator: \"{operator}\"\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: \"{system_jwt}\"\n  {account}: \"{account_jwt}\"\n}}",
            system = self.system.public_key(),
            system_jwt = self.account_jwt(&self.system, "SYS", false),
            account = self.account.public_key(),
            account_jwt = self.account_jwt(&self.account, "APP", true),
        )
    }

    /// A `.creds` file for a new user of the account, in `nsc`'s layout.
    fn user_creds(&self, name: &str) -> String {
        let user = nkeys::KeyPair::new_user();
        let nats = json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        });
        let jwt = Self::jwt(&self.account, &user.public_key(), name, nats);
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        )
    }
}
