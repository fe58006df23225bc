//! The change log: FraiseQL's `core.tb_entity_change_log` (migration 08)
//! filled by its capture trigger (migration 11) from real writes on a
//! private PostgreSQL 15, read by wasmhook's `backend =
//! "fraiseql-changelog"`, which must deliver every row at least once across
//! kill -9 and never write FraiseQL's rows.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use fraiseql_observers::migrations::{
    entity_change_log_capture_trigger_sql, entity_change_log_contract_sql,
};
use serde_json::{json, Value};
use tokio_postgres::Client;
use wasmhook_testkit::PgCluster;

use crate::receiver::{Received, Receiver};
use crate::wasmhook::Wasmhook;
use crate::{observer, webhooks, SECRET};

const WAIT: Duration = Duration::from_secs(90);

/// PostgreSQL 15 has no `uuidv7()` (18 does); migration 08 defaults the
/// change log's `id` to it. Any random UUID serves the tests.
const UUIDV7_SHIM: &str =
    "CREATE FUNCTION public.uuidv7() RETURNS uuid LANGUAGE sql VOLATILE AS $$ SELECT gen_random_uuid() $$;";

/// An application table with FraiseQL's capture triggers, in the shape
/// `fraiseql generate capture-triggers` emits (statement-level, transition
/// tables; arguments: GraphQL type, UUID id column, tenant column, and the
/// pre-image opt-in) — as fraiseql-observers' own `tests/capture_trigger.rs`
/// installs them.
const ORDERS_TABLE: &str = "
CREATE TABLE public.tb_order (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid,
    status    text NOT NULL,
    total     integer NOT NULL
);
CREATE TRIGGER tr_cdc_capture_ins AFTER INSERT ON public.tb_order
    REFERENCING NEW TABLE AS new_table FOR EACH STATEMENT
    EXECUTE FUNCTION core.fn_entity_change_log_capture('Order', 'id', 'tenant_id', 'true');
CREATE TRIGGER tr_cdc_capture_upd AFTER UPDATE ON public.tb_order
    REFERENCING OLD TABLE AS old_table NEW TABLE AS new_table FOR EACH STATEMENT
    EXECUTE FUNCTION core.fn_entity_change_log_capture('Order', 'id', 'tenant_id', 'true');
CREATE TRIGGER tr_cdc_capture_del AFTER DELETE ON public.tb_order
    REFERENCING OLD TABLE AS old_table FOR EACH STATEMENT
    EXECUTE FUNCTION core.fn_entity_change_log_capture('Order', 'id', 'tenant_id', 'true');
";

/// Every change-log row with its physical identity (`xmin`, `ctid`) and its
/// whole text, in `pk` order: any UPDATE or DELETE by anyone changes it.
const SNAPSHOT: &str = "SELECT pk_entity_change_log, xmin::text, ctid::text, t::text \
     FROM core.tb_entity_change_log t";

type Row = (i64, String, String, String);

/// A private cluster with FraiseQL's change-log schema and an orders table.
async fn fraiseql_database() -> (PgCluster, Client) {
    let pg = PgCluster::start().await.unwrap();
    pg.create_database("app").await.unwrap();
    let db = pg.client_for("app").await.unwrap();
    db.batch_execute(UUIDV7_SHIM).await.unwrap();
    db.batch_execute(entity_change_log_contract_sql())
        .await
        .unwrap_or_else(|e| panic!("FraiseQL migration 08: {e:?}"));
    db.batch_execute(entity_change_log_capture_trigger_sql())
        .await
        .unwrap_or_else(|e| panic!("FraiseQL migration 11: {e:?}"));
    db.batch_execute(ORDERS_TABLE).await.unwrap();
    (pg, db)
}

