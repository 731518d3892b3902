//! The delivery queue's store contract on both backends, without a server: outcomes are
//! recorded in batches, each row re-checked on itself, so a batch that holds a delivery whose
//! lease was taken over records the rest and leaves that one to its new owner. An event's body
//! is stored once however many webhooks receive it, and rows queued before that change still
//! carry (and send) their own.

use model_ledger::store::{
    AdoptedOutcomes, AttemptRecord, DeliveryJob, DeliveryRecord, DeliveryStatus, Settled,
    SettledDeliveries, SharedStore, WebhookEventRow, WebhookRecord, WebhookStatus,
    event_delivery_id,
};

use crate::both_backends;
use crate::helpers::{Backend, fresh_pg_database};

/// A migrated store of its own (no server runs, so no worker leases behind the test's back).
async fn fresh_store(backend: Backend, dir: &tempfile::TempDir) -> SharedStore {
    fresh_store_at(backend, dir).await.0
}

/// [`fresh_store`] and its database URL, for a test that looks at the tables themselves.
async fn fresh_store_at(backend: Backend, dir: &tempfile::TempDir) -> (SharedStore, String) {
    let url = match backend {
        Backend::Postgres => fresh_pg_database().await,
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("store.db").display()),
    };
    let store = model_ledger::store::connect(&url, 4)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, url)
}

/// Runs one statement on the store's database directly; `Some(n)` is a `SELECT`'s single
/// integer.
async fn raw_sql(backend: Backend, url: &str, statement: &str) -> Option<i64> {
    let select = statement.trim_start().starts_with("SELECT");
    let statement = sqlx::AssertSqlSafe(statement.to_string());
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("connect pg");
            if select {
                let (n,): (i64,) = sqlx::query_as(statement)
                    .fetch_one(&pool)
                    .await
                    .expect("select");
                return Some(n);
            }
            sqlx::query(statement)
                .execute(&pool)
                .await
                .expect("statement");
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url)
                .await
                .expect("connect sqlite");
            if select {
                let (n,): (i64,) = sqlx::query_as(statement)
                    .fetch_one(&pool)
                    .await
                    .expect("select");
                return Some(n);
            }
            sqlx::query(statement)
                .execute(&pool)
                .await
                .expect("statement");
        }
    }
    None
}

fn webhook(id: &str, events: &[&str], at_us: i64) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        name: format!("receiver {id}"),
        description: None,
        url: format!("http://127.0.0.1:9/{id}"),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret_sealed: None,
        previous_secret_sealed: None,
        previous_secret_until_us: None,
        status: WebhookStatus::Active,
        created_at_us: at_us,
        updated_at_us: at_us,
    }
}

fn attempt(
    status: DeliveryStatus,
    at_us: i64,
    code: Option<i32>,
    error: Option<&str>,
) -> AttemptRecord {
    AttemptRecord {
        status,
        next_attempt_at_us: at_us + 5_000_000,
        attempted_at_us: at_us,
        response_code: code,
        latency_ms: Some(3),
        error: error.map(str::to_string),
    }
}

