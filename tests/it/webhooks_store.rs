//! The delivery queue's store contract on both backends, without a server: outcomes are
//! recorded in batches, each row re-checked on itself, so a batch that holds a delivery whose
//! lease was taken over records the rest and leaves that one to its new owner.

use model_ledger::store::{
    AttemptRecord, DeliveryStatus, SharedStore, WebhookEventRow, WebhookRecord, WebhookStatus,
};

use crate::both_backends;
use crate::helpers::{Backend, fresh_pg_database};

/// A migrated store of its own (no server runs, so no worker leases behind the test's back).
async fn fresh_store(backend: Backend, dir: &tempfile::TempDir) -> SharedStore {
    let url = match backend {
        Backend::Postgres => fresh_pg_database().await,
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("store.db").display()),
    };
    let store = model_ledger::store::connect(&url, 4)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
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
            .fan_out_webhook_events(cursor, cursor + 3, &rows, t0 + 10)
            .await
            .expect("fan out");
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
