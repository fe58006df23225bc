//! PostgreSQL in: LISTEN/NOTIFY, and the trigger-fed event log installed by
//! the real binary (changes as webhooks with old and new rows, rows written
//! by psycopg, kill -9 mid-stream, two processes sharing the log, the
//! database restarted mid-stream). Every test initdb's its own cluster on a
//! free port, so it can stop it and nothing is shared between tests.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::utils::{
    delivered, fraiseql_order, free_port, kill_on_progress, python, readyz, wasmhook, InProcess,
    PgCluster, Received, Running, StopMode, TestReceiver,
};

/// Waits until wasmhook says its source is connected.
async fn ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(url).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WEBHOOK_RETRY: &str = "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\nmax_concurrent = 8\n[webhooks.retry]\ninitial_delay = \"10ms\"\nmax_attempts = 50\nmax_delay = \"100ms\"\n";

/// `wasmhook pg ARGS`, which must succeed; returns its stdout.
fn pg_cli(args: &[&str], cwd: &Path) -> String {
    let mut all = vec!["pg"];
    all.extend_from_slice(args);
    let (code, out, err) = wasmhook(&all, cwd);
    assert_eq!(code, 0, "wasmhook {all:?} failed: {out}{err}");
    out
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

async fn triggers_on(db: &tokio_postgres::Client, table: &str) -> i64 {
    count(
        db,
        &format!("SELECT count(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"),
    )
    .await
}

#[tokio::test]
async fn notifications_become_webhooks_and_unknown_ones_go_to_the_dlq() {
    let pg = PgCluster::start().await.unwrap();
    let db = pg.client().await.unwrap();
    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[observers]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n\
         [[observer]]\nname = \"orders\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
        pg.url(),
        receiver.url("/orders")
    ))
    .await;
    ready(&wasmhook.url("/readyz")).await;

    // As FraiseQL publishes it: NOTIFY on fraiseql_events after a mutation.
    let event = fraiseql_order("created", json!({"id": 7, "total": 10}), None).to_string();
    db.execute("SELECT pg_notify('fraiseql_events', $1)", &[&event])
        .await
        .unwrap();
    let got = receiver
        .wait_until("the order webhook", Duration::from_secs(30), |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(got[0].json(), json!({"id": 7, "total": 10}));

    // A burst from one transaction arrives together and is stored together.
    db.execute(
        "SELECT pg_notify('fraiseql_events', json_build_object(\
         'entity_type', 'Order', 'operation', 'created', 'entity', json_build_object('id', g))::text) \
         FROM generate_series(100, 299) AS g",
        &[],
    )
    .await
    .unwrap();
    let got = receiver
        .wait_until("the burst", Duration::from_secs(60), |r| {
            delivered(r).len() == 201
        })
        .await;
    assert!(delivered(&got).values().all(|&n| n == 1));

    // FraiseQL's change-log wake-up (a bare row number) is not an event:
    // skipped with a warning, not buried.
    db.execute("SELECT pg_notify('fraiseql_events', '42')", &[])
        .await
        .unwrap();
    // Not an envelope: kept in the DLQ with the reason, never dropped.
    db.execute(
        "SELECT pg_notify('fraiseql_events', '{\"hello\": \"world\"}')",
        &[],
    )
    .await
    .unwrap();
    // Another channel is not ours.
    db.execute("SELECT pg_notify('other_events', $1)", &[&event])
        .await
        .unwrap();
    let dlq = wait_for_dlq(&wasmhook).await;
    let reason = dlq[0]["reason"].as_str().unwrap();
    assert!(reason.contains("not a known envelope"), "{reason}");
    assert_eq!(dlq.len(), 1);
    assert_eq!(receiver.requests().len(), 201);
    wasmhook.stop().await;
}

