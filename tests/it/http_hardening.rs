//! Issue 15, "Governance without holes": the HTTP edge under hostile input. Wrong JSON types on
//! the MLflow API, oversized bodies, unbounded metric labels, slow clients, forged forwarding
//! headers, response headers and CORS. The tracking pass-through's read/write split and size
//! limit are in `http_tracking_passthrough.rs`, failing fast while PostgreSQL is down in
//! `http_outages.rs`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

pub(crate) const MLFLOW: &str = "/api/2.0/mlflow";

// ---------------------------------------------------------------------------------------------
// Item 7: the MLflow API refuses wrong JSON types instead of coercing them.

both_backends!(
    mlflow_refuses_wrong_json_types,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        app.create_model("m").await;
        app.create_version("m").await;
        let before = app.event_count().await;
        let cases: Vec<(&str, Value)> = vec![
            ("registered-models/create", json!({"name": 12345})),
            ("registered-models/create", json!({"name": true})),
            ("registered-models/create", json!({"name": {"a": 1}})),
            ("registered-models/create", json!({"name": ["x"]})),
            ("registered-models/create", json!({"name": 1.5})),
            (
                "registered-models/create",
                json!({"name": "ok", "description": 5}),
            ),
            (
                "registered-models/create",
                json!({"name": "ok", "tags": [{"key": "k", "value": 5}]}),
            ),
            (
                "registered-models/create",
                json!({"name": "ok", "tags": [{"key": 1, "value": "v"}]}),
            ),
            (
                "registered-models/create",
                json!({"name": "ok", "tags": {"key": "k"}}),
            ),
            (
                "registered-models/rename",
                json!({"name": "m", "new_name": 7}),
            ),
            (
                "registered-models/update",
                json!({"name": "m", "description": false}),
            ),
            (
                "registered-models/set-tag",
                json!({"name": "m", "key": "k", "value": false}),
            ),
            (
                "registered-models/set-tag",
                json!({"name": "m", "key": 3, "value": "v"}),
            ),
            (
                "registered-models/alias",
                json!({"name": "m", "alias": 9, "version": "1"}),
            ),
            ("model-versions/create", json!({"name": "m", "source": 12})),
            (
                "model-versions/create",
                json!({"name": "m", "source": "s3://b/x", "run_id": 7}),
            ),
            (
                "model-versions/update",
                json!({"name": "m", "version": true, "description": "d"}),
            ),
            (
                "model-versions/update",
                json!({"name": "m", "version": 1.5, "description": "d"}),
            ),
            (
                "model-versions/update",
                json!({"name": "m", "version": {"v": 1}, "description": "d"}),
            ),
            (
                "model-versions/transition-stage",
                json!({"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": 1}),
            ),
            (
                "model-versions/transition-stage",
                json!({"name": "m", "version": "1", "stage": 2}),
            ),
            (
                "model-versions/set-tag",
                json!({"name": "m", "version": "1", "key": "k", "value": 1}),
            ),
        ];
        for (path, body) in &cases {
            let r = app
                .post(&format!("{MLFLOW}/{path}"), &admin, body.clone())
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "INVALID_PARAMETER_VALUE"),
                "{path} {body}: {:?}",
                r.body
            );
        }
        // Reads with parameters in a JSON body are checked the same way.
        let read_cases: Vec<(&str, Value)> = vec![
            ("registered-models/search", json!({"max_results": true})),
            ("registered-models/search", json!({"filter": 5})),
            ("registered-models/search", json!({"order_by": [1]})),
            ("registered-models/search", json!({"page_token": 3})),
            ("model-versions/search", json!({"max_results": "five"})),
            ("model-versions/search", json!({"max_results": 2.5})),
            ("registered-models/get", json!({"name": 1})),
            ("model-versions/get", json!({"name": "m", "version": false})),
        ];
        for (path, body) in &read_cases {
            let r = app
                .post(&format!("{MLFLOW}/{path}"), &admin, body.clone())
                .await;
            assert_eq!(
                (r.status, r.code()),
                (400, "INVALID_PARAMETER_VALUE"),
                "{path} {body}: {:?}",
                r.body
            );
        }
        assert_eq!(app.event_count().await, before, "a refused request wrote");

        // What the real MLflow client sends keeps working: versions and numbers as strings,
        // query strings, booleans as JSON booleans, numbers for int64 fields.
        let ok = |r: &crate::helpers::Reply, what: &str| {
            assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        };
        let r = app
            .post(
                &format!("{MLFLOW}/registered-models/create"),
                &admin,
                json!({"name": "m2", "tags": [{"key": "k", "value": "v"}], "description": "d"}),
            )
            .await;
        ok(&r, "create");
        let r = app
            .post(
                &format!("{MLFLOW}/model-versions/create"),
                &admin,
                json!({"name": "m2", "source": "s3://b/m2", "run_id": ""}),
            )
            .await;
        ok(&r, "create version");
        assert_eq!(r.body["model_version"]["version"], "1");
        let r = app
            .post(
                &format!("{MLFLOW}/model-versions/get"),
                &admin,
                json!({"name": "m2", "version": "1"}),
            )
            .await;
        ok(&r, "get version (string)");
        let r = app
            .get(
                &format!("{MLFLOW}/model-versions/get?name=m2&version=1"),
                &admin,
            )
            .await;
        ok(&r, "get version (query)");
        let r = app
            .get(
                &format!("{MLFLOW}/registered-models/search?max_results=5"),
                &admin,
            )
            .await;
        ok(&r, "search (query)");
        for max in [json!(5), json!("5")] {
            let r = app
                .post(
                    &format!("{MLFLOW}/registered-models/search"),
                    &admin,
                    json!({"max_results": max, "order_by": ["name ASC"], "filter": "name LIKE 'm%'"}),
                )
                .await;
            ok(&r, "search (body)");
        }
        let r = app
            .post(
                &format!("{MLFLOW}/model-versions/transition-stage"),
                &admin,
                json!({"name": "m2", "version": "1", "stage": "Staging", "archive_existing_versions": true}),
            )
            .await;
        ok(&r, "transition");
        let r = app
            .post(
                &format!("{MLFLOW}/model-versions/set-tag"),
                &admin,
                json!({"name": "m2", "version": "1", "key": "k", "value": ""}),
            )
            .await;
        ok(&r, "set version tag");
        let r = app
            .post(
                &format!("{MLFLOW}/registered-models/get-latest-versions"),
                &admin,
                json!({"name": "m2", "stages": ["Staging"]}),
            )
            .await;
        ok(&r, "latest versions");
    }
);

