//! The shipped policies end to end over HTTP: each Production rule denies, and the same
//! promotion is allowed once the rule is satisfied (verification, another principal, a better
//! metric). Denials write no event and are kept in the access-decision log.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};

async fn promote(app: &TestApp, token: &str, model: &str, version: u64) -> crate::helpers::Reply {
    app.post(
        &format!("/api/v1/models/{model}/versions/{version}/stage"),
        token,
        json!({"stage": "Production", "archive_existing_versions": true}),
    )
    .await
}

both_backends!(
    production_rules_deny_then_allow,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        let rm = app.token("rita", &["ml-release-managers"]);
        let rm_who_registered = app.token("rob", &["ml-release-managers", "ml-ci"]);
        let admin = app.admin();

        let r = app
            .post(
                "/api/v1/models",
                &ci,
                json!({"name": "fraud", "tags": {"gate.f1": "0.80"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let weak = app
            .upload_version_with_metrics(&ci, "fraud", json!({"f1": 0.75}))
            .await;
        let strong = app
            .upload_version_with_metrics(&ci, "fraud", json!({"f1": 0.85}))
            .await;
        let own = app
            .upload_version_with_metrics(&rm_who_registered, "fraud", json!({"f1": 0.9}))
            .await;
        let events_before = app.event_count().await;

        // Only release managers promote to Production; CI and admins are refused.
        for token in [&ci, &admin] {
            let denied = promote(&app, token, "fraud", strong).await;
            assert_eq!(
                (denied.status, denied.code()),
                (403, "PERMISSION_DENIED"),
                "{:?}",
                denied.body
            );
        }
        // A release manager is refused while the artifact is unverified.
        let unverified = promote(&app, &rm, "fraud", strong).await;
        assert_eq!(unverified.status, 403);
        assert!(
            unverified.body["policy_ids"]
                .to_string()
                .contains("verified-artifact"),
            "{:?}",
            unverified.body
        );
        assert_eq!(
            app.event_count().await,
            events_before,
            "denials write no registry event"
        );

        for v in [weak, strong, own] {
            let verified = app
                .post(
                    &format!("/api/v1/models/fraud/versions/{v}/verify"),
                    &ci,
                    json!({}),
                )
                .await;
            assert_eq!(verified.status, 200, "{:?}", verified.body);
        }
        // Verified, but below the model's declared quality gate (f1 0.75 < 0.80): refused.
        let gated = promote(&app, &rm, "fraud", weak).await;
        assert_eq!(gated.status, 403, "{:?}", gated.body);
        assert!(
            gated.body["message"].as_str().unwrap().contains("gate"),
            "{:?}",
            gated.body
        );
        // Separation of duties: the release manager who registered a version cannot promote it...
        let self_promotion = promote(&app, &rm_who_registered, "fraud", own).await;
        assert_eq!(self_promotion.status, 403, "{:?}", self_promotion.body);
        assert!(
            self_promotion.body["policy_ids"]
                .to_string()
                .contains("separation"),
            "{:?}",
            self_promotion.body
        );
        // ... but another release manager can.
        let by_other = promote(&app, &rm, "fraud", own).await;
        assert_eq!(by_other.status, 200, "{:?}", by_other.body);
        // Verified and above the gate: allowed, and the decision is recorded in the event.
        let ok = promote(&app, &rm, "fraud", strong).await;
        assert_eq!(ok.status, 200, "{:?}", ok.body);
        assert_eq!(ok.body["stage"], "Production");
        let history = app
            .get("/api/v1/models/fraud/history?limit=1", &admin)
            .await;
        let decision = &history.body["events"][0]["decision"];
        assert_eq!(decision["allowed"], true);
        assert_eq!(history.body["events"][0]["actor"]["subject"], "rita");
        assert!(!decision["policy_ids"].as_array().unwrap().is_empty());

        // Every refusal above is in the access-decision log.
        let query = model_ledger::store::DenialQuery {
            limit: 100,
            ..Default::default()
        };
        let denials = app.store.read_denials(&query).await.unwrap();
        assert_eq!(denials.len(), 5, "{denials:?}");
        assert!(
            denials
                .iter()
                .any(|d| d.actor.subject == "rob" && d.action == "TransitionStage")
        );
    }
);