both_backends!(
    a_batch_of_outcomes_records_only_what_its_owner_still_leases,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(backend, &dir).await;
        let t0: i64 = 1_000_000_000;
        store
            .insert_webhook(&WebhookRecord {
                id: "wh-1".into(),
                name: "receiver".into(),
                description: None,
                url: "http://127.0.0.1:9/hook".into(),
                events: vec!["model_version.created".into()],
                secret_sealed: None,
                previous_secret_sealed: None,
                previous_secret_until_us: None,
                status: WebhookStatus::Active,
                created_at_us: t0,
                updated_at_us: t0,
            })
            .await
            .expect("insert webhook");
        let (cursor, active) = store.webhook_cursor().await.expect("cursor");
        assert!(active);
        // Three events of three models: three queue heads, all leasable at once.
        let rows: Vec<WebhookEventRow> = (1..=3)
            .map(|i| WebhookEventRow {
                position: cursor + i,
                event_name: "model_version.created".into(),
                order_key: format!("model-{i}"),
                occurred_at_us: t0 + i,
                payload: format!("{{\"n\":{i}}}"),
                checkpoint_id: None,
            })
            .collect();
        let queued = queue_all(&store, cursor, cursor + 3, &rows, t0 + 10)
            .await
            .map(|f| f.written);
        assert_eq!(queued, Some(3));

        // `a` leases one delivery briefly; once that lease has run out, `b` leases all three.
        let first = store
            .lease_webhook_deliveries("a", t0 + 20, t0 + 30, 1, &[])
            .await
            .expect("lease a");
        assert_eq!(first.len(), 1);
        let taken_over = first[0].id.clone();
        let all = store
            .lease_webhook_deliveries("b", t0 + 40, t0 + 1_000_000, 10, &[])
            .await
            .expect("lease b");
        let mut ids: Vec<String> = all.iter().map(|j| j.id.clone()).collect();
        ids.sort();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(&taken_over));

        // `a`'s late outcome is not written: the delivery belongs to `b` now.
        let late = store
            .finish_webhook_deliveries(
                "a",
                &[(
                    taken_over.clone(),
                    attempt(DeliveryStatus::Succeeded, t0 + 50, Some(200), None),
                )],
            )
            .await
            .expect("finish a");
        assert!(late.is_empty(), "{late:?}");

        // `b` records three different outcomes in one batch.
        let outcomes = vec![
            (
                ids[0].clone(),
                attempt(DeliveryStatus::Succeeded, t0 + 60, Some(200), None),
            ),
            (
                ids[1].clone(),
                attempt(
                    DeliveryStatus::Pending,
                    t0 + 61,
                    Some(503),
                    Some("HTTP 503"),
                ),
            ),
            (
                ids[2].clone(),
                attempt(
                    DeliveryStatus::Failed,
                    t0 + 62,
                    None,
                    Some("connection refused"),
                ),
            ),
        ];
        let mut recorded = store
            .finish_webhook_deliveries("b", &outcomes)
            .await
            .expect("finish b");
        recorded.sort();
        assert_eq!(recorded, ids);

        let history = store
            .list_webhook_deliveries("wh-1", 0, 10)
            .await
            .expect("history");
        assert_eq!(history.len(), 3);
        for (id, expected) in &outcomes {
            let row = history.iter().find(|d| &d.id == id).expect("row");
            assert_eq!(row.status, expected.status, "{row:?}");
            assert_eq!(row.attempts, 1, "{row:?}");
            assert_eq!(row.last_response_code, expected.response_code, "{row:?}");
            assert_eq!(row.last_error, expected.error, "{row:?}");
            assert_eq!(row.last_latency_ms, Some(3));
            assert_eq!(row.first_attempt_at_us, Some(expected.attempted_at_us));
            assert_eq!(row.next_attempt_at_us, expected.next_attempt_at_us);
        }

        // Recorded outcomes released their leases: a second batch for them writes nothing,
        // and the pending one is leasable again once due (and not before).
        let again = store
            .finish_webhook_deliveries("b", &outcomes)
            .await
            .expect("finish again");
        assert!(again.is_empty(), "{again:?}");
        let early = store
            .lease_webhook_deliveries("c", t0 + 100, t0 + 1_000_000, 10, &[])
            .await
            .expect("lease early");
        assert!(early.is_empty(), "{early:?}");
        let due = store
            .lease_webhook_deliveries("c", t0 + 61 + 5_000_000, t0 + 9_000_000, 10, &[])
            .await
            .expect("lease due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, ids[1]);
        assert_eq!(due[0].attempts, 1);
    }
);

