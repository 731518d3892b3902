//! The native API end to end, on both backends.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, enc, spawn_app};

both_backends!(
    model_lifecycle_is_recorded_and_projected,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        let created = app
            .post(
                "/api/v1/models",
                &admin,
                json!({"name": "churn", "description": "d", "tags": {"team": "growth"}}),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        assert_eq!(created.body["tags"]["team"], "growth");
        assert_eq!(created.headers["etag"], "\"1\"");

        let dup = app
            .post("/api/v1/models", &admin, json!({"name": "churn"}))
            .await;
        assert_eq!((dup.status, dup.code()), (409, "RESOURCE_ALREADY_EXISTS"));

        assert_eq!(app.create_version("churn").await, 1);
        assert_eq!(app.create_version("churn").await, 2);
        let v = app.get("/api/v1/models/churn/versions/2", &admin).await;
        assert_eq!(v.status, 200);
        assert_eq!(v.body["status"], "READY");
        assert_eq!(v.body["stage"], "None");

        let patched = app
            .patch(
                "/api/v1/models/churn",
                &admin,
                json!({"description": "new"}),
            )
            .await;
        assert_eq!(patched.status, 200, "{:?}", patched.body);
        let tag = app
            .put(
                "/api/v1/models/churn/versions/1/tags/owner",
                &admin,
                json!({"value": "ana"}),
            )
            .await;
        assert_eq!(tag.body["tags"]["owner"], "ana");

        let history = app
            .get("/api/v1/models/churn/history?order=asc", &admin)
            .await;
        let types: Vec<&str> = history.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "ModelCreated",
                "VersionCreated",
                "VersionCreated",
                "ModelDescriptionUpdated",
                "VersionTagSet"
            ]
        );
        for e in history.body["events"].as_array().unwrap() {
            assert_eq!(e["actor"]["subject"], "admin");
            assert_eq!(e["decision"]["allowed"], true);
            assert!(!e["decision"]["policy_ids"].as_array().unwrap().is_empty());
        }

        // Deleting a version keeps its number: the next one is 3.
        assert_eq!(
            app.delete("/api/v1/models/churn/versions/2", &admin)
                .await
                .status,
            204
        );
        assert_eq!(
            app.get("/api/v1/models/churn/versions/2", &admin)
                .await
                .status,
            404
        );
        assert_eq!(app.create_version("churn").await, 3);

        // Rename keeps the history; the old name is free again.
        let renamed = app
            .patch("/api/v1/models/churn", &admin, json!({"name": "churn-v2"}))
            .await;
        assert_eq!(renamed.body["name"], "churn-v2");
        assert_eq!(app.get("/api/v1/models/churn", &admin).await.status, 404);
        let h = app.get("/api/v1/models/churn-v2/history", &admin).await;
        assert_eq!(h.body["events"].as_array().unwrap().len(), 8);

        assert_eq!(
            app.delete("/api/v1/models/churn-v2", &admin).await.status,
            204
        );
        assert_eq!(app.get("/api/v1/models/churn-v2", &admin).await.status, 404);
        app.create_model("churn-v2").await;
    }
);

both_backends!(stages_aliases_and_resolve, |backend: Backend| async move {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    app.create_model("fraud").await;
    for _ in 0..3 {
        app.create_version("fraud").await;
    }
    let to_staging = |v: u64, archive: bool| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.post(
                &format!("/api/v1/models/fraud/versions/{v}/stage"),
                &admin,
                json!({"stage": "staging", "archive_existing_versions": archive, "comment": "ok"}),
            )
            .await
        }
    };
    assert_eq!(to_staging(1, false).await.body["stage"], "Staging");
    assert_eq!(to_staging(2, false).await.status, 200);
    let r = to_staging(3, true).await;
    assert_eq!(r.body["stage"], "Staging");
    let staged = app
        .get("/api/v1/models/fraud/versions?stage=Staging", &admin)
        .await;
    let versions: Vec<u64> = staged.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [3],
        "archive_existing_versions leaves one version in Staging"
    );

    let resolve = |uri: &str| {
        let app = &app;
        let admin = admin.clone();
        let uri = uri.to_string();
        async move {
            app.get(&format!("/api/v1/resolve?uri={}", enc(&uri)), &admin)
                .await
        }
    };
    assert_eq!(resolve("models:/fraud/Staging").await.body["version"], 3);
    assert_eq!(resolve("models:/fraud/2").await.body["stage"], "Archived");
    assert_eq!(resolve("models:/fraud/latest").await.body["version"], 3);
    assert_eq!(resolve("models:/fraud/Production").await.status, 404);
    assert_eq!(
        resolve("models:/fraud/Prod").await.code(),
        "INVALID_PARAMETER_VALUE"
    );

    let set = app
        .put(
            "/api/v1/models/fraud/aliases/champion",
            &admin,
            json!({"version": "2"}),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["aliases"], json!(["champion"]));
    assert_eq!(resolve("models:/fraud@champion").await.body["version"], 2);
    app.put(
        "/api/v1/models/fraud/aliases/champion",
        &admin,
        json!({"version": 1}),
    )
    .await;
    assert_eq!(resolve("models:/fraud@champion").await.body["version"], 1);
    assert_eq!(
        app.get("/api/v1/models/fraud/versions?alias=champion", &admin)
            .await
            .body["versions"][0]["version"],
        1
    );
    let missing = app
        .put(
            "/api/v1/models/fraud/aliases/champion",
            &admin,
            json!({"version": 9}),
        )
        .await;
    assert_eq!(missing.status, 404);
    // Deleting the version an alias points at removes the alias too.
    app.delete("/api/v1/models/fraud/versions/1", &admin).await;
    assert_eq!(resolve("models:/fraud@champion").await.status, 404);
    assert_eq!(
        app.delete("/api/v1/models/fraud/aliases/champion", &admin)
            .await
            .status,
        404
    );
});

