//! The "one door" properties: writes to one model never fail because of each other, reads are
//! authorized before existence is revealed on every API, and the read cache behind the service
//! answers every API with what was last committed.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_on, spawn_permissive};

// `clients` parallel MLflow `model-versions/create` calls on one model (what parallel CI jobs
// registering the same model do): every one succeeds, and the versions are exactly 1..=clients.
async fn parallel_creates_on_one_model(app: &TestApp, clients: u64) {
    let token = app.admin();
    app.create_model("busy").await;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let client = app.client.clone();
        let url = format!("{}/api/2.0/mlflow/model-versions/create", app.url);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"name": "busy", "source": format!("s3://bucket/busy/{i}")}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "a parallel create failed: {body}");
        let version: u64 = body["model_version"]["version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("version number");
        versions.push(version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=clients).collect::<Vec<_>>());
    let model = app.get("/api/v1/models/busy", &token).await;
    assert_eq!(model.body["last_version"], clients);
}

both_backends!(
    sixty_four_parallel_creates_on_one_model_all_succeed,
    |backend: Backend| async move {
        let app = spawn_permissive(backend).await;
        parallel_creates_on_one_model(&app, 64).await;
    }
);

both_backends!(
    two_hundred_fifty_six_parallel_creates_on_one_model_all_succeed,
    |backend: Backend| async move {
        let app = spawn_permissive(backend).await;
        parallel_creates_on_one_model(&app, 256).await;
    }
);

// A caller without `ReadModel` gets the same 403 for a model that exists and one that does
// not, on every read path of both APIs, so it cannot probe which names exist.
both_backends!(
    reads_are_denied_before_existence_is_revealed,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("secret").await;
        app.create_version("secret").await;
        let stranger = app.token("stranger", &["no-such-group"]);
        for name in ["secret", "absent"] {
            let paths = [
                format!("/api/v1/models/{name}"),
                format!("/api/v1/models/{name}/versions"),
                format!("/api/v1/models/{name}/versions/1"),
                format!("/api/v1/models/{name}/history"),
                format!("/api/v1/models/{name}/aliases/champion"),
                format!("/api/v1/resolve?uri=models:/{name}/1"),
                format!("/api/2.0/mlflow/registered-models/get?name={name}"),
                format!("/api/2.0/mlflow/model-versions/get?name={name}&version=1"),
                format!("/api/2.0/mlflow/registered-models/alias?name={name}&alias=champion"),
                format!("/api/2.0/mlflow/registered-models/get-latest-versions?name={name}"),
                format!("/api/2.0/mlflow/model-versions/get-download-uri?name={name}&version=1"),
            ];
            for path in paths {
                let reply = app.get(&path, &stranger).await;
                assert_eq!(reply.status, 403, "{path}: {:?}", reply.body);
            }
            // MLflow's "deleting an absent tag is a no-op" must not answer 404 before the
            // permission check either.
            let reply = app
                .request(
                    reqwest::Method::DELETE,
                    "/api/2.0/mlflow/registered-models/delete-tag",
                    Some(&stranger),
                    Some(json!({"name": name, "key": "nope"})),
                )
                .await;
            assert_eq!(reply.status, 403, "delete-tag on {name}: {:?}", reply.body);
        }
    }
);

// Deleting an absent tag or alias through MLflow succeeds without writing, but a missing
// model is still 404 in MLflow's words.
both_backends!(
    mlflow_deleting_what_is_absent_is_a_no_op,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("m").await;
        app.create_version("m").await;
        let before = app.event_count().await;
        for (path, body) in [
            (
                "/api/2.0/mlflow/registered-models/delete-tag",
                json!({"name": "m", "key": "absent"}),
            ),
            (
                "/api/2.0/mlflow/registered-models/alias",
                json!({"name": "m", "alias": "absent"}),
            ),
            (
                "/api/2.0/mlflow/model-versions/delete-tag",
                json!({"name": "m", "version": "1", "key": "absent"}),
            ),
        ] {
            let reply = app
                .request(reqwest::Method::DELETE, path, Some(&admin), Some(body))
                .await;
            assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
        }
        assert_eq!(app.event_count().await, before, "a no-op wrote an event");
        let reply = app
            .request(
                reqwest::Method::DELETE,
                "/api/2.0/mlflow/registered-models/delete-tag",
                Some(&admin),
                Some(json!({"name": "nope", "key": "k"})),
            )
            .await;
        assert_eq!(reply.status, 404, "{:?}", reply.body);
        assert_eq!(
            reply.body["message"],
            "Registered Model with name=nope not found"
        );
        let reply = app
            .request(
                reqwest::Method::DELETE,
                "/api/2.0/mlflow/model-versions/delete-tag",
                Some(&admin),
                Some(json!({"name": "m", "version": "9", "key": "k"})),
            )
            .await;
        assert_eq!(reply.status, 404, "{:?}", reply.body);
        assert_eq!(
            reply.body["message"],
            "Model Version (name=m, version=9) not found"
        );
    }
);

