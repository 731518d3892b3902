//! Issue 15, "Governance without holes": the tracking pass-through under hostile input. A
//! proxy that told reads from writes by a path's last segment would let a reader delete runs
//! by dressing the write up as a `get`, and one that forwarded before counting bytes would
//! hand the upstream any size of body; so the test puts a recording stand-in upstream behind
//! the server and checks what reached it, not only what the server answered.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};

// ---------------------------------------------------------------------------------------------
// Item 13: the tracking pass-through decides read vs write by the full route and refuses
// oversized bodies before forwarding anything.

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, usize)>>>);

impl Received {
    fn all(&self) -> Vec<(String, usize)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A stand-in MLflow tracking server that records each request's target and body size.
async fn recording_upstream(received: Received) -> String {
    let app = axum::Router::new().fallback(move |request: Request| {
        let received = received.clone();
        async move {
            let target = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let mut stream = request.into_body().into_data_stream();
            let mut size = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                size += chunk.len();
            }
            if let Ok(mut all) = received.0.lock() {
                all.push((target, size));
            }
            axum::Json(json!({ "ok": true }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_reads_and_writes_are_decided_by_the_full_route() {
    let received = Received::default();
    let upstream = recording_upstream(received.clone()).await;
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            "--mlflow-upstream",
            &upstream,
            "--mlflow-upstream-max-body-bytes",
            "1024",
        ],
    )
    .await;
    let reader = app.token("rita", &["ml-readers"]);
    let admin = app.admin();

    // Writes dressed up as reads by their last segment.
    for path in [
        "/api/2.0/mlflow/runs/delete/get",
        "/api/2.0/mlflow/experiments/delete/search",
        "/api/2.0/mlflow/runs/delete/list",
        "/api/2.0/mlflow/runs/set-tag/get-history",
        "/ajax-api/2.0/mlflow/runs/delete/get",
    ] {
        let r = app.post(path, &reader, json!({"run_id": "r1"})).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "PERMISSION_DENIED"),
            "{path}: {:?}",
            r.body
        );
    }
    // Unknown tracking routes need the write permission (the safe side), whatever the method.
    for (method, path) in [
        (Method::GET, "/api/2.0/mlflow/some/future/route"),
        (Method::POST, "/api/2.0/mlflow/some/future/get"),
    ] {
        let r = app.request(method, path, Some(&reader), None).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "PERMISSION_DENIED"),
            "{path}: {:?}",
            r.body
        );
    }
    assert!(received.all().is_empty(), "forwarded: {:?}", received.all());

    // Real reads still pass for a reader.
    for (method, path) in [
        (Method::POST, "/api/2.0/mlflow/runs/search"),
        (Method::POST, "/api/2.0/mlflow/experiments/search"),
        (Method::GET, "/api/2.0/mlflow/runs/get?run_id=r1"),
        (
            Method::GET,
            "/api/2.0/mlflow/metrics/get-history?run_id=r1&metric_key=m",
        ),
        (Method::GET, "/api/2.0/mlflow/logged-models/m-123"),
        (
            Method::GET,
            "/api/2.0/mlflow-artifacts/artifacts?path=1%2Fr1",
        ),
        (Method::GET, "/get-artifact?path=x&run_uuid=r1"),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let r = app.request(method, path, Some(&reader), body).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    assert_eq!(received.all().len(), 7);

    // `/get-artifact` is a route, not a prefix.
    let r = app.get("/get-artifactsXYZ", &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "ENDPOINT_NOT_FOUND"),
        "{:?}",
        r.body
    );
    let r = app.get("/model-versions/get-artifact-extra", &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "ENDPOINT_NOT_FOUND"),
        "{:?}",
        r.body
    );
    assert_eq!(received.all().len(), 7, "{:?}", received.all());

    // Over the pass-through limit: 413 before anything is forwarded, sized or chunked.
    let big = vec![b'x'; 4096];
    let r = app
        .send_raw(
            Method::PUT,
            "/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/blob",
            &admin,
            "application/octet-stream",
            big.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (413, "REQUEST_TOO_LARGE"),
        "{:?}",
        r.body
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(256).map(|c| Ok(c.to_vec())).collect();
    let resp = app
        .client
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/blob",
            app.url
        ))
        .bearer_auth(&admin)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error_code"].as_str()),
        (413, Some("REQUEST_TOO_LARGE")),
        "{body:?}"
    );
    assert_eq!(received.all().len(), 7, "{:?}", received.all());

    // Within the limit, a chunked upload arrives whole.
    let small: Vec<Result<Vec<u8>, std::io::Error>> = vec![b'y'; 1000]
        .chunks(100)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = app
        .client
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/small",
            app.url
        ))
        .bearer_auth(&admin)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(small)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let last = received.all().last().cloned().expect("forwarded");
    assert_eq!(
        last,
        (
            "/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/small".to_string(),
            1000
        )
    );
}