both_backends!(
    rollback_restores_the_previous_stage_holder,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("m").await;
        for _ in 0..2 {
            app.create_version("m").await;
        }
        for v in [1, 2] {
            let r = app
                .post(
                    &format!("/api/v1/models/m/versions/{v}/stage"),
                    &admin,
                    json!({"stage": "Staging", "archive_existing_versions": true}),
                )
                .await;
            assert_eq!(r.status, 200);
        }
        let r = app
            .post(
                "/api/v1/models/m/stages/Staging/rollback",
                &admin,
                json!({"comment": "regression"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["version"], 1);
        assert_eq!(r.body["stage"], "Staging");
        let h = app.get("/api/v1/models/m/history?limit=1", &admin).await;
        let last = &h.body["events"][0];
        assert_eq!(last["payload"]["reason"]["kind"], "rollback");
        assert_eq!(last["payload"]["reason"]["rolled_back_from"], 2);
        let bad = app
            .post(
                "/api/v1/models/m/stages/Archived/rollback",
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(bad.code(), "INVALID_PARAMETER_VALUE");
    }
);

both_backends!(
    if_match_and_idempotency_keys,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("m").await;
        let stale = app
            .client
            .patch(format!("{}/api/v1/models/m", app.url))
            .bearer_auth(&admin)
            .header("if-match", "\"7\"")
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 412);
        let fresh = app
            .client
            .patch(format!("{}/api/v1/models/m", app.url))
            .bearer_auth(&admin)
            .header("if-match", "\"1\"")
            .json(&json!({"description": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 200);

        let before = app.event_count().await;
        let post = |key: &'static str, source: &'static str| {
            let app = &app;
            let admin = admin.clone();
            async move {
                app.client
                    .post(format!("{}/api/v1/models/m/versions", app.url))
                    .bearer_auth(&admin)
                    .header("idempotency-key", key)
                    .json(&json!({"source": source}))
                    .send()
                    .await
                    .unwrap()
            }
        };
        let first = post("k1", "s3://a").await;
        assert_eq!(first.status(), 201);
        let first_body: serde_json::Value = first.json().await.unwrap();
        let retry = post("k1", "s3://a").await;
        assert_eq!(retry.status(), 201);
        let retry_body: serde_json::Value = retry.json().await.unwrap();
        assert_eq!(first_body, retry_body, "a retry returns the first result");
        assert_eq!(
            app.event_count().await,
            before + 1,
            "a retry writes no second event"
        );
        let misuse = post("k1", "s3://other").await;
        assert_eq!(misuse.status(), 422);
        assert_eq!(post("k2", "s3://b").await.status(), 201);
        assert_eq!(app.event_count().await, before + 2);
    }
);

both_backends!(
    policy_denials_write_no_event,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let reader = app.token("rita", &["ml-readers"]);
        let before = app.event_count().await;
        let r = app
            .post("/api/v1/models", &reader, json!({"name": "nope"}))
            .await;
        assert_eq!((r.status, r.code()), (403, "PERMISSION_DENIED"));
        assert_eq!(app.event_count().await, before);
        let anonymous = app
            .request(reqwest::Method::GET, "/api/v1/models", None, None)
            .await;
        assert_eq!(anonymous.status, 401);
        assert!(anonymous.headers.get("www-authenticate").is_some());
        assert_eq!(app.get("/api/v1/models", &reader).await.status, 200);
    }
);