async fn wait_for_dlq(wasmhook: &InProcess) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listing = wasmhook.get_json("/admin/dlq").await;
        let entries = listing.as_array().cloned().unwrap_or_default();
        if !entries.is_empty() {
            return entries;
        }
        assert!(Instant::now() < deadline, "nothing reached the DLQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pg_install_records_changes_with_both_rows_and_uninstall_reverses_it() {
    let pg = PgCluster::start().await.unwrap();
    let db = pg.client().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total int NOT NULL);\
         CREATE TABLE users (id int PRIMARY KEY, name text)",
    )
    .await
    .unwrap();
    let url = pg.url();
    let install = [
        "install", "--dsn", &url, "--table", "orders", "--table", "users",
    ];
    let out = pg_cli(&install, tmp.path());
    for line in [
        "schema wasmhook: created",
        "event log wasmhook.event_log: created",
        "trigger function wasmhook.event_log_capture: notifies channel wasmhook_events",
        "trigger on orders: created",
        "trigger on users: created",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    // Twice changes nothing.
    let out = pg_cli(&install, tmp.path());
    assert!(
        out.contains("event log wasmhook.event_log: already there"),
        "{out}"
    );
    assert!(out.contains("trigger on orders: already there"), "{out}");
    assert!(!out.contains("schema wasmhook: created"), "{out}");
    assert_eq!(triggers_on(&db, "orders").await, 1);

    // Mistakes are named, and the password is not printed.
    let secret_url = format!("postgres://postgres:s3cret@127.0.0.1:{}/postgres", pg.port);
    let (code, _, err) = wasmhook(
        &["pg", "install", "--dsn", &secret_url, "--table", "missing"],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("table missing does not exist"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let (code, _, err) = wasmhook(
        &[
            "pg",
            "install",
            "--dsn",
            &url,
            "--table",
            "wasmhook.event_log",
        ],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("is the event log itself"), "{err}");

    let receiver = TestReceiver::start().await;
    let wasmhook = InProcess::start(&format!(
        "[observers]\nbackend = \"postgres-log\"\npostgres_url = \"{url}\"\n{WEBHOOK_RETRY}\
         [[observer]]\nname = \"orders\"\nentity = \"orders\"\n[[observer.webhook]]\nurl = \"{}\"\n\
         body = {{ op = \"{{{{ _event }}}}\", row = \"{{{{ _json }}}}\", old = \"{{{{ _old }}}}\" }}\n\
         [[observer]]\nname = \"shipped\"\nentity = \"orders\"\n\
         condition = \"status.changed() && status == 'shipped'\"\n\
         [[observer.webhook]]\nurl = \"{}\"\n",
        receiver.url("/orders"),
        receiver.url("/shipped")
    ))
    .await;
    ready(&wasmhook.url("/readyz")).await;

    // Written by psycopg, as a Python service would.
    let py_url = url.clone();
    tokio::task::spawn_blocking(move || {
        python(
            "import psycopg, sys\n\
             with psycopg.connect(sys.argv[1]) as conn:\n\
             \x20   with conn.cursor() as cur:\n\
             \x20       cur.executemany('INSERT INTO orders (id, status, total) VALUES (%s, %s, %s)',\n\
             \x20                       [(1, 'new', 10), (2, 'new', 20), (3, 'new', 30)])\n",
            &[&py_url],
        )
    })
    .await
    .unwrap();
    db.batch_execute(
        "UPDATE orders SET status = 'shipped' WHERE id = 1;\
         UPDATE orders SET total = 21 WHERE id = 2;\
         UPDATE orders SET total = 11 WHERE id = 1;\
         DELETE FROM orders WHERE id = 3;\
         INSERT INTO users VALUES (1, 'ann')",
    )
    .await
    .unwrap();
    let got = receiver
        .wait_until("every change", Duration::from_secs(60), |r| {
            r.iter().filter(|r| r.path == "/orders").count() == 7
        })
        .await;
    let mut ops: Vec<(String, i64)> = got
        .iter()
        .filter(|r| r.path == "/orders")
        .map(|r| {
            let body = r.json();
            (
                body["op"].as_str().unwrap().to_string(),
                body["row"]["id"].as_i64().unwrap(),
            )
        })
        .collect();
    ops.sort();
    let expected = [
        ("DELETE", 3),
        ("INSERT", 1),
        ("INSERT", 2),
        ("INSERT", 3),
        ("UPDATE", 1),
        ("UPDATE", 1),
        ("UPDATE", 2),
    ];
    assert_eq!(
        ops,
        expected.map(|(op, id)| (op.to_string(), id)).to_vec(),
        "{got:?}"
    );
    let body_of = |op: &str, total: i64| {
        got.iter()
            .map(Received::json)
            .find(|b| b["op"] == op && (b["row"]["total"] == total))
            .unwrap_or_else(|| panic!("no {op} with total {total}"))
    };
    let shipped = body_of("UPDATE", 10);
    assert_eq!(shipped["row"]["status"], "shipped");
    assert_eq!(shipped["old"]["status"], "new");
    let deleted = body_of("DELETE", 30);
    assert_eq!(deleted["old"]["id"], 3);
    assert_eq!(body_of("INSERT", 20)["old"], serde_json::Value::Null);

    // Only the change that made the status 'shipped' matched the condition.
    receiver
        .wait_until("the shipped webhook", Duration::from_secs(30), |r| {
            r.iter().any(|r| r.path == "/shipped")
        })
        .await;
    let shipped = receiver.on("/shipped");
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(
        shipped[0].json(),
        json!({"id": 1, "status": "shipped", "total": 10})
    );
    // Every row was marked done once stored.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &db,
        "SELECT count(*) FROM wasmhook.event_log WHERE delivered_at IS NULL",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "rows were never marked done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Uninstalling one table stops recording it, and only it.
    let out = pg_cli(
        &["uninstall", "--dsn", &url, "--table", "orders"],
        tmp.path(),
    );
    assert!(out.contains("trigger on orders: removed"), "{out}");
    assert_eq!(triggers_on(&db, "orders").await, 0);
    assert_eq!(triggers_on(&db, "users").await, 1);
    let logged = "SELECT count(*) FROM wasmhook.event_log";
    let before = count(&db, logged).await;
    db.batch_execute("INSERT INTO orders VALUES (4, 'new', 40)")
        .await
        .unwrap();
    assert_eq!(count(&db, logged).await, before);
    let out = pg_cli(
        &["uninstall", "--dsn", &url, "--table", "orders"],
        tmp.path(),
    );
    assert!(out.contains("trigger on orders: none to remove"), "{out}");
    wasmhook.stop().await;

    // Everything else.
    let out = pg_cli(&["uninstall", "--dsn", &url], tmp.path());
    for line in [
        "trigger on users: removed",
        "trigger function: dropped",
        "event log wasmhook.event_log: dropped",
        "schema wasmhook: dropped",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert_eq!(triggers_on(&db, "users").await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'wasmhook'"
        )
        .await,
        0
    );
    // The tables themselves are untouched.
    assert_eq!(count(&db, "SELECT count(*) FROM orders").await, 3);
}

fn log_config(pg: &PgCluster, port: u16, receiver: &TestReceiver, instance: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"db-{instance}\"\n\
         [observers]\nbackend = \"postgres-log\"\npostgres_url = \"{}\"\nbatch_size = 50\n\
         {WEBHOOK_RETRY}\
         [[observer]]\nname = \"orders\"\nentity = \"orders\"\n[[observer.webhook]]\nurl = \"{}\"\nheaders = {{ X-Instance = \"{instance}\" }}\n",
        pg.url(),
        receiver.url("/orders")
    )
}

/// A table `orders` recorded in the default event log.
async fn orders_table(pg: &PgCluster, cwd: &Path) -> tokio_postgres::Client {
    let db = pg.client().await.unwrap();
    db.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL)")
        .await
        .unwrap();
    pg_cli(&["install", "--dsn", &pg.url(), "--table", "orders"], cwd);
    db
}

