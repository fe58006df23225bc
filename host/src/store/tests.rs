//! What every backend does the same: each scenario here runs once on sled
//! and once on PostgreSQL (a fresh schema per test, dropped at its end), as
//! `store::tests::SCENARIO::{sled, postgres}`. What only PostgreSQL has
//! (migrations, leases, nodes sharing one outbox) is in `shared` below.

use std::time::Duration;

use super::delivery::test_support::delivery;
use super::postgres::test_support::{target, Schema};
use super::*;
use crate::clock::{now_ms, Family};

/// A store and what keeps it alive: sled's directory, PostgreSQL's schema.
struct Bench {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    // Dropped after the store: the schema goes once nothing uses it.
    _schema: Option<Schema>,
}

impl Bench {
    async fn sled() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        Bench {
            store: open_in(dir.path()).await,
            _dir: Some(dir),
            _schema: None,
        }
    }

    async fn postgres() -> Bench {
        let schema = Schema::fresh();
        Bench {
            store: Store::open(&pg_settings(&schema.0, Duration::from_secs(30)))
                .await
                .unwrap(),
            _dir: None,
            _schema: Some(schema),
        }
    }
}

/// PostgreSQL storage in `schema`, rows leased for `lease`.
fn pg_settings(schema: &str, lease: Duration) -> Settings {
    Settings {
        path: std::env::temp_dir(),
        backend: BackendSettings::Postgres(Box::new(PostgresSettings {
            target: target(),
            schema: schema.to_string(),
            lease,
            max_connections: 4,
        })),
        delivery_log: true,
    }
}

/// Runs each scenario (an `async fn(&Store)` of this module) on both backends.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                let bench = super::Bench::sled().await;
                super::$scenario(&bench.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let bench = super::Bench::postgres().await;
                super::$scenario(&bench.store).await;
            }
        }
    )*};
}

on_both!(
    write_get_pending_complete,
    routing_reads_what_the_delivery_holds,
    chains_run_in_order,
    a_chain_whose_first_delivery_is_gone_runs,
    reschedule_records_the_attempt,
    dead_at_acceptance_go_to_the_dlq,
    bury_list_get_purge_requeue,
    requeue_all_spaces_and_skips_input,
    filters_by_observer_and_time_window,
    retention_by_age_and_by_size,
    counts_follow_every_write,
    cursors_are_kept,
    switches_are_kept,
    replay_ids_expire_and_are_forgotten,
    replay_first_time_lets_one_copy_through,
    schedule_marks_are_kept,
    the_probe_and_flush_succeed,
    the_delivery_log_lists_shows_resends_and_expires,
    the_dlq_lists_a_page_at_a_time,
);

/// The keys `pending` hands the dispatcher.
async fn due_keys(store: &Store) -> Vec<u64> {
    store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, key)| key)
        .collect()
}

/// An attempt that failed with `status`.
fn failed(status: u16) -> Attempt {
    Attempt {
        at_ms: now_ms(),
        status: Some(status),
        error: Some("try again".into()),
        response: None,
        duration_ms: 3,
    }
}

/// Completes `key` as the dispatcher does, with the delivery it sent (or
/// any delivery, when it is gone).
async fn complete(store: &Store, key: u64) {
    let sent = store
        .get(key)
        .await
        .unwrap()
        .unwrap_or_else(|| delivery("gone", 0, 0));
    store.complete(key, &sent).await.unwrap();
}

/// The ids of every DLQ entry, in listing order.
async fn listed(store: &Store) -> Vec<String> {
    store
        .dlq_list(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect()
}

/// A letter of observer `o{i % 2}` that died at `failed_at_ms`.
fn letter(i: usize, failed_at_ms: u64) -> DeadLetter {
    let delivery = delivery(&format!("o{}", i % 2), 0, i);
    DeadLetter {
        id: delivery.id.clone(),
        failed_at_ms,
        reason: "test".into(),
        failure: Failure::Delivery(Box::new(delivery)),
    }
}

/// Stores `n` letters (see [`letter`]); returns their ids, oldest first.
async fn letters(store: &Store, n: usize, failed_at_ms: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let letter = letter(i, failed_at_ms);
        store.insert_letter(&letter).await.unwrap();
        ids.push(letter.id);
    }
    ids
}

async fn write_get_pending_complete(store: &Store) {
    let mut first = delivery("a", 0, 1);
    first.due_ms = 1_000;
    let second = delivery("b", 0, 1);
    let keys = store
        .write(vec![first.clone(), second.clone()], Vec::new())
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0] < keys[1], "keys ascend: {keys:?}");
    assert_eq!(store.get(keys[0]).await.unwrap(), Some(first));
    assert_eq!(store.get(keys[1]).await.unwrap(), Some(second));
    assert_eq!(store.outbox_len().await, 2);
    assert_eq!(
        store.pending().await.unwrap(),
        vec![(1_000, keys[0]), (0, keys[1])],
        "different observers: no chain"
    );

    complete(store, keys[0]).await;
    complete(store, keys[0]).await;
    assert_eq!(store.get(keys[0]).await.unwrap(), None);
    assert!(store.routing(keys[0]).await.unwrap().is_none());
    assert_eq!(store.outbox_len().await, 1);
    assert_eq!(due_keys(store).await, vec![keys[1]]);
    assert_eq!(store.get(u64::MAX).await.unwrap(), None);
    assert_eq!(store.release(u64::MAX).await.unwrap(), None);
}

