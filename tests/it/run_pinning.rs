//! Run pinning (issue #16): a version registered from `runs:/RUN/model` gets a manifest of the
//! run's files, read through the upstream's artifact proxy; `verify` re-reads them and names
//! changed, missing and extra files; an upstream that is down at registration leaves the pin
//! pending until the background pinner completes it. The upstream here is a small axum server
//! speaking MLflow's `runs/get` and `mlflow-artifacts` wire over files it holds in memory (so a
//! test can tamper with them); the real `mlflow server` is driven by tests/mlflow_tracking.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};

const ROOT: &str = "1/r1/artifacts";

#[derive(Clone, Default)]
struct RunStore {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    down: Arc<AtomicBool>,
    /// The run's `artifact_uri` when it is not the upstream's proxy (a tracking server with
    /// `--no-serve-artifacts` hands clients the store's own URL).
    artifact_uri: Arc<Mutex<Option<String>>>,
}

impl RunStore {
    fn put(&self, path: &str, bytes: &[u8]) {
        if let Ok(mut f) = self.files.lock() {
            f.insert(format!("{ROOT}/{path}"), bytes.to_vec());
        }
    }
    fn remove(&self, path: &str) {
        if let Ok(mut f) = self.files.lock() {
            f.remove(&format!("{ROOT}/{path}"));
        }
    }
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

async fn answer(store: RunStore, request: Request) -> Response {
    if store.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    if path == "/api/2.0/mlflow/runs/get" {
        if query != "run_id=r1" {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "error_code": "RESOURCE_DOES_NOT_EXIST" })),
            )
                .into_response();
        }
        let artifact_uri = store
            .artifact_uri
            .lock()
            .ok()
            .and_then(|u| u.clone())
            .unwrap_or_else(|| format!("mlflow-artifacts:/{ROOT}"));
        return axum::Json(json!({ "run": {
            "info": { "run_id": "r1", "experiment_id": "1", "artifact_uri": artifact_uri },
            "data": { "metrics": [{ "key": "f1", "value": 0.93 }] }
        }}))
        .into_response();
    }
    if path == "/api/2.0/mlflow-artifacts/artifacts" {
        let dir = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "path")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let prefix = format!("{dir}/");
        let mut entries: BTreeMap<String, Value> = BTreeMap::new();
        for (key, bytes) in store.snapshot() {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                Some((sub, _)) => {
                    entries.insert(sub.into(), json!({ "path": sub, "is_dir": true }));
                }
                None => {
                    entries.insert(
                        rest.into(),
                        json!({ "path": rest, "is_dir": false, "file_size": bytes.len() }),
                    );
                }
            }
        }
        return axum::Json(json!({ "files": entries.into_values().collect::<Vec<_>>() }))
            .into_response();
    }
    if let Some(file) = path.strip_prefix("/api/2.0/mlflow-artifacts/artifacts/") {
        return match store.snapshot().get(file) {
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    // MLflow 3's logged-model search: none here, so the run's own location is used.
    StatusCode::NOT_FOUND.into_response()
}

async fn upstream(store: RunStore) -> String {
    let app = axum::Router::new().fallback(move |request: Request| answer(store.clone(), request));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

async fn register(app: &TestApp, token: &str) -> crate::helpers::Reply {
    app.post(
        "/api/2.0/mlflow/model-versions/create",
        token,
        json!({ "name": "churn", "source": "runs:/r1/model" }),
    )
    .await
}

async fn pin_event(app: &TestApp, token: &str, version: u64) -> Value {
    let history = app.get("/api/v1/models/churn/history", token).await;
    history.body["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|e| e["event_type"] == "VersionCreated" && e["payload"]["version"] == version)
                .map(|e| e["payload"]["run_evidence"].clone())
        })
        .unwrap_or(Value::Null)
}

both_backends!(
    run_artifacts_are_pinned_verified_and_tampering_is_named,
    |backend: Backend| async move {
        let store = RunStore::default();
        store.put("model/MLmodel", b"flavors: {}\n");
        store.put("model/model.pkl", &[7u8; 300_000]);
        store.put("model/env/conda.yaml", b"name: x\n");
        let url = upstream(store.clone()).await;
        let app = spawn_app_with(backend, &["--mlflow-upstream", &url]).await;
        let admin = app.admin();
        app.post(
            "/api/2.0/mlflow/registered-models/create",
            &admin,
            json!({ "name": "churn" }),
        )
        .await;

        let created = register(&app, &admin).await;
        assert_eq!(created.status, 200, "{:?}", created.body);
        assert_eq!(pin_event(&app, &admin, 1).await["pin"], "pinned");
        let version = app.get("/api/v1/models/churn/versions/1", &admin).await;
        let files: Vec<String> = version.body["artifact"]["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["path"].as_str().map(str::to_string))
            .collect();
        assert_eq!(files, ["MLmodel", "env/conda.yaml", "model.pkl"]);
        assert_eq!(
            version.body["artifact"]["location"],
            format!("mlflow-artifacts:/{ROOT}/model")
        );

        let verified = app
            .post("/api/v1/models/churn/versions/1/verify", &admin, json!({}))
            .await;
        assert_eq!(verified.body["verified"], true, "{:?}", verified.body);

        // MLflow clients download through model-ledger's proxy, checked against the pins.
        let uri = app
            .get(
                "/api/2.0/mlflow/model-versions/get-download-uri?name=churn&version=1",
                &admin,
            )
            .await;
        let base = uri.body["artifact_uri"].as_str().unwrap_or("").to_string();
        assert!(
            base.contains("/mlflow-artifacts/artifacts/models/"),
            "{base}"
        );
        let fetch = |path: &'static str| {
            let url = format!("{base}/{path}");
            let admin = admin.clone();
            let client = app.client.clone();
            // (status, body); no status when the connection closed before the response head.
            // A tampered download fails by ending the body early, and hyper writes the head
            // together with the first body chunk: when the whole file is one chunk (held back
            // until it is hashed), the client sees the connection close before any head.
            async move {
                let Ok(answer) = client.get(url).bearer_auth(admin).send().await else {
                    return (None, None);
                };
                let status = answer.status().as_u16();
                (Some(status), answer.bytes().await.ok().map(|b| b.to_vec()))
            }
        };
        assert_eq!(
            fetch("model.pkl").await,
            (Some(200), Some(vec![7u8; 300_000]))
        );

        // Tamper in the upstream's store: one changed, one missing, one extra file.
        store.put("model/model.pkl", &[8u8; 300_000]);
        store.remove("model/env/conda.yaml");
        store.put("model/extra.py", b"import os\n");
        let failed = app
            .post("/api/v1/models/churn/versions/1/verify", &admin, json!({}))
            .await;
        assert_eq!(failed.body["verified"], false, "{:?}", failed.body);
        let named: Vec<(String, String)> = failed.body["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["path"].as_str().unwrap_or("").to_string(),
                    f["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                ("env/conda.yaml".to_string(), "missing".to_string()),
                (
                    "extra.py".to_string(),
                    "extra file, not in the pinned manifest".to_string()
                ),
                ("model.pkl".to_string(), "content differs".to_string()),
            ]
        );

        // The tampered file no longer downloads whole.
        let (status, body) = fetch("model.pkl").await;
        assert!(
            status != Some(200) || body.is_none(),
            "a tampered file was served: {status:?}"
        );

        // A run the upstream does not know: 400 and no version.
        let unknown = app
            .post(
                "/api/2.0/mlflow/model-versions/create",
                &admin,
                json!({ "name": "churn", "source": "runs:/nope/model" }),
            )
            .await;
        assert_eq!(unknown.status, 400, "{:?}", unknown.body);
        let missing = app.get("/api/v1/models/churn/versions/2", &admin).await;
        assert_eq!(missing.status, 404);

        // Upstream down at registration: pending, no manifest; back up: pinned by itself.
        store.down.store(true, Ordering::SeqCst);
        let pending = register(&app, &admin).await;
        assert_eq!(pending.status, 200, "{:?}", pending.body);
        assert_eq!(pin_event(&app, &admin, 2).await["pin"], "pending");
        let v2 = app.get("/api/v1/models/churn/versions/2", &admin).await;
        assert!(v2.body["artifact"].is_null(), "{:?}", v2.body);
        store.down.store(false, Ordering::SeqCst);
        let mut pinned = Value::Null;
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let v2 = app.get("/api/v1/models/churn/versions/2", &admin).await;
            if !v2.body["artifact"].is_null() {
                pinned = v2.body["artifact"].clone();
                break;
            }
        }
        assert_eq!(
            pinned["files"].as_array().map(Vec::len),
            Some(3),
            "the pending pin was not completed: {pinned:?}"
        );
        let history = app.get("/api/v1/models/churn/history", &admin).await;
        let pin = history.body["events"]
            .as_array()
            .and_then(|e| {
                e.iter()
                    .find(|e| e["event_type"] == "RunArtifactsPinned")
                    .cloned()
            })
            .unwrap_or(Value::Null);
        assert_eq!(pin["actor"]["issuer"], "model-ledger:system", "{pin:?}");
    }
);