// ---------------------------------------------------------------------------------------------
// Item 8: an oversized body is 413 REQUEST_TOO_LARGE with a JSON body on both APIs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_json_on_both_apis() {
    let app = spawn_app_with(Backend::Sqlite, &["--max-body-bytes", "1024"]).await;
    let admin = app.admin();
    let big = json!({"name": "big", "description": "y".repeat(4096)}).to_string();
    for path in [
        "/api/v1/models".to_string(),
        format!("{MLFLOW}/registered-models/create"),
        "/ajax-api/2.0/mlflow/registered-models/create".to_string(),
    ] {
        // Once with a Content-Length, once chunked (no length known in advance).
        let sized = app
            .send_raw(
                Method::POST,
                &path,
                &admin,
                "application/json",
                big.clone().into_bytes(),
            )
            .await;
        assert_eq!(
            (sized.status, sized.code()),
            (413, "REQUEST_TOO_LARGE"),
            "{path}: {:?}",
            sized.body
        );
        // The body was left unread: the connection is closed, and the answer says so, so a
        // pooling client does not reuse it.
        assert_eq!(
            sized
                .headers
                .get("connection")
                .and_then(|v| v.to_str().ok()),
            Some("close"),
            "{path}"
        );
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.as_bytes().chunks(512).map(|c| Ok(c.to_vec())).collect();
        let resp = app
            .client
            .post(format!("{}{path}", app.url))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["error_code"].as_str()),
            (413, Some("REQUEST_TOO_LARGE")),
            "{path} chunked: {body:?}"
        );
    }
    assert_eq!(app.event_count().await, 0);
}

// ---------------------------------------------------------------------------------------------
// Item 9: unauthenticated junk cannot grow /metrics.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_labels_stay_bounded_under_junk_methods_and_paths() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut junk = Vec::new();
    for _ in 0..40 {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase();
        let method = format!("X{tag}");
        let path = format!("/junk-{tag}/x");
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let _ = app
            .client
            .request(m.clone(), format!("{}{path}", app.url))
            .send()
            .await;
        // Junk paths below the nested APIs (their own fallbacks) and a junk method on a
        // real route too.
        for prefix in [
            "/api/2.0/mlflow",
            "/api/v1",
            "/ajax-api/2.0/mlflow",
            "/api/2.0/mlflow-artifacts",
        ] {
            let _ = app
                .client
                .get(format!("{}{prefix}/junk-{tag}", app.url))
                .send()
                .await;
        }
        let _ = app
            .client
            .request(m, format!("{}/api/v1/models", app.url))
            .send()
            .await;
        junk.push((method, tag));
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for (method, tag) in &junk {
        assert!(
            !metrics.contains(method.as_str()) && !metrics.contains(tag.as_str()),
            "junk label {method} reached /metrics"
        );
    }
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
}

