//! MLflow's download URIs and artifact proxy, on both backends. An MLflow client downloads a
//! model from whatever `get-download-uri` answers, so the answer has to be right for every
//! kind of version (an external source, a copy, files this server stores, behind a TLS proxy)
//! and the proxy behind it must list, authorize and serve exactly the registered bytes, never
//! a file altered after registration.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with};
use crate::mlflow_api::{API, create_versions, ok};

both_backends!(download_uris, |backend: Backend| async move {
    // The test client plays the TLS-terminating proxy below (X-Forwarded-Proto), so it must
    // be a trusted one: from any other peer forwarding headers are dropped.
    let app = spawn_app_with(backend, &["--trusted-proxy", "127.0.0.1/32"]).await;
    let admin = app.admin();
    create_versions(&app, &admin, "dl", 1).await;
    let uri = ok(
        &app,
        Method::GET,
        "model-versions/get-download-uri?name=dl&version=1",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        uri["artifact_uri"], "s3://b/dl/1",
        "an outside source is returned as registered"
    );

    // A copy (source models:/NAME/V) downloads what its origin downloads.
    let copy = json!({ "name": "dl", "source": "models:/dl/1" });
    ok(
        &app,
        Method::POST,
        "model-versions/create",
        &admin,
        Some(copy),
    )
    .await;
    let uri = ok(
        &app,
        Method::GET,
        "model-versions/get-download-uri?name=dl&version=2",
        &admin,
        None,
    )
    .await;
    assert_eq!(uri["artifact_uri"], "s3://b/dl/1");

    // A version whose files model-ledger stores is downloaded through this server.
    let upload = app
        .post("/api/v1/models/dl/uploads", &admin, json!({}))
        .await;
    assert_eq!(upload.status, 201, "{:?}", upload.body);
    let id = upload.body["upload_id"].as_str().unwrap().to_string();
    let files: [(&str, &[u8]); 3] = [
        ("MLmodel", b"flavors: {}\n"),
        ("data/model.pkl", b"weights"),
        ("data/extra/x.txt", b"x"),
    ];
    for (path, bytes) in files {
        let r = app
            .send_raw(
                Method::PUT,
                &format!("/api/v1/models/dl/uploads/{id}/files/{path}"),
                &admin,
                "application/octet-stream",
                bytes.to_vec(),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = app
        .post(
            &format!("/api/v1/models/dl/uploads/{id}/commit"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["version"], 3);
    let model_id = r.body["model_id"].as_str().unwrap_or_default().to_string();
    let resp = app
        .client
        .get(format!(
            "{}{API}/model-versions/get-download-uri?name=dl&version=3",
            app.url
        ))
        .bearer_auth(&admin)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("sent");
    let host = app.url.trim_start_matches("http://").to_string();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["artifact_uri"],
        format!("https://{host}/api/2.0/mlflow-artifacts/artifacts/models/{model_id}/3")
    );

    // MLflow's artifact proxy protocol: list one level at a time, then fetch each file.
    let root = format!("models/{model_id}/3");
    let list = app
        .get(
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={root}"),
            &admin,
        )
        .await;
    assert_eq!(
        list.body,
        json!({"files": [
            {"path": "MLmodel", "is_dir": false, "file_size": 12},
            {"path": "data", "is_dir": true}
        ]})
    );
    let sub = app
        .get(
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={root}/data"),
            &admin,
        )
        .await;
    assert_eq!(
        sub.body["files"][1],
        json!({"path": "model.pkl", "is_dir": false, "file_size": 7})
    );
    let empty = app
        .get(
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={root}/nothing"),
            &admin,
        )
        .await;
    assert_eq!(empty.body, json!({}));
    let file = app
        .client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/data/model.pkl",
            app.url
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert!(file.headers().get("x-content-sha256").is_some());
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"weights");
    let reader = app.token("rita", &["ml-readers"]);
    let denied = app
        .get(
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={root}"),
            &app.token("nobody", &[]),
        )
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        app.get(
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={root}"),
            &reader
        )
        .await
        .status,
        200
    );
    let unknown = app
        .get(
            "/api/2.0/mlflow-artifacts/artifacts?path=models/nope/1",
            &admin,
        )
        .await;
    assert_eq!(unknown.body["error_code"], "RESOURCE_DOES_NOT_EXIST");

    // A stored file altered after registration is not served whole.
    let stored = app.data_dir.path().join("artifacts");
    let victim = walk(&stored)
        .into_iter()
        .find(|p| p.ends_with("model.pkl"))
        .expect("stored file");
    std::fs::write(&victim, b"WEIGHTS").unwrap();
    // The response either never completes its headers or ends short: either way no client
    // receives the altered bytes as a complete file.
    let tampered = app
        .client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/data/model.pkl",
            app.url
        ))
        .bearer_auth(&admin)
        .send()
        .await;
    match tampered {
        Err(_) => {}
        Ok(response) => assert!(
            response.bytes().await.is_err(),
            "a tampered download must fail"
        ),
    }
});

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