both_backends!(
    run_files_in_a_configured_store_are_pinned_from_the_store_itself,
    |backend: Backend| async move {
        // The tracking server does not proxy artifacts: the run lives at file://… in a store
        // model-ledger is configured with, so model-ledger reads and hashes it there.
        let mlruns = tempfile::tempdir().expect("tempdir");
        let run_dir = mlruns.path().join("1/r1/artifacts/model");
        std::fs::create_dir_all(run_dir.join("env")).expect("mkdir");
        std::fs::write(run_dir.join("MLmodel"), b"flavors: {}\n").expect("write");
        std::fs::write(run_dir.join("model.pkl"), [9u8; 200_000]).expect("write");
        std::fs::write(run_dir.join("env/conda.yaml"), b"name: x\n").expect("write");
        let store = RunStore::default();
        let root = format!("file://{}", mlruns.path().display());
        if let Ok(mut uri) = store.artifact_uri.lock() {
            *uri = Some(format!("{root}/1/r1/artifacts"));
        }
        let url = upstream(store.clone()).await;
        let stores = format!("mlruns={root}");
        let app = spawn_app_with(
            backend,
            &["--mlflow-upstream", &url, "--artifact-stores", &stores],
        )
        .await;
        let admin = app.admin();
        app.post(
            "/api/2.0/mlflow/registered-models/create",
            &admin,
            json!({ "name": "churn" }),
        )
        .await;
        let created = register(&app, &admin).await;
        assert_eq!(created.status, 200, "{:?}", created.body);
        assert_eq!(pin_event(&app, &admin, 1).await["pin"], "pinned");
        let version = app.get("/api/v1/models/churn/versions/1", &admin).await;
        assert_eq!(
            version.body["artifact"]["location"],
            format!("{root}/1/r1/artifacts/model")
        );
        assert_eq!(
            version.body["artifact"]["files"].as_array().map(Vec::len),
            Some(3),
            "{:?}",
            version.body
        );
        let verified = app
            .post("/api/v1/models/churn/versions/1/verify", &admin, json!({}))
            .await;
        assert_eq!(verified.body["verified"], true, "{:?}", verified.body);

        // Changed in the store behind the tracking server's back: named, and not verified.
        std::fs::write(run_dir.join("model.pkl"), [1u8; 200_000]).expect("write");
        let failed = app
            .post("/api/v1/models/churn/versions/1/verify", &admin, json!({}))
            .await;
        assert_eq!(failed.body["verified"], false, "{:?}", failed.body);
        let named: Vec<&str> = failed.body["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["path"].as_str())
            .collect();
        assert_eq!(named, ["model.pkl"], "{:?}", failed.body);
    }
);
