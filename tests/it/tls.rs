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
    let event = fraiseql_order("created", json!({"id": 2}), None).to_string();
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
        &format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", pg.port),
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