both_backends!(
    an_event_body_is_stored_once_and_every_receiver_gets_it,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, url) = fresh_store_at(backend, &dir).await;
        let t0: i64 = 1_000_000_000;
        for (id, events) in [
            ("wh-a", &["model_version.created"][..]),
            (
                "wh-b",
                &["model_version.created", "model_version_tag.set"][..],
            ),
            ("wh-c", &["model_version_tag.set"][..]),
            ("wh-d", &["registered_model.created"][..]),
        ] {
            store
                .insert_webhook(&webhook(id, events, t0))
                .await
                .expect("insert webhook");
        }
        let (cursor, _) = store.webhook_cursor().await.expect("cursor");
        let names = [
            "model_version.created",
            "model_version_tag.set",
            "model_version.created",
        ];
        let rows: Vec<WebhookEventRow> = names
            .iter()
            .enumerate()
            .map(|(i, name)| WebhookEventRow {
                position: cursor + 1 + i as i64,
                event_name: name.to_string(),
                order_key: format!("model-{i}"),
                occurred_at_us: t0 + 1,
                payload: format!("{{\"event\":{i}}}"),
                checkpoint_id: None,
            })
            .collect();
        let queued = queue_all(&store, cursor, cursor + 3, &rows, t0 + 10)
            .await
            .map(|f| f.written);
        // created -> a, b; tag.set -> b, c; created -> a, b. Nobody receives the fourth kind.
        assert_eq!(queued, Some(6));
        let bodies = raw_sql(backend, &url, "SELECT COUNT(*) FROM webhook_payloads").await;
        assert_eq!(
            bodies,
            Some(3),
            "one stored body per event, not per delivery"
        );
        let inline = raw_sql(
            backend,
            &url,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE payload IS NOT NULL",
        )
        .await;
        assert_eq!(inline, Some(0));

        // A row queued before bodies moved out carries its own, and sends it.
        raw_sql(
            backend,
            &url,
            &format!(
                "INSERT INTO webhook_deliveries (id, webhook_id, position, event_name, \
                 order_key, payload, status, next_attempt_at_us, created_at_us, updated_at_us) \
                 VALUES ('old-row', 'wh-d', {}, 'registered_model.created', 'model-old', \
                 '{{\"old\":true}}', 'pending', {t0}, {t0}, {t0})",
                cursor
            ),
        )
        .await;

        let jobs = store
            .lease_webhook_deliveries("w", t0 + 20, t0 + 1_000_000, 20, &[])
            .await
            .expect("lease");
        let mut got: Vec<(String, String)> = jobs
            .iter()
            .map(|j| {
                (
                    j.webhook_id.clone(),
                    String::from_utf8_lossy(&j.payload).into_owned(),
                )
            })
            .collect();
        got.sort();
        let expected: Vec<(String, String)> = [
            ("wh-a", "{\"event\":0}"),
            ("wh-a", "{\"event\":2}"),
            ("wh-b", "{\"event\":0}"),
            ("wh-b", "{\"event\":1}"),
            ("wh-b", "{\"event\":2}"),
            ("wh-c", "{\"event\":1}"),
            ("wh-d", "{\"old\":true}"),
        ]
        .iter()
        .map(|(w, p)| (w.to_string(), p.to_string()))
        .collect();
        assert_eq!(got, expected);
    }
);

/// Fans out `events` with nothing settled by a leader: every delivery is queued.
async fn queue_all(
    store: &SharedStore,
    expected: i64,
    advance_to: i64,
    events: &[WebhookEventRow],
    now_us: i64,
) -> Option<model_ledger::store::FannedOut> {
    store
        .fan_out_webhook_events(
            expected,
            advance_to,
            events,
            now_us,
            &SettledDeliveries::new(),
            &AdoptedOutcomes::default(),
        )
        .await
        .expect("fan out")
}

/// Which webhook each job is for and which event it carries, in the jobs' order.
fn webhook_and_position(jobs: &[DeliveryJob]) -> Vec<(String, i64)> {
    jobs.iter()
        .map(|j| (j.webhook_id.clone(), j.position))
        .collect()
}

/// The delivery of the event at `position` in a webhook's history.
fn row_at(history: &[DeliveryRecord], position: i64) -> DeliveryRecord {
    history
        .iter()
        .find(|d| d.position == position)
        .cloned()
        .expect("a row")
}

fn created(position: i64, model: &str, at_us: i64) -> WebhookEventRow {
    WebhookEventRow {
        position,
        event_name: "model_version.created".into(),
        order_key: model.into(),
        occurred_at_us: at_us,
        payload: format!("{{\"position\":{position}}}"),
        checkpoint_id: None,
    }
}