/// Runs `sql` in one transaction as an application would, and returns the
/// change-log rows it wrote as that transaction saw them before commit:
/// FraiseQL's rows as written, before wasmhook could touch them.
async fn write(db: &mut Client, sql: &str) -> Vec<Row> {
    let tx = db.transaction().await.unwrap();
    tx.batch_execute(sql).await.unwrap();
    let rows = tx
        .query(
            &format!(
                "{SNAPSHOT} WHERE xmin::text = (txid_current() % 4294967296)::text \
                 ORDER BY pk_entity_change_log"
            ),
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The change log now, in `pk` order.
async fn snapshot(db: &Client) -> Vec<Row> {
    db.query(&format!("{SNAPSHOT} ORDER BY pk_entity_change_log"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Panics unless the change log holds exactly the rows the writers wrote,
/// byte for byte and in place.
async fn assert_untouched(db: &Client, mut written: Vec<Row>) {
    written.sort();
    let now = snapshot(db).await;
    assert_eq!(now.len(), written.len(), "rows added or removed");
    for (now, then) in now.iter().zip(&written) {
        assert_eq!(now, then, "a change-log row was modified");
    }
}

/// `backend = "fraiseql-changelog"` with the default table and channel;
/// `webhooks_extra` adds keys to `[webhooks]`.
fn changelog_config(pg: &PgCluster, receiver: &Receiver, webhooks_extra: &str) -> String {
    format!(
        "[observers]\nbackend = \"fraiseql-changelog\"\npostgres_url = \"{}\"\n\
         poll_interval = \"200ms\"\nbatch_size = 50\n\n{}\n{}\n{}",
        pg.url_for("app"),
        webhooks(webhooks_extra),
        observer("all", "", &receiver.url("/all")),
        observer(
            "shipped",
            "event = \"UPDATE\"\ncondition = \"status.changed() && status == 'shipped'\"",
            &receiver.url("/shipped"),
        ),
    )
}

#[tokio::test]
async fn the_change_log_delivers_inserts_updates_and_deletes_with_old_rows() {
    let (pg, mut db) = fraiseql_database().await;
    let receiver = Receiver::start().await;
    let mut wasmhook = Wasmhook::start(&changelog_config(&pg, &receiver, "")).await;

    let tenant = "6f1c1c1e-2d1f-4c55-9a59-0b6d7e0c1a01";
    let mut written = Vec::new();
    written.extend(
        write(
            &mut db,
            &format!(
                "INSERT INTO tb_order (id, tenant_id, status, total) \
                 VALUES ('0195f3a2-0000-7000-8000-000000000001', '{tenant}', 'paid', 1500)"
            ),
        )
        .await,
    );
    written.extend(write(&mut db, "UPDATE tb_order SET status = 'shipped'").await);
    written.extend(write(&mut db, "UPDATE tb_order SET total = 1600").await);
    written.extend(write(&mut db, "DELETE FROM tb_order").await);
    assert_eq!(written.len(), 4, "FraiseQL's trigger logged each write");

    let all = receiver.wait_for("/all", 4, WAIT).await;
    let ids: Vec<String> = db
        .query(
            "SELECT id::text FROM core.tb_entity_change_log ORDER BY pk_entity_change_log",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let by_id: HashMap<&str, Value> = all
        .iter()
        .map(|r| {
            r.assert_signed(SECRET);
            let body = r.json();
            assert_eq!(
                r.event_id(),
                body["id"],
                "X-FraiseQL-Event-Id is the event id"
            );
            (r.event_id(), body)
        })
        .collect();
    let got = |i: usize| -> Value {
        by_id
            .get(ids[i].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "no delivery with the change-log row's id {} as event id: {by_id:#?}",
                    ids[i]
                )
            })
            .clone()
    };
    let id = "0195f3a2-0000-7000-8000-000000000001";
    let paid = json!({"id": id, "tenant_id": tenant, "status": "paid", "total": 1500});
    let shipped = json!({"id": id, "tenant_id": tenant, "status": "shipped", "total": 1500});
    let repriced = json!({"id": id, "tenant_id": tenant, "status": "shipped", "total": 1600});

    let insert = got(0);
    assert_eq!(insert["op"], "INSERT");
    assert_eq!(insert["entity"], "Order");
    assert_eq!(insert["data"], paid);
    assert_eq!(insert["tenant"], tenant);
    assert_eq!(insert["old"], Value::Null);

    let update = got(1);
    assert_eq!(update["op"], "UPDATE");
    assert_eq!(update["data"], shipped);
    assert_eq!(update["old"], paid, "_old is object_data_before");
    assert_eq!(
        update["changed"],
        json!({"status": {"old": "paid", "new": "shipped"}})
    );

    let repricing = got(2);
    assert_eq!(repricing["op"], "UPDATE");
    assert_eq!(
        repricing["changed"],
        json!({"total": {"old": 1500, "new": 1600}})
    );

    let delete = got(3);
    assert_eq!(delete["op"], "DELETE");
    assert_eq!(
        delete["data"], repriced,
        "a DELETE's row is object_data_before"
    );

    receiver.wait_for("/shipped", 1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fired = receiver.on("/shipped");
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(fired[0].event_id(), ids[1]);

    wasmhook.kill9();
    assert_untouched(&db, written).await;
}

/// (operation, order id) of each delivery, and how often.
fn delivered(requests: &[Received]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for request in requests {
        let body = request.json();
        let key = (
            body["op"].as_str().unwrap_or_default().to_string(),
            body["data"]["id"].as_str().unwrap_or_default().to_string(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn kill_9_mid_change_log_loses_no_row_and_leaves_fraiseqls_rows_untouched() {
    const N_ORDERS: i64 = 1000;
    const SHIPPED: i64 = 100;
    let (pg, mut db) = fraiseql_database().await;
    let receiver = Receiver::start().await;
    // A slow receiver and few connections keep most rows pending.
    receiver.set_delay(Duration::from_millis(20));
    let config = changelog_config(&pg, &receiver, "max_concurrent = 4\n");
    let mut wasmhook = Wasmhook::start(&config).await;

    // One bulk statement: one change-log row per order (statement trigger).
    let mut written = write(
        &mut db,
        &format!(
            "INSERT INTO tb_order (status, total) \
             SELECT 'paid', g FROM generate_series(1, {N_ORDERS}) AS g"
        ),
    )
    .await;
    assert_eq!(written.len() as i64, N_ORDERS);

    receiver
        .wait_until("/all", "progress before the kill", WAIT, |r| r.len() >= 100)
        .await;
    wasmhook.kill9();
    let at_kill = delivered(&receiver.on("/all")).len() as i64;
    eprintln!("kill -9 after {at_kill} of {N_ORDERS} rows delivered");
    assert!(at_kill < N_ORDERS, "the kill must land mid-stream");

    // Written while wasmhook is down: found from its own cursor on restart.
    written.extend(
        write(
            &mut db,
            &format!("UPDATE tb_order SET status = 'shipped' WHERE total <= {SHIPPED}"),
        )
        .await,
    );
    wasmhook.restart().await;

    let orders: BTreeSet<String> = db
        .query("SELECT id::text FROM tb_order", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let total = (N_ORDERS + SHIPPED) as usize;
    let got = receiver
        .wait_until("/all", "every change-log row", WAIT * 2, |r| {
            delivered(r).len() == total
        })
        .await;
    // The shipped observer's deliveries run beside the others'.
    let shipped = receiver
        .wait_until("/shipped", "every shipped order", WAIT, |r| {
            delivered(r).len() as i64 >= SHIPPED
        })
        .await;
    wasmhook.kill9();
    let counts = delivered(&got);
    for id in &orders {
        assert!(
            counts.contains_key(&("INSERT".to_string(), id.clone())),
            "insert of {id} lost"
        );
    }
    let updates = counts.keys().filter(|(op, _)| op == "UPDATE").count() as i64;
    assert_eq!(updates, SHIPPED, "every update delivered");
    assert!(
        delivered(&shipped)
            .keys()
            .all(|(op, id)| op == "UPDATE" && orders.contains(id)),
        "status.changed() fires on the shipping updates only"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "{} rows delivered, {duplicates} redelivered after the kill",
        counts.len()
    );

    assert_untouched(&db, written).await;
}