// ---------------------------------------------------------------------------------------------
// Item 10: half a request does not hold a connection for minutes.

/// Writes `bytes` and waits for the server to close the connection; returns how long that
/// took and what the server wrote, or `None` if it held the connection past `limit`.
async fn wait_for_close(
    app: &TestApp,
    bytes: &[u8],
    limit: Duration,
) -> Option<(Duration, String)> {
    let addr = app.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(bytes).await.expect("write");
    let start = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|_| {
        (
            start.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &["--header-read-timeout", "1s", "--body-read-timeout", "1s"],
    )
    .await;
    let addr = app.url.trim_start_matches("http://").to_string();
    // Half the headers, then silence.
    let half = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let (took, _) = wait_for_close(&app, half.as_bytes(), Duration::from_secs(6))
        .await
        .expect("the server held a half-sent request's connection");
    assert!(took < Duration::from_secs(4), "closed only after {took:?}");

    // Full headers, a tenth of the declared body, then silence: on both APIs.
    let token = app.admin();
    for path in ["/api/2.0/mlflow/registered-models/create", "/api/v1/models"] {
        let partial = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"name\": "
        );
        let (took, answer) = wait_for_close(&app, partial.as_bytes(), Duration::from_secs(6))
            .await
            .expect("the server held a half-sent body's connection");
        assert!(
            took < Duration::from_secs(4),
            "{path}: closed only after {took:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{path}: {answer}");
    }
    assert_eq!(app.event_count().await, 0);

    // An artifact upload that stalls is a timeout too (408), not a malformed body.
    app.create_model("slow").await;
    let events = app.event_count().await;
    let session = app
        .post("/api/v1/models/slow/uploads", &token, json!({}))
        .await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    let id = session.body["upload_id"].as_str().expect("upload id");
    let partial = format!(
        "PUT /api/v1/models/slow/uploads/{id}/files/model.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1000\r\n\r\nfirst bytes"
    );
    let (took, answer) = wait_for_close(&app, partial.as_bytes(), Duration::from_secs(6))
        .await
        .expect("the server held a stalled upload's connection");
    assert!(
        took < Duration::from_secs(4),
        "upload: closed only after {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "upload: {answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "upload: {answer}");
    assert_eq!(app.event_count().await, events);

    // A complete request on a fresh connection still works.
    let ok = app.get("/api/v1/models", &app.admin()).await;
    assert_eq!(ok.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Item 12: forwarding headers are honoured only from configured proxies.

async fn stored_version(app: &TestApp, token: &str) {
    app.create_model("fw").await;
    let r = app
        .post("/api/v1/models/fw/uploads", token, json!({}))
        .await;
    assert_eq!(r.status, 201, "start upload: {:?}", r.body);
    let id = r.body["upload_id"].as_str().expect("upload id").to_string();
    let r = app
        .send_raw(
            Method::PUT,
            &format!("/api/v1/models/fw/uploads/{id}/files/MLmodel"),
            token,
            "application/octet-stream",
            b"flavors: {}\n".to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "upload: {:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/models/fw/uploads/{id}/commit"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "commit: {:?}", r.body);
}

async fn download_uri(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> String {
    let mut req = app
        .client
        .get(format!(
            "{}{MLFLOW}/model-versions/get-download-uri?name=fw&version=1",
            app.url
        ))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["artifact_uri"].as_str().expect("uri").to_string()
}

both_backends!(
    forwarding_headers_are_trusted_only_from_proxies,
    |backend: Backend| async move {
        let forged: [(&str, &str); 2] = [
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ];
        let rfc7239 = [("forwarded", "for=1.2.3.4;host=evil.example;proto=https")];

        // No --trusted-proxy: every caller is a stranger.
        let app = spawn_app(backend).await;
        let admin = app.admin();
        stored_version(&app, &admin).await;
        let own = format!("{}/api/2.0/mlflow-artifacts/artifacts/models/", app.url);
        for headers in [&forged[..], &rfc7239[..]] {
            let uri = download_uri(&app, &admin, headers).await;
            assert!(uri.starts_with(&own), "{headers:?} rewrote the URI: {uri}");
        }
        // A proxy range that does not contain the caller changes nothing.
        let app = spawn_app_with(backend, &["--trusted-proxy", "10.0.0.0/8"]).await;
        let admin = app.admin();
        stored_version(&app, &admin).await;
        let own = format!("{}/api/2.0/mlflow-artifacts/artifacts/models/", app.url);
        let uri = download_uri(&app, &admin, &forged).await;
        assert!(uri.starts_with(&own), "{uri}");

        // The caller (127.0.0.1) inside a trusted range: its headers are honoured.
        let app = spawn_app_with(
            backend,
            &[
                "--trusted-proxy",
                "10.0.0.0/8",
                "--trusted-proxy",
                "127.0.0.1/32",
            ],
        )
        .await;
        let admin = app.admin();
        stored_version(&app, &admin).await;
        for headers in [&forged[..], &rfc7239[..]] {
            let uri = download_uri(&app, &admin, headers).await;
            assert!(
                uri.starts_with("https://evil.example/api/2.0/mlflow-artifacts/artifacts/models/"),
                "{headers:?}: {uri}"
            );
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_trusted_proxy_range_is_refused_at_start() {
    use clap::Parser;
    let parsed = model_ledger::config::Cli::try_parse_from([
        "model-ledger",
        "serve",
        "--trusted-proxy",
        "10.0.0.0/33",
    ]);
    assert!(parsed.is_err(), "an invalid CIDR was accepted");
    let parsed = model_ledger::config::Cli::try_parse_from([
        "model-ledger",
        "serve",
        "--trusted-proxy",
        "192.168.1.7",
    ]);
    assert!(parsed.is_ok(), "a single address should be accepted as /32");
}

// ---------------------------------------------------------------------------------------------
// Item 16: response headers for a browser-facing API; CORS off unless allow-listed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_answer_and_cors_only_when_allowed() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin();
    let check_common = |h: &reqwest::header::HeaderMap, what: &str| {
        assert_eq!(
            h.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{what}"
        );
        assert_eq!(
            h.get("referrer-policy").map(|v| v.as_bytes()),
            Some(&b"no-referrer"[..]),
            "{what}"
        );
    };
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .header("origin", "https://console.example")
        .send()
        .await
        .expect("send");
    check_common(health.headers(), "healthz");
    assert!(
        health
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let anonymous = app.request(Method::GET, "/api/v1/models", None, None).await;
    assert_eq!(anonymous.status, 401);
    check_common(&anonymous.headers, "401");
    let authed = app.get("/api/v1/models", &admin).await;
    assert_eq!(authed.status, 200);
    check_common(&authed.headers, "authenticated");
    assert_eq!(
        authed.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let mlflow = app
        .get(&format!("{MLFLOW}/registered-models/search"), &admin)
        .await;
    assert_eq!(
        mlflow.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let unknown = app.get("/nope", &admin).await;
    check_common(&unknown.headers, "404");
    // CORS is off by default: a preflight gets no CORS headers.
    let preflight = app
        .client
        .request(Method::OPTIONS, format!("{}/api/v1/models", app.url))
        .header("origin", "https://console.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("send");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let app = spawn_app_with(
        Backend::Sqlite,
        &["--cors-allow-origin", "https://console.example"],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/api/v1/models", app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://console.example").await.expect("send");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://console.example"[..])
    );
    let methods = allowed
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let refused = preflight("https://evil.example").await.expect("send");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let actual = app
        .client
        .get(format!("{}/api/v1/models", app.url))
        .bearer_auth(app.admin())
        .header("origin", "https://console.example")
        .send()
        .await
        .expect("send");
    assert_eq!(actual.status(), 200);
    assert_eq!(
        actual
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"https://console.example"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cors_origin_is_refused_at_start() {
    use clap::Parser;
    for bad in [
        "*",
        "console.example",
        "https://console.example/path",
        "https://a b",
    ] {
        let parsed = model_ledger::config::Cli::try_parse_from([
            "model-ledger",
            "serve",
            "--cors-allow-origin",
            bad,
        ]);
        assert!(parsed.is_err(), "{bad} was accepted as a CORS origin");
    }
}