/// Inserts `ids`, `per_transaction` rows per transaction.
async fn insert(db: &tokio_postgres::Client, ids: std::ops::Range<i64>, per_transaction: i64) {
    let mut from = ids.start;
    while from < ids.end {
        let to = (from + per_transaction).min(ids.end);
        db.execute(
            "INSERT INTO orders SELECT g, 'new' FROM generate_series($1::bigint, $2::bigint - 1) AS g",
            &[&from, &to],
        )
        .await
        .unwrap();
        from = to;
    }
}

async fn wait_until_all_done(db: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(
        db,
        "SELECT count(*) FROM wasmhook.event_log WHERE delivered_at IS NULL",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "rows were never marked done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn event_log_survives_kill_9_and_two_processes_share_it() {
    let (kills, rows) = crate::utils::kill_scale(3000);
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgCluster::start().await.unwrap();
    let db = orders_table(&pg, tmp.path()).await;
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    insert(&db, 0..rows, 500).await;

    // One process, killed three times while it works through the log.
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(&path, log_config(&pg, port, &receiver, "a")).unwrap();
    kill_on_progress(
        "postgres-log",
        &path,
        tmp.path(),
        port,
        &receiver,
        rows,
        kills,
    )
    .await;

    // Two processes on the same log finish the job and share the new rows.
    let port_b = free_port();
    let path_b = tmp.path().join("b.toml");
    std::fs::write(&path_b, log_config(&pg, port_b, &receiver, "b")).unwrap();
    let before = receiver.requests().len();
    let _a = Running::start(&path, tmp.path(), port).await;
    let _b = Running::start(&path_b, tmp.path(), port_b).await;
    // Paced, so that sharing does not hang on which process wakes first for
    // a burst: inserted back to back, one process could claim all of it.
    for from in (rows..rows + 2000).step_by(20) {
        insert(&db, from..from + 20, 20).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = receiver
        .wait_until("every row", Duration::from_secs(180), |r| {
            delivered(r).len() as i64 == rows + 2000
        })
        .await;
    let duplicates: usize = delivered(&got).values().map(|n| n - 1).sum();
    // Only the rows written while both ran: a also finishes its own outbox.
    let by_instance = |name: &str| {
        got[before..]
            .iter()
            .filter(|r| r.header("x-instance") == name && r.status == 200)
            .filter(|r| r.json()["id"].as_i64().unwrap() >= rows)
            .count()
    };
    let (a, b) = (by_instance("a"), by_instance("b"));
    eprintln!(
        "postgres-log: {} rows, kill -9 x{kills}, all delivered, {duplicates} duplicates; \
         the last 2000 rows shared a={a} b={b}",
        rows + 2000
    );
    assert!(a > 0 && b > 0, "both processes took part: a={a} b={b}");
    wait_until_all_done(&db).await;
}

#[tokio::test]
async fn event_log_loses_nothing_when_postgres_restarts_mid_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgCluster::start().await.unwrap();
    let db = orders_table(&pg, tmp.path()).await;
    let receiver = TestReceiver::start().await;
    receiver.set_delay(Duration::from_millis(2));
    let port = free_port();
    let path = tmp.path().join("a.toml");
    std::fs::write(&path, log_config(&pg, port, &receiver, "a")).unwrap();
    let running = Running::start(&path, tmp.path(), port).await;
    ready(&running.url("/readyz")).await;

    // Twice: rows inserted, the server stopped mid-stream, started again.
    let mut db = db;
    for round in 0..2i64 {
        insert(&db, round * 1000..round * 1000 + 1000, 50).await;
        drop(db);
        let target = round as usize * 1000 + 100;
        receiver
            .wait_until("progress", Duration::from_secs(60), |r| {
                delivered(r).len() >= target
            })
            .await;
        pg.stop(StopMode::Fast).await.unwrap();
        // wasmhook notices and says so, without exiting.
        readyz(&running.url("/readyz"), 503).await;
        pg.start_again().await.unwrap();
        // It reconnects by itself.
        ready(&running.url("/readyz")).await;
        db = pg.client().await.unwrap();
    }
    insert(&db, 2000..3000, 50).await;
    let got = receiver
        .wait_until("every row", Duration::from_secs(120), |r| {
            delivered(r).len() == 3000
        })
        .await;
    let duplicates: usize = delivered(&got).values().map(|n| n - 1).sum();
    eprintln!("postgres-log: PostgreSQL restarted twice mid-stream, 3000 rows delivered, {duplicates} duplicates");
    wait_until_all_done(&db).await;
}

/// The columns of FraiseQL 2.19's change log that wasmhook reads (its
/// migration 08 has more); the real migrations run in compat/fraiseql.
const CHANGE_LOG: &str = "CREATE SCHEMA core;
    CREATE TABLE core.tb_entity_change_log (
        pk_entity_change_log bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id uuid NOT NULL DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        tenant_id uuid, object_type text NOT NULL, modification_type text NOT NULL,
        object_id uuid, object_data jsonb, object_data_before jsonb,
        commit_time timestamptz, seq bigint, actor_type text, acting_for uuid,
        trace_context jsonb)";

async fn change(db: &tokio_postgres::Client, id: i64, status: &str, before: &str) {
    db.execute(
        "INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_data, object_data_before) \
         VALUES ('Order', 'UPDATE', jsonb_build_object('id', $1::bigint, 'status', $2::text), \
         jsonb_build_object('id', $1::bigint, 'status', $3::text))",
        &[&id, &status, &before],
    )
    .await
    .unwrap();
}

/// Row numbers are taken at insert and seen at commit: a row that commits
/// after a later one is still delivered, a rolled-back one does not hold
/// the source back, FraiseQL's table is never written, and a restart goes
/// on from the saved place without delivering anything twice.
#[tokio::test]
async fn the_fraiseql_change_log_is_read_in_order_of_commit_and_resumed() {
    let pg = PgCluster::start().await.unwrap();
    let db = pg.client().await.unwrap();
    db.batch_execute(CHANGE_LOG).await.unwrap();
    // Before wasmhook's first start: not delivered with `start = "now"`.
    change(&db, 0, "old", "older").await;
    let receiver = TestReceiver::start().await;
    let config = format!(
        "[observers]\nbackend = \"fraiseql-changelog\"\npostgres_url = \"{}\"\npoll_interval = \"100ms\"\n\
         [[observer]]\nname = \"orders\"\nentity = \"Order\"\ncondition = \"status.changed()\"\n\
         [[observer.webhook]]\nurl = \"{}\"\nbody_template = '{{\"id\": {{{{id}}}}, \"was\": {{{{_old}}}}, \"event\": \"{{{{_event_id}}}}\"}}'\n",
        pg.url(),
        receiver.url("/orders")
    );
    let wasmhook = InProcess::start(&config).await;
    ready(&wasmhook.url("/readyz")).await;

    // An open transaction takes row 2; rows 3 and 4 commit first.
    let (mut slow, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let open = slow.transaction().await.unwrap();
    open.execute(
        "INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_data, object_data_before) \
         VALUES ('Order', 'UPDATE', '{\"id\": 1, \"status\": \"paid\"}', '{\"id\": 1, \"status\": \"new\"}')",
        &[],
    )
    .await
    .unwrap();
    change(&db, 2, "paid", "new").await;
    change(&db, 3, "paid", "new").await;
    receiver
        .wait_until(
            "rows committed after the open one",
            Duration::from_secs(30),
            |r| delivered(r).len() == 2,
        )
        .await;
    open.commit().await.unwrap();
    // A rolled-back row leaves a gap for good; the rows after it still flow.
    let rolled = slow.transaction().await.unwrap();
    rolled
        .execute(
            "INSERT INTO core.tb_entity_change_log (object_type, modification_type, object_data) \
             VALUES ('Order', 'INSERT', '{\"id\": 99}')",
            &[],
        )
        .await
        .unwrap();
    rolled.rollback().await.unwrap();
    change(&db, 4, "shipped", "paid").await;
    let got = receiver
        .wait_until("every committed row", Duration::from_secs(30), |r| {
            delivered(r).len() == 4
        })
        .await;
    assert!(delivered(&got).values().all(|&n| n == 1), "each once");
    assert!(
        !delivered(&got).contains_key(&0),
        "start = now skips older rows"
    );
    let four = got.iter().find(|r| r.json()["id"] == 4).unwrap();
    assert_eq!(
        four.json()["was"]["status"],
        "paid",
        "_old from object_data_before"
    );
    let expected_id: String = db
        .query_one(
            "SELECT id::text FROM core.tb_entity_change_log WHERE object_data->>'id' = '4'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        four.json()["event"],
        expected_id.as_str(),
        "the row's id names the event"
    );

    // The place is saved past the gap: after a restart, only new rows.
    let before: Vec<String> = db
        .query(
            "SELECT t::text FROM core.tb_entity_change_log t ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let dir = wasmhook.stop().await;
    change(&db, 5, "paid", "new").await;
    let wasmhook = InProcess::start_in(&config, dir).await;
    let got = receiver
        .wait_until(
            "the row written while stopped",
            Duration::from_secs(30),
            |r| delivered(r).len() == 5,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        got.len(),
        "nothing delivered twice"
    );
    let after: Vec<String> = db
        .query(
            "SELECT t::text FROM core.tb_entity_change_log t WHERE object_data->>'id' <> '5' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(before, after, "FraiseQL's rows are untouched");
    wasmhook.stop().await;
}
