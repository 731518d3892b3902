//! Metrics recorded after a version exists (RecordMetrics): an evaluation job's numbers become
//! the evidence a quality gate reads, the event names who recorded them, bad input writes
//! nothing, and a Production version's metrics are frozen by the shipped policy.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    recorded_metrics_let_a_pushed_version_pass_its_gate,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        let reader = app.token("alice", &["ml-readers"]);
        let rm = app.token("rita", &["ml-release-managers"]);
        let admin = app.admin();

        let r = app
            .post(
                "/api/v1/models",
                &ci,
                json!({"name": "fraud", "tags": {"gate.f1": "0.80"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        // Pushed without metrics, as `model-ledger push` does before an evaluation runs.
        let v = app
            .upload_version_with_metrics(&ci, "fraud", json!({}))
            .await;
        let verified = app
            .post(
                &format!("/api/v1/models/fraud/versions/{v}/verify"),
                &ci,
                json!({}),
            )
            .await;
        assert_eq!(verified.status, 200, "{:?}", verified.body);
        let stage_path = format!("/api/v1/models/fraud/versions/{v}/stage");
        let promote = || {
            app.post(
                &stage_path,
                &rm,
                json!({"stage": "Production", "archive_existing_versions": true}),
            )
        };
        let gated = promote().await;
        assert_eq!(gated.status, 403, "no metric yet: {:?}", gated.body);

        let path = format!("/api/v1/models/fraud/versions/{v}/metrics");
        let events_before = app.event_count().await;
        for (token, body, status) in [
            (&reader, json!({"metrics": {"f1": 0.9}}), 403),
            (&ci, json!({"metrics": {}}), 400),
            (&ci, json!({"metrics": {"f1": "high"}}), 400),
            (&ci, json!({"metrics": {"f1": 0.9}, "by": "me"}), 400),
            (&ci, json!({"metrics": {"": 0.9}}), 400),
        ] {
            let refused = app.post(&path, token, body.clone()).await;
            assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
            assert!(refused.body["error_code"].is_string(), "{:?}", refused.body);
        }
        let missing = app
            .post(
                "/api/v1/models/fraud/versions/99/metrics",
                &ci,
                json!({"metrics": {"f1": 0.9}}),
            )
            .await;
        assert_eq!(missing.status, 404, "{:?}", missing.body);
        assert_eq!(
            app.event_count().await,
            events_before,
            "refusals write nothing"
        );

        let recorded = app
            .post(&path, &ci, json!({"metrics": {"f1": 0.91, "auc": 0.95}}))
            .await;
        assert_eq!(recorded.status, 200, "{:?}", recorded.body);
        assert_eq!(recorded.body["metrics"]["f1"], 0.91, "{:?}", recorded.body);
        let history = app
            .get("/api/v1/models/fraud/history?limit=1", &admin)
            .await;
        let event = &history.body["events"][0];
        assert_eq!(event["event_type"], "MetricsRecorded", "{event:?}");
        assert_eq!(event["actor"]["subject"], "ci-bot");

        let ok = promote().await;
        assert_eq!(
            ok.status, 200,
            "the recorded f1 meets the gate: {:?}",
            ok.body
        );
        let frozen = app
            .post(&path, &admin, json!({"metrics": {"f1": 0.5}}))
            .await;
        assert_eq!(frozen.status, 403, "{:?}", frozen.body);
        assert!(
            frozen.body["policy_ids"]
                .to_string()
                .contains("metrics-frozen-in-production"),
            "{:?}",
            frozen.body
        );
        let after = app
            .get(&format!("/api/v1/models/fraud/versions/{v}"), &admin)
            .await;
        assert_eq!(after.body["metrics"]["f1"], 0.91, "{:?}", after.body);
    }
);