both_backends!(
    a_fan_out_records_what_its_leader_settled_and_queues_the_rest,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(backend, &dir).await;
        let t0: i64 = 1_000_000_000;
        for id in ["wh-a", "wh-b", "wh-c"] {
            store
                .insert_webhook(&webhook(id, &["model_version.created"], t0))
                .await
                .expect("insert webhook");
        }
        let (cursor, _) = store.webhook_cursor().await.expect("cursor");
        let events = vec![
            created(cursor + 1, "m1", t0 + 1),
            created(cursor + 2, "m1", t0 + 2),
            created(cursor + 3, "m2", t0 + 3),
        ];
        // The leader delivered wh-a's first m1 event, got a 503 for its m2 event, still waits
        // for wh-b's first m1 event, and delivered wh-c's before wh-c was disabled.
        let retry_at = t0 + 5_000_000;
        let mut settled = SettledDeliveries::new();
        settled.insert(
            ("wh-a".into(), cursor + 1),
            Settled::Attempted(attempt(DeliveryStatus::Succeeded, t0 + 5, Some(200), None)),
        );
        settled.insert(
            ("wh-a".into(), cursor + 3),
            Settled::Attempted(AttemptRecord {
                next_attempt_at_us: retry_at,
                ..attempt(DeliveryStatus::Pending, t0 + 6, Some(503), Some("HTTP 503"))
            }),
        );
        settled.insert(
            ("wh-b".into(), cursor + 1),
            Settled::InFlight {
                owner: "me".into(),
                lease_until_us: t0 + 1_000_000,
            },
        );
        settled.insert(
            ("wh-c".into(), cursor + 1),
            Settled::Attempted(attempt(DeliveryStatus::Succeeded, t0 + 7, Some(200), None)),
        );
        let mut disabled = webhook("wh-c", &["model_version.created"], t0);
        disabled.status = WebhookStatus::Disabled;
        assert!(store.update_webhook(&disabled).await.expect("disable"));

        let fanned = store
            .fan_out_webhook_events(
                cursor,
                cursor + 3,
                &events,
                t0 + 10,
                &settled,
                &AdoptedOutcomes::default(),
            )
            .await
            .expect("fan out")
            .expect("cursor was where we said");
        // wh-a and wh-b get all three; disabled wh-c only the one it was sent. Pending and
        // unleased: wh-a's second m1 event and its retry, wh-b's second m1 and its m2 event.
        assert_eq!((fanned.written, fanned.waiting), (7, 4));
        assert_eq!(store.webhook_cursor().await.expect("cursor").0, cursor + 3);

        let history = store
            .list_webhook_deliveries("wh-a", 0, 10)
            .await
            .expect("history");
        let row = |position: i64| row_at(&history, position);
        let delivered = row(cursor + 1);
        assert_eq!(delivered.id, event_delivery_id("wh-a", cursor + 1));
        assert_eq!(delivered.status, DeliveryStatus::Succeeded);
        assert_eq!(delivered.attempts, 1);
        assert_eq!(delivered.last_response_code, Some(200));
        assert_eq!(delivered.first_attempt_at_us, Some(t0 + 5));
        let retried = row(cursor + 3);
        assert_eq!(retried.status, DeliveryStatus::Pending);
        assert_eq!(retried.attempts, 1);
        assert_eq!(retried.next_attempt_at_us, retry_at);
        assert_eq!(retried.last_error.as_deref(), Some("HTTP 503"));
        let queued = row(cursor + 2);
        assert_eq!(
            (queued.status, queued.attempts),
            (DeliveryStatus::Pending, 0)
        );
        let sent_before_disabling = store
            .list_webhook_deliveries("wh-c", 0, 10)
            .await
            .expect("history");
        assert_eq!(sent_before_disabling.len(), 1);
        assert_eq!(sent_before_disabling[0].status, DeliveryStatus::Succeeded);

        // The queues a new event of each would have to wait behind.
        let asked: Vec<(String, String)> = [
            ("wh-a", "m1"),
            ("wh-a", "m2"),
            ("wh-a", "m9"),
            ("wh-b", "m1"),
            ("wh-c", "m1"),
        ]
        .iter()
        .map(|(w, m)| (w.to_string(), m.to_string()))
        .collect();
        let mut pending: Vec<(String, String)> = store
            .pending_webhook_queues(Some(&asked))
            .await
            .expect("pending queues")
            .into_iter()
            .collect();
        pending.sort();
        // All of them, asked for none: wh-b's m2 event too, which was not sent.
        let mut all: Vec<(String, String)> = store
            .pending_webhook_queues(None)
            .await
            .expect("pending queues")
            .into_iter()
            .collect();
        all.sort();
        let mut with_wh_b_m2 = pending.clone();
        with_wh_b_m2.push(("wh-b".to_string(), "m2".to_string()));
        with_wh_b_m2.sort();
        assert_eq!(all, with_wh_b_m2);
        let expected: Vec<(String, String)> = [("wh-a", "m1"), ("wh-a", "m2"), ("wh-b", "m1")]
            .iter()
            .map(|(w, m)| (w.to_string(), m.to_string()))
            .collect();
        assert_eq!(pending, expected);

        // Another process leases the heads: wh-a's second m1 event (its first was delivered)
        // and wh-b's m2 event; wh-a's retry is not due, wh-b's second m1 event waits behind
        // the one still in flight.
        let leased = store
            .lease_webhook_deliveries("other", t0 + 20, t0 + 30, 10, &[])
            .await
            .expect("lease");
        let mut leased = webhook_and_position(&leased);
        leased.sort();
        assert_eq!(
            leased,
            vec![
                ("wh-a".to_string(), cursor + 2),
                ("wh-b".to_string(), cursor + 3)
            ]
        );
        // The leader's late outcome is written under its lease.
        let in_flight = event_delivery_id("wh-b", cursor + 1);
        let recorded = store
            .finish_webhook_deliveries(
                "me",
                &[(
                    in_flight.clone(),
                    attempt(DeliveryStatus::Succeeded, t0 + 40, Some(200), None),
                )],
            )
            .await
            .expect("finish");
        assert_eq!(recorded, vec![in_flight]);
    }
);

