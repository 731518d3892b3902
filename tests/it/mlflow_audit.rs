//! The audit trail of writes made through the MLflow API, on both backends. MLflow clients
//! are the registry's busiest writers, so their writes must reach the event log as the same
//! audited events (actor, allowing decision and policies) as the native API's, and a denied
//! one must leave no trace.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};
use crate::mlflow_api::{call, create_versions, ok};

both_backends!(mlflow_writes_are_audited, |backend: Backend| async move {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let before = app.event_count().await;
    create_versions(&app, &admin, "audited", 2).await;
    ok(
        &app,
        Method::POST,
        "registered-models/alias",
        &admin,
        Some(json!({ "name": "audited", "alias": "prod", "version": "1" })),
    )
    .await;
    ok(
        &app,
        Method::POST,
        "model-versions/transition-stage",
        &admin,
        Some(json!({ "name": "audited", "version": "2", "stage": "Staging" })),
    )
    .await;
    ok(
        &app,
        Method::POST,
        "model-versions/set-tag",
        &admin,
        Some(json!({ "name": "audited", "version": "2", "key": "k", "value": "v" })),
    )
    .await;
    ok(
        &app,
        Method::DELETE,
        "model-versions/delete",
        &admin,
        Some(json!({ "name": "audited", "version": "1" })),
    )
    .await;

    let events = app
        .store()
        .read_events(&model_ledger::store::EventQuery {
            after_position: Some(before),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "ModelCreated",
            "VersionCreated",
            "VersionCreated",
            "AliasSet",
            "StageTransitioned",
            "VersionTagSet",
            "AliasDeleted",
            "VersionDeleted"
        ]
    );
    for e in &events {
        assert_eq!(e.actor.subject, "admin");
        let decision = e.decision.as_ref().expect("decision recorded");
        assert_eq!(decision["allowed"], true);
        assert!(
            !decision["policy_ids"]
                .as_array()
                .map(Vec::is_empty)
                .unwrap_or(true)
        );
    }
    // A denied MLflow write records nothing in the event log.
    let reader = app.token("rita", &["ml-readers"]);
    let head = app.event_count().await;
    let r = call(
        &app,
        Method::POST,
        "model-versions/create",
        &reader,
        Some(json!({ "name": "audited", "source": "s3://x" })),
    )
    .await;
    assert_eq!(r.code(), "PERMISSION_DENIED");
    assert_eq!(app.event_count().await, head);
});
