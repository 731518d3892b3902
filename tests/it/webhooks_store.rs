//! The delivery queue's store contract on both backends, without a server: outcomes are
//! recorded in batches, each row re-checked on itself, so a batch that holds a delivery whose
//! lease was taken over records the rest and leaves that one to its new owner. An event's body
//! is stored once however many webhooks receive it, and rows queued before that change still
//! carry (and send) their own.

use model_ledger::store::{
    AttemptRecord, DeliveryJob, DeliveryStatus, HandOff, SharedStore, WebhookEventRow,
    WebhookRecord, WebhookStatus,
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
        let queued = store
            .fan_out_webhook_events(cursor, cursor + 3, &rows, t0 + 10, None)
            .await
            .expect("fan out")
            .map(|f| f.queued);
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
        let queued = store
            .fan_out_webhook_events(cursor, cursor + 3, &rows, t0 + 10, None)
            .await
            .expect("fan out")
            .map(|f| f.queued);
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
            .map(|j| (j.webhook_id.clone(), j.payload.clone()))
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

/// Which webhook each job is for and which event it carries, in the jobs' order.
fn webhook_and_position(jobs: &[DeliveryJob]) -> Vec<(String, i64)> {
    jobs.iter()
        .map(|j| (j.webhook_id.clone(), j.position))
        .collect()
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
    a_fan_out_hands_off_only_queue_heads_within_its_limits,
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
        let hand_off = |limit: usize, in_flight: &[(&str, usize)]| HandOff {
            owner: "me".into(),
            lease_until_us: t0 + 1_000_000,
            limit,
            per_webhook: 2,
            in_flight: in_flight
                .iter()
                .map(|(id, n)| (id.to_string(), *n))
                .collect(),
        };

        // Two events of model m1, one of m2, to two webhooks: the heads are (a, m1 first),
        // (a, m2), (b, m1 first), (b, m2); wh-b already has one in flight here and may have two,
        // so only one of its heads is handed off.
        let first = vec![
            created(cursor + 1, "m1", t0 + 1),
            created(cursor + 2, "m1", t0 + 2),
            created(cursor + 3, "m2", t0 + 3),
        ];
        let fanned = store
            .fan_out_webhook_events(
                cursor,
                cursor + 3,
                &first,
                t0 + 10,
                Some(&hand_off(10, &[("wh-b", 1)])),
            )
            .await
            .expect("fan out")
            .expect("cursor was where we said");
        assert_eq!(fanned.queued, 6);
        let mut handed = webhook_and_position(&fanned.leased);
        handed.sort();
        assert_eq!(
            handed,
            vec![
                ("wh-a".to_string(), cursor + 1),
                ("wh-a".to_string(), cursor + 3),
                ("wh-b".to_string(), cursor + 1),
            ]
        );
        let positions: Vec<i64> = fanned.leased.iter().map(|j| j.position).collect();
        assert!(positions.is_sorted(), "oldest first: {positions:?}");
        let job = fanned
            .leased
            .iter()
            .find(|j| j.webhook_id == "wh-a" && j.position == cursor + 1)
            .expect("wh-a's first m1 delivery");
        assert_eq!(job.payload, format!("{{\"position\":{}}}", cursor + 1));
        assert_eq!(job.url, "http://127.0.0.1:9/wh-a");
        assert_eq!(job.attempts, 0);
        assert_eq!(job.webhook_status, Some(WebhookStatus::Active));

        // What was handed off is leased: another owner gets only the one head left unleased
        // (wh-b's m2); wh-a's and wh-b's second m1 events wait behind their heads.
        let others = store
            .lease_webhook_deliveries("other", t0 + 20, t0 + 30, 10, &[])
            .await
            .expect("lease");
        let others = webhook_and_position(&others);
        assert_eq!(others, vec![("wh-b".to_string(), cursor + 3)]);

        // A later event of m1 finds its queues pending in the database and is not handed off;
        // one of m3 is, within the limit of one.
        let second = vec![
            created(cursor + 4, "m1", t0 + 4),
            created(cursor + 5, "m3", t0 + 5),
        ];
        let fanned = store
            .fan_out_webhook_events(
                cursor + 3,
                cursor + 5,
                &second,
                t0 + 40,
                Some(&hand_off(1, &[])),
            )
            .await
            .expect("fan out")
            .expect("cursor was where we said");
        assert_eq!(fanned.queued, 4);
        assert_eq!(fanned.leased.len(), 1, "{:?}", fanned.leased);
        assert_eq!(fanned.leased[0].position, cursor + 5);

        // Once wh-a's first m1 delivery is recorded, its second is the head and leasable.
        let recorded = store
            .finish_webhook_deliveries(
                "me",
                &[(
                    job.id.clone(),
                    attempt(DeliveryStatus::Succeeded, t0 + 50, Some(200), None),
                )],
            )
            .await
            .expect("finish");
        assert_eq!(recorded, vec![job.id.clone()]);
        let next = store
            .lease_webhook_deliveries("other", t0 + 60, t0 + 70, 10, &[])
            .await
            .expect("lease");
        let next = webhook_and_position(&next);
        assert!(next.contains(&("wh-a".to_string(), cursor + 2)), "{next:?}");
        assert!(
            !next.iter().any(|(w, p)| w == "wh-a" && *p == cursor + 4),
            "m1's later event stays behind its head: {next:?}"
        );
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
    store
        .fan_out_webhook_events(cursor, cursor + 10, &few, t0 + 10, None)
        .await
        .expect("fan out")
        .expect("cursor was where we said");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(raw_sql(backend, &url, analyzed).await, Some(0));
    // Five thousand do, soon after the fan-out returns.
    let many: Vec<WebhookEventRow> = (11..=5_010)
        .map(|i| created(cursor + i, &format!("m{}", i % 20), t0 + i))
        .collect();
    store
        .fan_out_webhook_events(cursor + 10, cursor + 5_010, &many, t0 + 20, None)
        .await
        .expect("fan out")
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