async fn routing_reads_what_the_delivery_holds(store: &Store) {
    let mut built = delivery("o", 1, 7);
    built.payload = Some(Payload {
        method: "POST".into(),
        url: "http://127.0.0.1:9/hook".into(),
        headers: vec![("x-a".into(), "b".into())],
        content_type: None,
        // Large enough to be packed (`record`), as a 64 KB entity's is.
        body: format!("[{}]", [r#"{"url": "not this one"}"#; 3000].join(",")).into_bytes(),
    });
    let keys = store
        .write(vec![delivery("o", 0, 7), built.clone()], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.get(keys[1]).await.unwrap().unwrap().payload,
        built.payload
    );
    for key in keys {
        let whole = store.get(key).await.unwrap().unwrap();
        let routing = store.routing(key).await.unwrap().unwrap();
        assert_eq!(routing.observer, whole.observer);
        assert_eq!(routing.webhook, whole.webhook);
        assert_eq!(routing.held, whole.held);
        assert_eq!(routing.payload.map(|p| p.url), whole.payload.map(|p| p.url));
        assert_eq!(routing.event.id, whole.event.id);
        assert_eq!(routing.event.entity_id, whole.event.entity_id);
    }
    assert!(store.routing(u64::MAX).await.unwrap().is_none());
}

async fn chains_run_in_order(store: &Store) {
    // Three webhooks of one observer and event, then another observer's.
    let batch = vec![
        delivery("o", 0, 1),
        delivery("o", 1, 1),
        delivery("o", 2, 1),
        delivery("p", 0, 1),
    ];
    let keys = store.write(batch, Vec::new()).await.unwrap();
    let stored: Vec<Delivery> = {
        let mut all = Vec::new();
        for key in &keys {
            all.push(store.get(*key).await.unwrap().unwrap());
        }
        all
    };
    assert_eq!(
        stored.iter().map(|d| d.held).collect::<Vec<_>>(),
        vec![false, true, true, false]
    );
    assert_eq!(
        stored.iter().map(|d| (d.after, d.next)).collect::<Vec<_>>(),
        vec![
            (None, Some(keys[1])),
            (Some(keys[0]), Some(keys[2])),
            (Some(keys[1]), None),
            (None, None),
        ]
    );
    assert_eq!(due_keys(store).await, vec![keys[0], keys[3]]);
    assert!(store.routing(keys[1]).await.unwrap().unwrap().held);

    // The first's attempt ends: the second is released, the third waits.
    let mut first = stored[0].clone();
    first.attempts.push(failed(500));
    store.reschedule(keys[0], &first).await.unwrap();
    assert_eq!(store.release(keys[1]).await.unwrap(), Some(0));
    let second = store.get(keys[1]).await.unwrap().unwrap();
    assert!(!second.held);
    assert!(!store.routing(keys[1]).await.unwrap().unwrap().held);
    assert!(store.get(keys[2]).await.unwrap().unwrap().held);
    assert_eq!(due_keys(store).await, vec![keys[0], keys[1], keys[3]]);

    // The second is delivered before releasing the third (a crash in
    // between): the start-up read releases it, since its predecessor is gone.
    complete(store, keys[1]).await;
    assert_eq!(due_keys(store).await, vec![keys[0], keys[2], keys[3]]);
    assert!(
        !store.get(keys[2]).await.unwrap().unwrap().held,
        "released for good"
    );
}

/// A crash can store the second webhook's delivery of a chain and lose the
/// first's completion order; it must still run.
async fn a_chain_whose_first_delivery_is_gone_runs(store: &Store) {
    let keys = store
        .write(vec![delivery("o", 0, 1), delivery("o", 1, 1)], Vec::new())
        .await
        .unwrap();
    assert!(store.get(keys[1]).await.unwrap().unwrap().held);
    assert_eq!(due_keys(store).await, vec![keys[0]], "the second waits");
    complete(store, keys[0]).await;
    assert_eq!(due_keys(store).await, vec![keys[1]]);
    assert!(!store.get(keys[1]).await.unwrap().unwrap().held);
}

async fn reschedule_records_the_attempt(store: &Store) {
    let keys = store
        .write(vec![delivery("o", 0, 1)], Vec::new())
        .await
        .unwrap();
    let mut d = store.get(keys[0]).await.unwrap().unwrap();
    d.attempts.push(failed(503));
    d.due_ms = now_ms() + 60_000;
    store.reschedule(keys[0], &d).await.unwrap();
    assert_eq!(store.get(keys[0]).await.unwrap(), Some(d.clone()));
    assert_eq!(store.pending().await.unwrap(), vec![(d.due_ms, keys[0])]);
    assert_eq!(store.outbox_len().await, 1, "rewritten, not added");
}

async fn dead_at_acceptance_go_to_the_dlq(store: &Store) {
    let mut family = Family::default();
    let dead: Vec<(Delivery, String)> = (0..3)
        .map(|i| {
            let mut d = delivery(&format!("o{}", i % 2), 0, i);
            d.id = family.next_id();
            (d, format!("refused {i}"))
        })
        .collect();
    let ids: Vec<String> = dead.iter().map(|(d, _)| d.id.clone()).collect();
    let keys = store.write(vec![delivery("o", 0, 0)], dead).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((store.outbox_len().await, store.dlq_len().await), (1, 3));
    assert_eq!(listed(store).await, ids);
    let second = store.dlq_get(&ids[1]).await.unwrap();
    assert_eq!(second.reason, "refused 1");
    assert!(matches!(second.failure, Failure::Delivery(ref d) if d.observer == "o1"));
    // Only dead ones: no outbox key.
    let mut lone = delivery("o", 0, 9);
    lone.id = family.next_id();
    let keys = store
        .write(Vec::new(), vec![(lone, "refused".into())])
        .await
        .unwrap();
    assert!(keys.is_empty());
    assert_eq!(store.dlq_len().await, 4);
}

async fn bury_list_get_purge_requeue(store: &Store) {
    let batch: Vec<Delivery> = (0..4)
        .map(|i| delivery(&format!("o{}", i % 2), 0, i))
        .collect();
    let keys = store.write(batch, Vec::new()).await.unwrap();
    let mut ids = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let mut d = store.get(*key).await.unwrap().unwrap();
        d.attempts.push(failed(500));
        let letter = store.bury(*key, d, format!("dead {n}")).await.unwrap();
        assert_eq!(letter.reason, format!("dead {n}"));
        assert_eq!(store.get(*key).await.unwrap(), None, "left the outbox");
        ids.push(letter.id);
    }
    assert_eq!((store.outbox_len().await, store.dlq_len().await), (0, 4));
    assert_eq!(listed(store).await, ids, "oldest first");
    let got = store.dlq_get(&ids[2]).await.unwrap();
    assert_eq!(
        (got.id.as_str(), got.reason.as_str()),
        (ids[2].as_str(), "dead 2")
    );
    assert!(matches!(
        store.dlq_get(&crate::clock::new_id()).await,
        Err(StoreError::NotFound(_))
    ));

    // Retry one: back in the outbox with a fresh budget, due now, alone.
    let key = store.requeue(&ids[2]).await.unwrap();
    let back = store.get(key).await.unwrap().unwrap();
    assert_eq!(back.id, ids[2]);
    assert!(back.attempts.is_empty());
    assert_eq!(back.earlier_attempts.len(), 1);
    assert!(!back.held && back.after.is_none() && back.next.is_none());
    assert!(back.due_ms <= now_ms());
    assert!(due_keys(store).await.contains(&key));
    assert!(matches!(
        store.dlq_get(&ids[2]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.requeue(&ids[2]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!((store.outbox_len().await, store.dlq_len().await), (1, 3));

    // Rejected input is listed, and cannot be retried (it stays).
    let input = store
        .reject_input("http", b"\xffnot an envelope", "unknown envelope".into())
        .await
        .unwrap();
    match &store.dlq_get(&input.id).await.unwrap().failure {
        Failure::Input { source, raw } => {
            assert_eq!(source, "http");
            assert!(raw.ends_with("not an envelope"), "{raw}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.requeue(&input.id).await,
        Err(StoreError::NotRetryable(_))
    ));
    assert_eq!(store.dlq_len().await, 4);

    // Purge one observer's: input (no observer) and the others stay.
    let o1 = Filter {
        observer: Some("o1".into()),
        ..Filter::default()
    };
    assert_eq!(store.dlq_purge(&o1).await.unwrap(), 2);
    assert_eq!(listed(store).await, vec![ids[0].clone(), input.id.clone()]);
    assert_eq!(store.dlq_purge(&Filter::default()).await.unwrap(), 2);
    assert_eq!(store.dlq_len().await, 0);
}

async fn requeue_all_spaces_and_skips_input(store: &Store) {
    let ids = letters(store, 3, now_ms()).await;
    let input = store
        .reject_input("nats", b"?", "unknown envelope".into())
        .await
        .unwrap();
    let more = letters(store, 1, now_ms()).await;
    let before = now_ms();
    let requeued = store
        .requeue_all(&Filter::default(), Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(requeued.len(), 4);
    for pair in requeued.windows(2) {
        assert_eq!(pair[1].1 - pair[0].1, 10, "spaced: {requeued:?}");
    }
    assert!(requeued[0].1 >= before);
    let mut order = Vec::new();
    for (key, due) in &requeued {
        let d = store.get(*key).await.unwrap().unwrap();
        assert_eq!(d.due_ms, *due);
        order.push(d.id);
    }
    assert_eq!(order, [ids, more].concat(), "in listing order");
    assert_eq!(listed(store).await, vec![input.id], "input stays");
    assert_eq!(store.outbox_len().await, 4);

    // With a filter: only what it picks.
    let ids = letters(store, 4, now_ms()).await;
    let o0 = Filter {
        observer: Some("o0".into()),
        ..Filter::default()
    };
    let requeued = store.requeue_all(&o0, Duration::ZERO).await.unwrap();
    assert_eq!(requeued.len(), 2);
    assert!(requeued.iter().all(|(_, due)| *due == requeued[0].1));
    let left = listed(store).await;
    assert!(left.contains(&ids[1]) && left.contains(&ids[3]));
    assert!(!left.contains(&ids[0]) && !left.contains(&ids[2]));
}

async fn filters_by_observer_and_time_window(store: &Store) {
    letters(store, 4, 1_000).await;
    letters(store, 2, 5_000).await;
    let count = |f: Filter| async move { store.dlq_list(&f).await.unwrap().len() };
    assert_eq!(count(Filter::default()).await, 6);
    let observer = Filter {
        observer: Some("o1".into()),
        ..Filter::default()
    };
    assert_eq!(count(observer).await, 3);
    let since = Filter {
        since_ms: Some(5_000),
        ..Filter::default()
    };
    assert_eq!(count(since).await, 2);
    let until = Filter {
        until_ms: Some(5_000),
        ..Filter::default()
    };
    assert_eq!(count(until).await, 4);
    let window = Filter {
        since_ms: Some(1_000),
        until_ms: Some(1_001),
        ..Filter::default()
    };
    assert_eq!(count(window).await, 4);
    let old = Filter {
        older_than_ms: Some(now_ms() - 3_000),
        ..Filter::default()
    };
    assert_eq!(count(old).await, 4, "died at least that long ago");
    let any_age = Filter {
        older_than_ms: Some(0),
        ..Filter::default()
    };
    assert_eq!(count(any_age).await, 6);
    let ahead = letter(9, now_ms() + 60_000);
    store.insert_letter(&ahead).await.unwrap();
    let any_age = Filter {
        older_than_ms: Some(0),
        ..Filter::default()
    };
    assert_eq!(count(any_age).await, 7, "an age of 0 admits the future too");
    let aged = Filter {
        older_than_ms: Some(1),
        ..Filter::default()
    };
    assert_eq!(count(aged).await, 6);
    let purged = Filter {
        observer: Some("o0".into()),
        until_ms: Some(5_000),
        ..Filter::default()
    };
    assert_eq!(store.dlq_purge(&purged).await.unwrap(), 2);
    assert_eq!(store.dlq_len().await, 5);
}

async fn retention_by_age_and_by_size(store: &Store) {
    let week_ago = now_ms() - 8 * 24 * 3600 * 1000;
    letters(store, 3, week_ago).await;
    let recent = letters(store, 4, now_ms()).await;
    let removed = store
        .dlq_enforce(Some(Duration::from_secs(7 * 24 * 3600)), None)
        .await
        .unwrap();
    assert_eq!((removed, store.dlq_len().await), (3, 4));
    assert_eq!(listed(store).await, recent);

    // Room for two and a half letters: the two oldest go.
    let one = record::encode(&store.dlq_get(&recent[0]).await.unwrap()).len() as u64;
    let removed = store
        .dlq_enforce(None, Some(one * 2 + one / 2))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        listed(store).await,
        recent[2..].to_vec(),
        "the oldest go first"
    );
    assert_eq!(
        store
            .dlq_enforce(None, Some(one * 2 + one / 2))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.dlq_enforce(None, Some(1)).await.unwrap(), 2);
    assert_eq!(store.dlq_len().await, 0);
    assert_eq!(store.dlq_enforce(None, None).await.unwrap(), 0);
}

async fn counts_follow_every_write(store: &Store) {
    async fn check(store: &Store, step: &str, expected: (usize, usize)) {
        let letters = store.dlq_list(&Filter::default()).await.unwrap().len();
        assert_eq!(store.dlq_len().await, letters, "after {step}");
        assert_eq!(
            (store.outbox_len().await, store.dlq_len().await),
            expected,
            "after {step}"
        );
    }
    let mut family = Family::default();
    let dead = (0..2)
        .map(|i| {
            let mut d = delivery("o", 0, i);
            d.id = family.next_id();
            (d, "refused".to_string())
        })
        .collect();
    let keys = store
        .write((0..5).map(|i| delivery("o", i, i)).collect(), dead)
        .await
        .unwrap();
    check(store, "write", (5, 2)).await;
    store.release(keys[1]).await.unwrap();
    let first = store.get(keys[0]).await.unwrap().unwrap();
    store.reschedule(keys[0], &first).await.unwrap();
    check(store, "release and reschedule", (5, 2)).await;
    complete(store, keys[0]).await;
    complete(store, keys[0]).await;
    check(store, "complete, twice", (4, 2)).await;
    let dead = store.get(keys[1]).await.unwrap().unwrap();
    let letter = store.bury(keys[1], dead, "gone".into()).await.unwrap();
    check(store, "bury", (3, 3)).await;
    store.requeue(&letter.id).await.unwrap();
    check(store, "requeue", (4, 2)).await;
    store
        .reject_input("http", b"nonsense", "not an envelope".into())
        .await
        .unwrap();
    check(store, "reject_input", (4, 3)).await;
    store.dlq_purge(&Filter::default()).await.unwrap();
    check(store, "purge", (4, 0)).await;
}

async fn cursors_are_kept(store: &Store) {
    assert_eq!(store.source_cursor("log").await.unwrap(), None);
    store.save_source_cursor("log", b"41").await.unwrap();
    store.save_source_cursor("log", b"42").await.unwrap();
    store
        .save_source_cursor("other", b"\x00\xff")
        .await
        .unwrap();
    assert_eq!(
        store.source_cursor("log").await.unwrap().as_deref(),
        Some(&b"42"[..])
    );
    assert_eq!(
        store.source_cursor("other").await.unwrap().as_deref(),
        Some(&b"\x00\xff"[..])
    );
    assert_eq!(store.source_cursor("none").await.unwrap(), None);
}

async fn switches_are_kept(store: &Store) {
    assert!(store.disabled_webhooks().await.unwrap().is_empty());
    store.switch_webhook("a", 2, true).await.unwrap();
    store.switch_webhook("a", 2, true).await.unwrap();
    store.switch_webhook("b", 0, true).await.unwrap();
    store.switch_webhook("a", 1, true).await.unwrap();
    store.switch_webhook("a", 1, false).await.unwrap();
    store.switch_webhook("c", 5, false).await.unwrap();
    let mut disabled = store.disabled_webhooks().await.unwrap();
    disabled.sort();
    assert_eq!(disabled, vec![("a".into(), 2), ("b".into(), 0)]);
}

async fn replay_ids_expire_and_are_forgotten(store: &Store) {
    let hour = Duration::from_secs(3600);
    assert!(store.replay_first_time("gh:1", hour).await.unwrap());
    assert!(!store.replay_first_time("gh:1", hour).await.unwrap());
    assert!(store.replay_first_time("gh:2", hour).await.unwrap());
    store.replay_forget("gh:1").await.unwrap();
    assert!(store.replay_first_time("gh:1", hour).await.unwrap());

    let short = Duration::from_millis(20);
    assert!(store.replay_first_time("gh:3", short).await.unwrap());
    assert!(store.replay_first_time("gh:4", short).await.unwrap());
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert!(
        store.replay_first_time("gh:3", hour).await.unwrap(),
        "expired"
    );
    assert_eq!(store.replay_purge().await.unwrap(), 1, "gh:4 only");
    assert!(!store.replay_first_time("gh:3", hour).await.unwrap());
    assert!(!store.replay_first_time("gh:2", hour).await.unwrap());
}

async fn replay_first_time_lets_one_copy_through(store: &Store) {
    let window = Duration::from_secs(60);
    for n in 0..20 {
        let key = format!("dup:{n}");
        let (a, b) = tokio::join!(
            store.replay_first_time(&key, window),
            store.replay_first_time(&key, window)
        );
        let passed = [a.unwrap(), b.unwrap()];
        assert_eq!(
            passed.iter().filter(|p| **p).count(),
            1,
            "{key}: {passed:?}"
        );
    }
    // Copies racing on separate tasks, as two requests do.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.replay_first_time("race", window).await.unwrap() })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += usize::from(task.await.unwrap());
    }
    assert_eq!(passed, 1);
}

async fn schedule_marks_are_kept(store: &Store) {
    assert_eq!(store.schedule_mark("nightly").await.unwrap(), None);
    store
        .save_schedule_mark("nightly", 1_700_000_000_000)
        .await
        .unwrap();
    store
        .save_schedule_mark("nightly", 1_700_000_060_000)
        .await
        .unwrap();
    store.save_schedule_mark("hourly", -5).await.unwrap();
    assert_eq!(
        store.schedule_mark("nightly").await.unwrap(),
        Some(1_700_000_060_000)
    );
    assert_eq!(store.schedule_mark("hourly").await.unwrap(), Some(-5));
}

async fn the_probe_and_flush_succeed(store: &Store) {
    store.check_writable().await.unwrap();
    store.check_writable().await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.renew_leases().await.unwrap(), 0, "nothing owned yet");
    assert!(store.adopt(10).await.unwrap().is_empty());
}

/// What only a shared (PostgreSQL) storage has.
mod shared {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_migrate_once() {
        let schema = Schema::fresh();
        let settings = pg_settings(&schema.0, Duration::from_secs(30));
        let (a, b, c) = tokio::join!(
            Store::open(&settings),
            Store::open(&settings),
            Store::open(&settings)
        );
        let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        let status = status(&settings).await.unwrap();
        assert_eq!(
            status.applied,
            vec![
                MigrationInfo {
                    version: 1,
                    name: "initial".into()
                },
                MigrationInfo {
                    version: 2,
                    name: "delivery_log".into()
                }
            ]
        );
        assert!(status.pending.is_empty());
        assert_eq!((status.outbox_len, status.dlq_len), (Some(0), Some(0)));
        // One schema, seen by every node.
        let keys = a
            .write(vec![delivery("o", 0, 1)], Vec::new())
            .await
            .unwrap();
        assert!(b.get(keys[0]).await.unwrap().is_some());
        assert_eq!(migrate(&settings).await.unwrap(), Some(Vec::new()));
    }

    #[tokio::test]
    async fn status_reads_without_creating_and_migrate_applies() {
        let schema = Schema::fresh();
        let settings = pg_settings(&schema.0, Duration::from_secs(30));
        let before = status(&settings).await.unwrap();
        assert_eq!(before.backend, "postgres");
        assert_eq!(before.schema.as_deref(), Some(schema.0.as_str()));
        assert!(before.applied.is_empty());
        assert_eq!(before.pending.len(), 2);
        assert_eq!((before.outbox_len, before.dlq_len), (None, None));
        assert!(!before.location.contains("password"));
        let applied = migrate(&settings).await.unwrap().unwrap();
        assert_eq!(applied, before.pending);
        let after = status(&settings).await.unwrap();
        assert_eq!(after.applied, applied);
        assert!(after.pending.is_empty());
    }

    #[tokio::test]
    async fn a_live_lease_keeps_rows_and_an_expired_one_lets_them_go() {
        let schema = Schema::fresh();
        let lease = Duration::from_millis(200);
        let settings = pg_settings(&schema.0, lease);
        let a = Store::open(&settings).await.unwrap();
        let b = Store::open(&settings).await.unwrap();
        assert_eq!(a.lease(), Some(lease));
        let mut later = delivery("o", 0, 2);
        later.due_ms = 5_000;
        let keys = a
            .write(vec![delivery("o", 0, 1), later], Vec::new())
            .await
            .unwrap();
        assert!(b.adopt(100).await.unwrap().is_empty(), "a's lease is live");
        assert!(b.pending().await.unwrap().is_empty(), "nor at b's start");

        // a keeps renewing for longer than the lease: the rows stay a's.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(a.renew_leases().await.unwrap(), 2);
            assert!(b.adopt(100).await.unwrap().is_empty());
        }

        // a stops renewing (it died): once the lease is over, b takes them.
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let adopted = b.adopt(100).await.unwrap();
        assert_eq!(adopted, vec![(0, keys[0]), (5_000, keys[1])]);
        assert!(b.adopt(100).await.unwrap().is_empty(), "taken once");
        assert_eq!(a.renew_leases().await.unwrap(), 0, "a owns nothing now");
        assert!(a.adopt(100).await.unwrap().is_empty(), "b's lease is live");
        assert_eq!(b.renew_leases().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_node_late_to_renew_does_not_adopt_its_own_rows_but_keeps_them() {
        let schema = Schema::fresh();
        let lease = Duration::from_millis(100);
        let settings = pg_settings(&schema.0, lease);
        let a = Store::open(&settings).await.unwrap();
        let b = Store::open(&settings).await.unwrap();
        a.write(vec![delivery("o", 0, 1), delivery("p", 0, 1)], Vec::new())
            .await
            .unwrap();
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        // Its dispatcher has them already: adopting them would run them twice.
        assert!(a.adopt(100).await.unwrap().is_empty());
        assert_eq!(a.renew_leases().await.unwrap(), 2, "taken back");
        assert!(b.adopt(100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn adoption_takes_at_most_the_limit_and_skips_rows_being_taken() {
        let schema = Schema::fresh();
        let lease = Duration::from_millis(100);
        let settings = pg_settings(&schema.0, lease);
        let a = Store::open(&settings).await.unwrap();
        let b = Store::open(&settings).await.unwrap();
        let c = Store::open(&settings).await.unwrap();
        let batch: Vec<Delivery> = (0..10).map(|i| delivery(&format!("o{i}"), 0, i)).collect();
        let keys = a.write(batch, Vec::new()).await.unwrap();
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert_eq!(b.adopt(3).await.unwrap().len(), 3);
        let (from_b, from_c) = tokio::join!(b.adopt(100), c.adopt(100));
        let mut all: Vec<u64> = from_b
            .unwrap()
            .into_iter()
            .chain(from_c.unwrap())
            .map(|(_, key)| key)
            .collect();
        all.sort_unstable();
        assert_eq!(all.len(), 7, "each row once: {all:?}");
        all.dedup();
        assert_eq!(all.len(), 7);
        assert!(keys.iter().filter(|k| all.contains(k)).count() == 7);
    }

    #[tokio::test]
    async fn held_rows_are_adopted_but_run_only_after_their_predecessor() {
        let schema = Schema::fresh();
        let lease = Duration::from_millis(100);
        let settings = pg_settings(&schema.0, lease);
        let a = Store::open(&settings).await.unwrap();
        let b = Store::open(&settings).await.unwrap();
        let keys = a
            .write(
                vec![
                    delivery("o", 0, 1),
                    delivery("o", 1, 1),
                    delivery("o", 2, 1),
                ],
                Vec::new(),
            )
            .await
            .unwrap();
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        // All three are b's now, but only the first may run.
        assert_eq!(b.adopt(100).await.unwrap(), vec![(0, keys[0])]);
        assert_eq!(b.renew_leases().await.unwrap(), 3);
        // b attempts the first and dies before releasing the second.
        let mut first = b.get(keys[0]).await.unwrap().unwrap();
        first.attempts.push(failed(500));
        b.reschedule(keys[0], &first).await.unwrap();
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let mut adopted = a.adopt(100).await.unwrap();
        adopted.sort_unstable_by_key(|&(_, key)| key);
        assert_eq!(adopted, vec![(0, keys[0]), (0, keys[1])]);
        assert!(!a.get(keys[1]).await.unwrap().unwrap().held);
        assert!(a.get(keys[2]).await.unwrap().unwrap().held);
    }

    #[tokio::test]
    async fn a_closed_node_leaves_its_rows_at_once() {
        let schema = Schema::fresh();
        let settings = pg_settings(&schema.0, Duration::from_secs(30));
        let a = Store::open(&settings).await.unwrap();
        let keys = a
            .write(vec![delivery("o", 0, 1)], Vec::new())
            .await
            .unwrap();
        a.close().await.unwrap();
        let b = Store::open(&settings).await.unwrap();
        assert_eq!(b.pending().await.unwrap(), vec![(0, keys[0])]);
        assert!(a.adopt(10).await.unwrap().is_empty());
        // A released or rescheduled row is the releasing node's.
        assert_eq!(b.renew_leases().await.unwrap(), 1);
        a.release(keys[0]).await.unwrap();
        assert_eq!(b.renew_leases().await.unwrap(), 0);
        assert_eq!(a.renew_leases().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn bad_settings_are_named_and_passwords_stay_out() {
        let bad = Store::open(&pg_settings("Not-A-Schema", Duration::from_secs(1))).await;
        let error = bad.err().unwrap().to_string();
        assert!(error.contains("\"Not-A-Schema\""), "{error}");
        assert!(error.starts_with("storage (PostgreSQL):"), "{error}");

        let mut settings = pg_settings("wasmhook", Duration::from_secs(1));
        let BackendSettings::Postgres(pg) = &mut settings.backend else {
            unreachable!()
        };
        pg.target = crate::tls::postgres::PgTarget::parse(
            "postgres://app:hunter2secret@127.0.0.1:1/app?sslmode=disable&connect_timeout=2",
            &crate::tls::TlsFiles::default(),
        )
        .unwrap();
        let error = Store::open(&settings).await.err().unwrap();
        assert!(!error.is_locked());
        let shown = format!("{error} {error:?} {settings:?} {}", settings.location());
        assert!(shown.contains("storage (PostgreSQL)"), "{shown}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        let error = status(&settings).await.err().unwrap();
        assert!(!error.to_string().contains("hunter2secret"), "{error}");
    }
}

/// Finished deliveries are in the log, pending ones in the outbox; a
/// listing merges them newest first, pages by id, filters by every field;
/// a resend puts a finished one back (out of the log and the DLQ), and
/// retention removes only finished ones.
async fn the_delivery_log_lists_shows_resends_and_expires(store: &Store) {
    let of_event = |observer: &str, event: &str| {
        let mut d = delivery(observer, 0, 1);
        let mut e = (*d.event).clone();
        e.id = event.into();
        d.event = e.into();
        d
    };
    let keys = store
        .write(
            vec![
                of_event("a", "e-a"),
                of_event("b", "e-b"),
                of_event("c", "e-c"),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    let mut a = store.get(keys[0]).await.unwrap().unwrap();
    a.attempts.push(Attempt {
        status: Some(200),
        error: None,
        response: Some("thanks".into()),
        ..failed(200)
    });
    store.complete(keys[0], &a).await.unwrap();
    let mut b = store.get(keys[1]).await.unwrap().unwrap();
    b.attempts.push(failed(500));
    store
        .bury(keys[1], b.clone(), "gave up".into())
        .await
        .unwrap();
    let c = store.get(keys[2]).await.unwrap().unwrap();

    let list = |query: Query| async move {
        store
            .deliveries(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.delivery.id, l.status))
            .collect::<Vec<_>>()
    };
    use super::log::Status::{Dead, Delivered, Pending};
    assert_eq!(
        list(Query::default()).await,
        [
            (c.id.clone(), Pending),
            (b.id.clone(), Dead),
            (a.id.clone(), Delivered)
        ]
    );
    let only = |status| Query {
        status: Some(status),
        ..Query::default()
    };
    assert_eq!(list(only(Delivered)).await, [(a.id.clone(), Delivered)]);
    assert_eq!(list(only(Pending)).await, [(c.id.clone(), Pending)]);
    let by_observer = Query {
        observer: Some("b".into()),
        ..Query::default()
    };
    assert_eq!(list(by_observer).await, [(b.id.clone(), Dead)]);
    let by_event = Query {
        event: Some(a.event.id.clone()),
        ..Query::default()
    };
    assert_eq!(list(by_event).await, [(a.id.clone(), Delivered)]);
    let first_page = Query {
        limit: 2,
        ..Query::default()
    };
    assert_eq!(list(first_page).await.len(), 2);
    let next_page = Query {
        before: Some(b.id.clone()),
        ..Query::default()
    };
    assert_eq!(list(next_page).await, [(a.id.clone(), Delivered)]);
    let future = Query {
        since_ms: Some(now_ms() + 60_000),
        ..Query::default()
    };
    assert!(list(future).await.is_empty());

    let shown = store.delivery(&a.id).await.unwrap();
    assert_eq!(shown.status, Delivered);
    assert!(shown.finished_at_ms.is_some());
    assert_eq!(
        shown.delivery.attempts[0].response.as_deref(),
        Some("thanks")
    );
    let dead = store.delivery(&b.id).await.unwrap();
    assert_eq!(dead.reason.as_deref(), Some("gave up"));
    assert_eq!(store.delivery(&c.id).await.unwrap().status, Pending);
    assert!(matches!(
        store.delivery("no-such-id").await,
        Err(StoreError::NoDelivery(_))
    ));
    assert!(matches!(
        store.resend(&c.id, now_ms()).await,
        Err(StoreError::Pending(_))
    ));

    // Resent: pending again with a fresh budget, the same id.
    let key = store.resend(&a.id, now_ms()).await.unwrap();
    let again = store.get(key).await.unwrap().unwrap();
    assert_eq!(again.id, a.id);
    assert!(again.attempts.is_empty());
    assert_eq!(again.earlier_attempts.len(), 1);
    assert_eq!(store.delivery(&a.id).await.unwrap().status, Pending);
    // A dead one leaves the DLQ too.
    assert_eq!(store.dlq_len().await, 1);
    store.resend(&b.id, now_ms()).await.unwrap();
    assert_eq!(store.dlq_len().await, 0);
    assert_eq!(store.outbox_len().await, 3);
    assert_eq!(list(only(Pending)).await.len(), 3);

    // A DLQ retry takes it out of the log as well.
    let mut c_dead = store.get(keys[2]).await.unwrap().unwrap();
    c_dead.attempts.push(failed(400));
    store.bury(keys[2], c_dead, "refused".into()).await.unwrap();
    assert_eq!(store.delivery(&c.id).await.unwrap().status, Dead);
    store.requeue(&c.id).await.unwrap();
    assert_eq!(store.delivery(&c.id).await.unwrap().status, Pending);
    let ids: Vec<String> = list(Query::default())
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [c.id.clone(), b.id.clone(), a.id.clone()], "once each");

    // Retention takes finished deliveries only.
    let mut a_again = again;
    a_again.attempts.push(failed(200));
    store.complete(key, &a_again).await.unwrap();
    assert_eq!(list(only(Delivered)).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let removed = store
        .log_enforce(Retention {
            max_age: Some(Duration::ZERO),
            max_bytes: None,
        })
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(list(only(Delivered)).await.is_empty());
    assert_eq!(list(Query::default()).await.len(), 2, "pending stay");
}

/// A DLQ listing comes a page at a time: after the last id of the page
/// before, at most `limit` entries, graves' letters among them, filtered
/// before the limit.
async fn the_dlq_lists_a_page_at_a_time(store: &Store) {
    let mut family = Family::default();
    let dead: Vec<(Delivery, String)> = (0..3)
        .map(|i| {
            let mut d = delivery(&format!("o{}", i % 2), 0, i);
            d.id = family.next_id();
            (d, "refused".into())
        })
        .collect();
    store.write(Vec::new(), dead).await.unwrap();
    letters(store, 4, now_ms()).await;
    let all = listed(store).await;
    assert_eq!(all.len(), 7);
    let page = |after: Option<&String>, limit: usize, filter: Filter| {
        let after = after.cloned();
        async move {
            store
                .dlq_page(
                    &filter,
                    &Page {
                        after,
                        limit: Some(limit),
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect::<Vec<_>>()
        }
    };
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let got = page(after.as_ref(), 2, Filter::default()).await;
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 2);
        after = got.last().cloned();
        seen.extend(got);
    }
    assert_eq!(seen, all);
    let o1 = Filter {
        observer: Some("o1".into()),
        ..Filter::default()
    };
    let expected: Vec<String> = store
        .dlq_list(&o1)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(expected.len(), 3);
    let first = page(None, 2, o1.clone()).await;
    assert_eq!(first, expected[..2]);
    assert_eq!(page(first.last(), 10, o1).await, expected[2..]);
}
