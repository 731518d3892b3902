//! The tracking pass-through's forwarding rules, against a tiny axum server standing in for the
//! MLflow upstream: what reaches it (path safety, headers, credentials), what streams, and how
//! errors look. The real-server workflow is covered by tests/mlflow_tracking (Python).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

const UPSTREAM_TOKEN: &str = "upstream-secret";
const BIG: usize = 64 * 1024 * 1024;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap)>>>);

impl Seen {
    fn all(&self) -> Vec<(String, HeaderMap)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// The fake upstream: records every request; streams uploads into a byte count and downloads
/// out of nothing; knows one run.
async fn fake_upstream(seen: Seen) -> String {
    let app = axum::Router::new().fallback(move |request: Request| {
        let seen = seen.clone();
        async move {
            let target = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            if let Ok(mut all) = seen.0.lock() {
                all.push((target.clone(), request.headers().clone()));
            }
            upstream_answer(request, &target).await
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

async fn upstream_answer(request: Request, target: &str) -> Response {
    if request.method() == axum::http::Method::PUT {
        let mut stream = request.into_body().into_data_stream();
        let mut received = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            received += chunk.len();
        }
        return axum::Json(json!({ "received": received })).into_response();
    }
    if target.ends_with("/big") {
        let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
        let stream = futures::stream::iter(
            (0..BIG / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        return Body::from_stream(stream).into_response();
    }
    if target.starts_with("/api/2.0/mlflow/runs/get?run_id=r1") {
        return axum::Json(json!({ "run": {
            "info": { "run_id": "r1", "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/r1/artifacts" },
            "data": {
                "metrics": [{ "key": "f1", "value": 0.93, "timestamp": 1, "step": 0 }],
                "params": [{ "key": "C", "value": "1.0" }],
                "tags": [{ "key": "mlflow.user", "value": "ana" }]
            }
        }}))
        .into_response();
    }
    if target.contains("teapot") {
        return (StatusCode::IM_A_TEAPOT, "short and stout").into_response();
    }
    if target.starts_with("/api/2.0/mlflow/runs/get") || target.contains("logged-models") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error_code": "RESOURCE_DOES_NOT_EXIST" })),
        )
            .into_response();
    }
    axum::Json(json!({ "ok": true })).into_response()
}

async fn with_upstream(extra: &[&str]) -> (TestApp, Seen) {
    let seen = Seen::default();
    let url = fake_upstream(seen.clone()).await;
    let mut args = vec![
        "--mlflow-upstream",
        &url,
        "--mlflow-upstream-token",
        UPSTREAM_TOKEN,
    ];
    args.extend_from_slice(extra);
    (spawn_app_with(Backend::Sqlite, &args).await, seen)
}

async fn raw_get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    raw_request(app, &format!("GET {path}"), token, "").await
}

/// One request written by hand: hyper's client would normalise some paths, and would insist
/// on sending a body it declared.
async fn raw_request(app: &TestApp, line: &str, token: &str, headers: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{line} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{headers}Connection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_foreign_targets_never_reach_the_upstream() {
    let (app, seen) = with_upstream(&[]).await;
    let admin = app.admin();
    for path in [
        "/api/2.0/mlflow-artifacts/artifacts/../../etc/passwd",
        "/api/2.0/mlflow-artifacts/artifacts/%2e%2e/%2e%2e/etc/passwd",
        "/api/2.0/mlflow-artifacts/artifacts/%252e%252e/secret",
        "/api/2.0/mlflow-artifacts/artifacts/a%2f..%2f..%2fb",
        "/api/2.0/mlflow-artifacts/artifacts/a%5c..%5cb",
        "/api/2.0/mlflow-artifacts/artifacts/a\\..\\b",
        "/api/2.0/mlflow-artifacts/artifacts?path=../../etc",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/x;/../y",
        "http://evil.example/api/2.0/mlflow/runs/get?run_id=1",
    ] {
        let (status, body) = raw_get(&app, path, &admin).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
        if status == 400 {
            assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE", "{path}");
        }
    }
    // Registry routes are model-ledger's, even unknown ones.
    let registry = app
        .get("/api/2.0/mlflow/registered-models/no-such-call", &admin)
        .await;
    assert_eq!(
        (registry.status, registry.code()),
        (404, "ENDPOINT_NOT_FOUND")
    );
    assert!(
        seen.all().is_empty(),
        "reached the upstream: {:?}",
        seen.all()
    );

    // A plain path is forwarded, with its query, and the upstream's status is kept.
    let ok = app
        .get("/api/2.0/mlflow/experiments/search?max_results=5", &admin)
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let teapot = app
        .get("/api/2.0/mlflow/runs/get?run_id=teapot", &admin)
        .await;
    assert_eq!(teapot.status, 418);
    let targets: Vec<String> = seen.all().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        targets,
        vec![
            "/api/2.0/mlflow/experiments/search?max_results=5".to_string(),
            "/api/2.0/mlflow/runs/get?run_id=teapot".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_and_the_callers_token_are_not_forwarded() {
    let (app, seen) = with_upstream(&[]).await;
    let admin = app.admin();
    let reply = app
        .client
        .post(format!("{}/api/2.0/mlflow/runs/create", app.url))
        .bearer_auth(&admin)
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eDp5")
        .header("te", "trailers")
        .header("cookie", "session=caller")
        .header("x-kept", "yes")
        .json(&json!({ "experiment_id": "1" }))
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status(), 200);
    let all = seen.all();
    let (_, headers) = all.last().expect("forwarded");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(auth, format!("Bearer {UPSTREAM_TOKEN}"));
    assert!(!auth.contains(&admin));
    for dropped in [
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "te",
        "cookie",
    ] {
        assert!(headers.get(dropped).is_none(), "{dropped} was forwarded");
    }
    assert_eq!(
        headers.get("x-kept").and_then(|v| v.to_str().ok()),
        Some("yes")
    );
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_within_the_limit() {
    let (app, _) = with_upstream(&["--mlflow-upstream-max-body-bytes", "80000000"]).await;
    let admin = app.admin();
    let chunk = bytes::Bytes::from(vec![1u8; 1024 * 1024]);
    let upload = futures::stream::iter(
        (0..BIG / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let put = app
        .client
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/model.bin",
            app.url
        ))
        .bearer_auth(&admin)
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.expect("json");
    assert_eq!(put["received"], BIG);

    let get = app
        .client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/big",
            app.url
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 200);
    let mut stream = get.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.expect("chunk").len();
    }
    assert_eq!(received, BIG);

    // Refused on the declared length, before any byte is read or forwarded (a client still
    // writing its body may see the connection close instead, so the body is not sent here).
    let (status, body) = raw_request(
        &app,
        "PUT /api/2.0/mlflow-artifacts/artifacts/1/x",
        &admin,
        "Content-Length: 80000001\r\n",
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (413, Some("REQUEST_TOO_LARGE"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_calls_need_a_caller_and_the_tracking_actions() {
    let (app, seen) = with_upstream(&[]).await;
    let anonymous = app
        .request(
            Method::GET,
            "/api/2.0/mlflow/experiments/search",
            None,
            None,
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "UNAUTHENTICATED")
    );
    let reader = app.token("rita", &["ml-readers"]);
    let read = app
        .post("/api/2.0/mlflow/runs/search", &reader, json!({}))
        .await;
    assert_eq!(read.status, 200);
    let write = app
        .post("/api/2.0/mlflow/runs/create", &reader, json!({}))
        .await;
    assert_eq!((write.status, write.code()), (403, "PERMISSION_DENIED"));
    assert_eq!(seen.all().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_upstream_tracking_routes_name_the_setting() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin();
    for path in [
        "/api/2.0/mlflow/runs/get?run_id=1",
        "/api/2.0/mlflow-artifacts/artifacts?path=1",
        "/ajax-api/2.0/mlflow/experiments/search",
    ] {
        let reply = app.get(path, &admin).await;
        assert_eq!(
            (reply.status, reply.code()),
            (404, "ENDPOINT_NOT_FOUND"),
            "{path}"
        );
        let message = reply.body["message"].as_str().unwrap_or("");
        assert!(message.contains("--mlflow-upstream"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_clear_503_and_the_registry_keeps_working() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(Backend::Sqlite, &["--mlflow-upstream", &url]).await;
    let admin = app.admin();
    let reply = app
        .post("/api/2.0/mlflow/runs/search", &admin, json!({}))
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (503, "TEMPORARILY_UNAVAILABLE")
    );
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("upstream")
    );
    let model = app
        .post(
            "/api/2.0/mlflow/registered-models/create",
            &admin,
            json!({ "name": "down" }),
        )
        .await;
    assert_eq!(model.status, 200);
    let version = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            &admin,
            json!({ "name": "down", "source": "runs:/r9/model", "run_id": "r9" }),
        )
        .await;
    assert_eq!(version.status, 200, "{:?}", version.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_evidence_becomes_the_versions_metrics_and_resolves_the_source() {
    let (app, _) = with_upstream(&[]).await;
    let admin = app.admin();
    app.post(
        "/api/2.0/mlflow/registered-models/create",
        &admin,
        json!({ "name": "churn" }),
    )
    .await;
    let created = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            &admin,
            json!({ "name": "churn", "source": "runs:/r1/model" }),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["model_version"]["run_id"], "r1");
    let native = app.get("/api/v1/models/churn/versions/1", &admin).await;
    assert_eq!(native.body["metrics"]["f1"], 0.93);
    let uri = app
        .get(
            "/api/2.0/mlflow/model-versions/get-download-uri?name=churn&version=1",
            &admin,
        )
        .await;
    assert_eq!(
        uri.body["artifact_uri"],
        "mlflow-artifacts:/1/r1/artifacts/model"
    );
    let history = app.get("/api/v1/models/churn/history", &admin).await;
    let evidence = history.body["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|e| e["event_type"] == "VersionCreated")
                .map(|e| e["payload"]["run_evidence"].clone())
        })
        .unwrap_or(Value::Null);
    assert_eq!(evidence["status"], "captured");
    assert_eq!(evidence["params"]["C"], "1.0");
    assert_eq!(evidence["tags"]["mlflow.user"], "ana");

    let unknown = app
        .post(
            "/api/2.0/mlflow/model-versions/create",
            &admin,
            json!({ "name": "churn", "source": "runs:/nope/model" }),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (400, "INVALID_PARAMETER_VALUE")
    );
}