// The cached MLflow reads (alias, latest versions, get model, get version) see every commit
// at once: each write is followed by a read that must show it.
both_backends!(
    mlflow_reads_see_each_commit_immediately,
    |backend: Backend| async move {
        let app = spawn_permissive(backend).await;
        let admin = app.admin();
        app.create_model("hot").await;
        for _ in 0..3 {
            app.create_version("hot").await;
        }
        for version in [1, 2, 3, 1, 3] {
            let set = app
                .post(
                    "/api/2.0/mlflow/registered-models/alias",
                    &admin,
                    json!({"name": "hot", "alias": "champion", "version": version.to_string()}),
                )
                .await;
            assert_eq!(set.status, 200, "{:?}", set.body);
            let got = app
                .get(
                    "/api/2.0/mlflow/registered-models/alias?name=hot&alias=champion",
                    &admin,
                )
                .await;
            assert_eq!(got.body["model_version"]["version"], version.to_string());

            let moved = app
                .post(
                    "/api/2.0/mlflow/model-versions/transition-stage",
                    &admin,
                    json!({"name": "hot", "version": version.to_string(), "stage": "Staging",
                           "archive_existing_versions": true}),
                )
                .await;
            assert_eq!(moved.status, 200, "{:?}", moved.body);
            let latest = app
                .get(
                    "/api/2.0/mlflow/registered-models/get-latest-versions?name=hot&stages=Staging",
                    &admin,
                )
                .await;
            let staged = latest.body["model_versions"].as_array().expect("versions");
            assert_eq!(staged.len(), 1, "{:?}", latest.body);
            assert_eq!(staged[0]["version"], version.to_string());
            let got = app
                .get(
                    &format!("/api/2.0/mlflow/model-versions/get?name=hot&version={version}"),
                    &admin,
                )
                .await;
            assert_eq!(got.body["model_version"]["current_stage"], "Staging");
            let model = app
                .get("/api/2.0/mlflow/registered-models/get?name=hot", &admin)
                .await;
            assert_eq!(
                model.body["registered_model"]["aliases"][0]["version"],
                version.to_string(),
                "{:?}",
                model.body
            );
        }
    }
);

both_backends!(
    two_processes_writing_one_model_interleave_without_losing_a_version,
    |backend: Backend| async move {
        // Each process trusts the state its own last append left (no head query per write);
        // the append's optimistic check must catch the other process's writes in between.
        let a = spawn_app(backend).await;
        let b = spawn_app_on(backend, Some(&a.database_url), &[]).await;
        a.create_model("shared").await;
        let mut versions = Vec::new();
        for _ in 0..10 {
            versions.push(a.create_version("shared").await);
            versions.push(b.create_version("shared").await);
        }
        let (from_a, from_b) = tokio::join!(
            async {
                let mut v = Vec::new();
                for _ in 0..15 {
                    v.push(a.create_version("shared").await);
                }
                v
            },
            async {
                let mut v = Vec::new();
                for _ in 0..15 {
                    v.push(b.create_version("shared").await);
                }
                v
            }
        );
        versions.extend(from_a);
        versions.extend(from_b);
        versions.sort_unstable();
        assert_eq!(versions, (1..=50).collect::<Vec<u64>>());
        // A tag written through one process is seen by the next write through the other.
        let tagged = b
            .put(
                "/api/v1/models/shared/tags/team",
                &b.admin(),
                json!({"value": "risk"}),
            )
            .await;
        assert_eq!(tagged.status, 200, "{:?}", tagged.body);
        // The caller saw b's write; a must not answer 412 from its own older state.
        let seen = tagged.body["stream_version"]
            .as_i64()
            .expect("stream version");
        let response = a
            .client
            .patch(format!("{}/api/v1/models/shared", a.url))
            .bearer_auth(a.admin())
            .header("if-match", format!("\"{seen}\""))
            .json(&json!({"description": "after b's tag"}))
            .send()
            .await
            .expect("patch");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(status, 200, "If-Match {seen} through a: {body:?}");
        let described = crate::helpers::Reply {
            status,
            body,
            headers: Default::default(),
        };
        assert_eq!(
            described.body["tags"]["team"], "risk",
            "{:?}",
            described.body
        );
        assert_eq!(described.body["description"], "after b's tag");

        // A refusal decided on a stale state is decided again on the stored one: b registers
        // and verifies a version, and a promotes it although a's own last state knew neither.
        let version = b
            .upload_version_with_metrics(&b.admin(), "shared", json!({"f1": 0.9}))
            .await;
        let verified = b
            .post(
                &format!("/api/v1/models/shared/versions/{version}/verify"),
                &b.admin(),
                json!({}),
            )
            .await;
        assert_eq!(verified.status, 200, "{:?}", verified.body);
        let denial_rows = || async {
            a.store
                .read_denials(&model_ledger::store::DenialQuery {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .expect("denials")
                .len()
        };
        let denials_before = denial_rows().await;
        let promoted = a
            .post(
                &format!("/api/v1/models/shared/versions/{version}/stage"),
                &a.release_manager(),
                json!({"stage": "Production"}),
            )
            .await;
        assert_eq!(promoted.status, 200, "{:?}", promoted.body);
        assert_eq!(
            denials_before,
            denial_rows().await,
            "no false refusal was recorded"
        );
    }
);