both_backends!(
    the_fan_out_has_one_leader_until_its_lease_runs_out_or_it_lets_go,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(backend, &dir).await;
        let t0: i64 = 1_000_000_000;
        let lead = |owner: &'static str, now: i64, until: i64| {
            let store = store.clone();
            async move {
                store
                    .lead_webhook_fan_out(owner, t0 + now, t0 + until)
                    .await
                    .expect("lead")
            }
        };
        assert!(lead("a", 0, 100).await, "nobody led");
        assert!(!lead("b", 50, 150).await, "a leads until 100");
        assert!(lead("a", 60, 200).await, "a renews");
        assert!(!lead("b", 150, 250).await, "renewed until 200");
        assert!(lead("b", 201, 400).await, "a's lease ran out");
        assert!(!lead("a", 210, 300).await);
        store.release_webhook_fan_out("a").await.expect("release");
        assert!(!lead("a", 220, 300).await, "only the leader can let go");
        store.release_webhook_fan_out("b").await.expect("release");
        assert!(lead("a", 230, 300).await, "free at once once let go");
    }
);

/// A queue that grows by thousands of rows gets fresh planner statistics from the fan-out
/// itself, not a minute later from autovacuum (PostgreSQL; SQLite plans without them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_queue_gets_fresh_statistics_from_the_fan_out() {
    let backend = Backend::Postgres;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, url) = fresh_store_at(backend, &dir).await;
    let t0: i64 = 1_000_000_000;
    store
        .insert_webhook(&webhook("wh-1", &["model_version.created"], t0))
        .await
        .expect("insert webhook");
    let analyzed = "SELECT analyze_count FROM pg_stat_user_tables \
                    WHERE relname = 'webhook_deliveries'";
    let (cursor, _) = store.webhook_cursor().await.expect("cursor");
    // A few rows refresh nothing.
    let few: Vec<WebhookEventRow> = (1..=10)
        .map(|i| created(cursor + i, &format!("m{}", i % 20), t0 + i))
        .collect();
    queue_all(&store, cursor, cursor + 10, &few, t0 + 10)
        .await
        .expect("cursor was where we said");
    // Nor do five thousand the leader already delivered: they never enter the lease's indexes.
    let delivered: Vec<WebhookEventRow> = (11..=5_010)
        .map(|i| created(cursor + i, &format!("m{}", i % 20), t0 + i))
        .collect();
    let settled: SettledDeliveries = delivered
        .iter()
        .map(|e| {
            (
                ("wh-1".to_string(), e.position),
                Settled::Attempted(attempt(DeliveryStatus::Succeeded, t0 + 15, Some(200), None)),
            )
        })
        .collect();
    let written = store
        .fan_out_webhook_events(
            cursor + 10,
            cursor + 5_010,
            &delivered,
            t0 + 15,
            &settled,
            &AdoptedOutcomes::default(),
        )
        .await
        .expect("fan out")
        .expect("cursor was where we said");
    assert_eq!((written.written, written.waiting), (5_000, 0));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(raw_sql(backend, &url, analyzed).await, Some(0));
    // Five thousand queued do, soon after the fan-out returns.
    let many: Vec<WebhookEventRow> = (5_011..=10_010)
        .map(|i| created(cursor + i, &format!("m{}", i % 20), t0 + i))
        .collect();
    queue_all(&store, cursor + 5_010, cursor + 10_010, &many, t0 + 20)
        .await
        .expect("cursor was where we said");
    let mut count = Some(0);
    for _ in 0..100 {
        count = raw_sql(backend, &url, analyzed).await;
        if count > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count, Some(1), "one ANALYZE after 5,010 queued rows");
}

both_backends!(
    the_leader_adopts_a_queue_from_its_head_while_its_deliveries_are_due_and_free,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(backend, &dir).await;
        let t0: i64 = 1_000_000_000;
        for id in ["wh-a", "wh-b"] {
            store
                .insert_webhook(&webhook(id, &["model_version.created"], t0))
                .await
                .expect("insert webhook");
        }
        let (cursor, _) = store.webhook_cursor().await.expect("cursor");
        let p = |n: i64| cursor + n;
        // wh-a's m1 queue: two queued, then one due again only later (a 503), then one more;
        // its m2 queue: one queued. wh-b's m1 queue: two queued.
        let events = vec![
            created(p(1), "m1", t0),
            created(p(2), "m1", t0),
            created(p(3), "m1", t0),
            created(p(4), "m1", t0),
            created(p(5), "m2", t0),
        ];
        let now = t0 + 100;
        let mut settled = SettledDeliveries::new();
        settled.insert(
            ("wh-a".into(), p(3)),
            Settled::Attempted(AttemptRecord {
                next_attempt_at_us: now + 60_000_000,
                ..attempt(DeliveryStatus::Pending, t0 + 1, Some(503), Some("HTTP 503"))
            }),
        );
        for (webhook, position) in [("wh-b", p(3)), ("wh-b", p(4)), ("wh-b", p(5))] {
            settled.insert(
                (webhook.into(), position),
                Settled::Attempted(attempt(DeliveryStatus::Succeeded, t0 + 1, Some(200), None)),
            );
        }
        store
            .fan_out_webhook_events(
                cursor,
                p(5),
                &events,
                t0 + 10,
                &settled,
                &AdoptedOutcomes::default(),
            )
            .await
            .expect("fan out")
            .expect("cursor");
        // Another process leases wh-b's m1 head first: that queue is its to send.
        let other = store
            .lease_webhook_deliveries("other", now, now + 1_000_000, 1, &["wh-a".to_string()])
            .await
            .expect("lease");
        assert_eq!(webhook_and_position(&other), [("wh-b".to_string(), p(1))]);

        let queue = |w: &str, k: &str| (w.to_string(), k.to_string());
        let mut adopted = store
            .adopt_webhook_queues(
                "leader",
                now,
                now + 1_000_000,
                &[
                    queue("wh-a", "m1"),
                    queue("wh-a", "m2"),
                    queue("wh-b", "m1"),
                ],
                10,
            )
            .await
            .expect("adopt");
        adopted.sort_by(|a, b| (&a.webhook_id, &a.order_key).cmp(&(&b.webhook_id, &b.order_key)));
        let summary: Vec<(String, String, Vec<i64>, bool)> = adopted
            .iter()
            .map(|q| {
                (
                    q.webhook_id.clone(),
                    q.order_key.clone(),
                    q.jobs.iter().map(|j| j.position).collect(),
                    q.whole,
                )
            })
            .collect();
        // m1 up to the delivery that is not due (it and what follows wait), all of m2, and
        // nothing of the queue whose head another process holds.
        assert_eq!(
            summary,
            [
                (
                    "wh-a".to_string(),
                    "m1".to_string(),
                    vec![p(1), p(2)],
                    false
                ),
                ("wh-a".to_string(), "m2".to_string(), vec![p(5)], true),
            ]
        );
        let first = &adopted[0].jobs[0];
        assert_eq!(first.id, event_delivery_id("wh-a", p(1)));
        assert_eq!(first.payload, format!("{{\"position\":{}}}", p(1)));
        assert_eq!(first.attempts, 0);
        // Leased to the leader: the lease finds nothing of them.
        let none = store
            .lease_webhook_deliveries("other", now, now + 1_000_000, 10, &["wh-b".to_string()])
            .await
            .expect("lease");
        assert!(none.is_empty(), "{none:?}");
        // Adopted again: nothing, every row is leased.
        let again = store
            .adopt_webhook_queues("leader", now, now + 1_000_000, &[queue("wh-a", "m2")], 10)
            .await
            .expect("adopt again");
        assert!(again.is_empty());

        // The leader delivered p1 and never started p2: the next fan-out records the one and
        // releases the other, which the lease may then send.
        let outcomes = AdoptedOutcomes {
            owner: "leader".into(),
            attempted: vec![(
                event_delivery_id("wh-a", p(1)),
                attempt(DeliveryStatus::Succeeded, now + 5, Some(200), None),
            )],
            unstarted: vec![event_delivery_id("wh-a", p(2))],
        };
        store
            .fan_out_webhook_events(
                p(5),
                p(6),
                &[created(p(6), "m3", now)],
                now + 10,
                &SettledDeliveries::new(),
                &outcomes,
            )
            .await
            .expect("fan out")
            .expect("cursor");
        let history = store
            .list_webhook_deliveries("wh-a", 0, 20)
            .await
            .expect("history");
        let row = |position: i64| row_at(&history, position);
        assert_eq!(row(p(1)).status, DeliveryStatus::Succeeded);
        assert_eq!(row(p(1)).attempts, 1);
        assert_eq!(row(p(2)).status, DeliveryStatus::Pending);
        assert_eq!(row(p(2)).attempts, 0);
        let released = store
            .lease_webhook_deliveries(
                "other",
                now + 20,
                now + 1_000_000,
                10,
                &["wh-b".to_string()],
            )
            .await
            .expect("lease");
        assert_eq!(
            webhook_and_position(&released),
            [("wh-a".to_string(), p(2)), ("wh-a".to_string(), p(6))],
            "m1's released head and the new m3 event"
        );

        // At most `limit` in all: the rest keeps the queue pending.
        queue_all(
            &store,
            p(6),
            p(8),
            &[created(p(7), "m4", now), created(p(8), "m4", now)],
            now + 30,
        )
        .await
        .expect("cursor");
        let capped = store
            .adopt_webhook_queues(
                "leader",
                now + 40,
                now + 1_000_000,
                &[queue("wh-a", "m4")],
                1,
            )
            .await
            .expect("adopt capped");
        assert_eq!(capped.len(), 1);
        assert_eq!(
            (webhook_and_position(&capped[0].jobs), capped[0].whole),
            (vec![("wh-a".to_string(), p(7))], false)
        );
    }
);
