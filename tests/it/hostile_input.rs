//! A table of hostile inputs across names, versions, aliases, tag keys, stages, filters, page
//! tokens, file paths and source URIs, sent through the native and the MLflow API on both
//! backends. Every one must get a 4xx with a documented JSON error (see docs/security.md and
//! docs/mlflow.md) and append no event; none may get a 5xx or hang the server.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, enc, spawn_app_with};

/// The error codes the APIs document for refused input.
const DOCUMENTED: [&str; 6] = [
    "INVALID_PARAMETER_VALUE",
    "MALFORMED_REQUEST",
    "RESOURCE_DOES_NOT_EXIST",
    "ENDPOINT_NOT_FOUND",
    "REQUEST_TOO_LARGE",
    "RESOURCE_ALREADY_EXISTS",
];

/// One hostile request: what it probes, and how it is sent.
struct Case {
    category: &'static str,
    value: String,
    method: Method,
    path: String,
    body: Option<Value>,
}

fn case(
    category: &'static str,
    value: impl Into<String>,
    method: Method,
    path: String,
    body: Option<Value>,
) -> Case {
    Case {
        category,
        value: value.into(),
        method,
        path,
        body,
    }
}

const MLFLOW: &str = "/api/2.0/mlflow";

fn cases(upload_id: &str) -> Vec<Case> {
    let mut out = Vec::new();

    // Names: through the native create body, the native path, and the MLflow create body.
    let names = [
        String::new(),
        "x".repeat(257),
        "a\u{0}b".into(),
        "a\u{1}b".into(),
        "line\nbreak".into(),
        "tab\there".into(),
        "\u{7f}".into(),
        "\u{85}next-line".into(),
        ".".into(),
        "..".into(),
    ];
    for name in &names {
        out.push(case(
            "name",
            name.clone(),
            Method::POST,
            "/api/v1/models".into(),
            Some(json!({"name": name})),
        ));
        out.push(case(
            "name",
            name.clone(),
            Method::POST,
            format!("{MLFLOW}/registered-models/create"),
            Some(json!({"name": name})),
        ));
    }
    for name in ["x".repeat(257), "a\u{1}b".into(), "nul\u{0}".into()] {
        out.push(case(
            "name",
            name.clone(),
            Method::GET,
            format!("/api/v1/models/{}", enc(&name)),
            None,
        ));
    }
    // Wrong JSON types where a name is expected.
    for wrong in [
        json!(12345),
        json!(true),
        json!(null),
        json!(["m"]),
        json!({"n": "m"}),
    ] {
        out.push(case(
            "name",
            wrong.to_string(),
            Method::POST,
            format!("{MLFLOW}/registered-models/create"),
            Some(json!({"name": wrong})),
        ));
        out.push(case(
            "name",
            wrong.to_string(),
            Method::POST,
            "/api/v1/models".into(),
            Some(json!({"name": wrong})),
        ));
    }

    // Versions.
    // (MLflow's server reads versions with Python's int(), which accepts " 1"; so do we there.)
    for v in [
        "0",
        "-1",
        "abc",
        "1.5",
        "99999999999999999999999",
        "1e3",
        " 1",
        "0x10",
        "\u{661}",
        "9223372036854775808",
    ] {
        out.push(case(
            "version",
            v,
            Method::GET,
            format!("/api/v1/models/m/versions/{}", enc(v)),
            None,
        ));
        if v == " 1" {
            continue;
        }
        out.push(case(
            "version",
            v,
            Method::GET,
            format!("{MLFLOW}/model-versions/get?name=m&version={}", enc(v)),
            None,
        ));
    }

    // Aliases.
    for alias in [
        "latest",
        "v1",
        "V12",
        "",
        "a b",
        &"x".repeat(256),
        "a/b",
        "ä",
        "a\u{0}",
    ] {
        out.push(case(
            "alias",
            alias,
            Method::POST,
            format!("{MLFLOW}/registered-models/alias"),
            Some(json!({"name": "m", "alias": alias, "version": "1"})),
        ));
    }
    for alias in ["latest", "v7", "a b", "ä"] {
        out.push(case(
            "alias",
            alias,
            Method::PUT,
            format!("/api/v1/models/m/aliases/{}", enc(alias)),
            Some(json!({"version": 1})),
        ));
    }

    // Tag keys (and one oversized value).
    for key in [String::new(), "k".repeat(251), "a\u{1}b".into()] {
        out.push(case(
            "tag key",
            key.clone(),
            Method::POST,
            format!("{MLFLOW}/registered-models/set-tag"),
            Some(json!({"name": "m", "key": key, "value": "v"})),
        ));
    }
    for key in ["k".repeat(251), "a\u{1}b".into()] {
        out.push(case(
            "tag key",
            key.clone(),
            Method::PUT,
            format!("/api/v1/models/m/tags/{}", enc(&key)),
            Some(json!({"value": "v"})),
        ));
    }
    out.push(case(
        "tag value",
        "5001 characters",
        Method::PUT,
        "/api/v1/models/m/tags/k".into(),
        Some(json!({"value": "v".repeat(5001)})),
    ));

    // Stages.
    for stage in [
        json!("Prod"),
        json!(""),
        json!("Deleted"),
        json!("Production; DROP"),
        json!(5),
        json!(null),
    ] {
        out.push(case(
            "stage",
            stage.to_string(),
            Method::POST,
            "/api/v1/models/m/versions/1/stage".into(),
            Some(json!({"stage": stage})),
        ));
    }
    for stage in ["Bogus", "", "archived!"] {
        out.push(case(
            "stage",
            stage,
            Method::POST,
            format!("{MLFLOW}/model-versions/transition-stage"),
            Some(json!({"name": "m", "version": "1", "stage": stage, "archive_existing_versions": false})),
        ));
    }

    // Filters.
    let many_clauses = vec!["name = 'a'"; 1000].join(" AND ");
    let huge = format!("name = '{}'", "a".repeat(1024 * 1024));
    for filter in [
        "name = ".to_string(),
        "name LIKE".into(),
        "unknown_field = 'x'".into(),
        "name = 'a' AND".into(),
        "tags.`x = 'a'".into(),
        "name = 'a' OR name = 'b'".into(),
        "'; DROP TABLE events; --".into(),
        "name = 'unterminated".into(),
        many_clauses,
        huge,
    ] {
        out.push(case(
            "filter",
            if filter.len() > 60 {
                format!("{} bytes", filter.len())
            } else {
                filter.clone()
            },
            Method::POST,
            format!("{MLFLOW}/registered-models/search"),
            Some(json!({"filter": filter})),
        ));
    }
    out.push(case(
        "filter",
        "run_id = (version search)",
        Method::POST,
        format!("{MLFLOW}/model-versions/search"),
        Some(json!({"filter": "run_id = "})),
    ));

    // Page tokens and page sizes.
    for token in [
        "garbage",
        "AAAA",
        "eyJvZmZzZXQiOi0xfQ==",
        "%%%",
        &"A".repeat(10_000),
    ] {
        out.push(case(
            "page token",
            if token.len() > 40 {
                "10,000 characters".to_string()
            } else {
                token.to_string()
            },
            Method::POST,
            format!("{MLFLOW}/registered-models/search"),
            Some(json!({"page_token": token})),
        ));
    }
    for cursor in ["garbage", "-5", "1;2"] {
        out.push(case(
            "page token",
            cursor,
            Method::GET,
            format!("/api/v1/models?cursor={}", enc(cursor)),
            None,
        ));
    }
    for size in [json!(0), json!(-1), json!(100_000), json!("ten")] {
        out.push(case(
            "page size",
            size.to_string(),
            Method::POST,
            format!("{MLFLOW}/registered-models/search"),
            Some(json!({"max_results": size})),
        ));
    }

    // File paths inside an upload session (sent encoded so no client normalizes them away).
    for path in [
        "..%2Fx",
        "a%2F..%2Fb",
        "%2Fabs",
        "a%2F%2Fb",
        "a%5Cb",
        "nul%00",
        ".",
        &"p".repeat(901),
    ] {
        out.push(case(
            "file path",
            path,
            Method::PUT,
            format!("/api/v1/models/m/uploads/{upload_id}/files/{path}"),
            None,
        ));
    }

    // Source URIs and artifact locations.
    for source in [
        String::new(),
        "   ".into(),
        "s".repeat(4097),
        "a\u{0}b".into(),
    ] {
        out.push(case(
            "source",
            if source.len() > 40 {
                format!("{} characters", source.len())
            } else {
                source.clone()
            },
            Method::POST,
            format!("{MLFLOW}/model-versions/create"),
            Some(json!({"name": "m", "source": source})),
        ));
    }
    for location in [
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data",
        "s3://other-bucket/x",
        "store://default/../x",
        "store://nope/models",
    ] {
        out.push(case(
            "artifact location",
            location,
            Method::POST,
            "/api/v1/models/m/versions".into(),
            Some(json!({"source": location, "artifact": {"location": location}})),
        ));
    }
    out
}

async fn send(app: &TestApp, token: &str, c: &Case) -> (u16, Value) {
    let mut req = app
        .client
        .request(c.method.clone(), format!("{}{}", app.url, c.path))
        .bearer_auth(token);
    match &c.body {
        Some(body) => req = req.json(body),
        None if c.method == Method::PUT => {
            req = req
                .header("content-type", "application/octet-stream")
                .body(b"bytes".to_vec());
        }
        None => {}
    }
    let response = req.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

both_backends!(
    hostile_inputs_get_documented_4xx_and_write_nothing,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &["--max-body-bytes", "2097152"]).await;
        let admin = app.admin();
        app.create_model("m").await;
        app.create_version("m").await;
        let upload = app
            .post("/api/v1/models/m/uploads", &admin, json!({}))
            .await;
        assert_eq!(upload.status, 201, "{:?}", upload.body);
        let upload_id = upload.body["upload_id"]
            .as_str()
            .expect("upload id")
            .to_string();
        let before = app.event_count().await;

        let cases = cases(&upload_id);
        assert!(cases.len() >= 60, "only {} hostile inputs", cases.len());
        let mut failures = Vec::new();
        for c in &cases {
            let (status, body) = send(&app, &admin, c).await;
            let code = body["error_code"].as_str().unwrap_or("");
            let documented = DOCUMENTED.contains(&code)
                && body["message"].as_str().is_some_and(|m| !m.is_empty());
            if !(400..500).contains(&status) || !documented {
                failures.push(format!(
                    "{} {:?} ({} {}): {status} {body}",
                    c.category,
                    c.value.escape_debug().to_string(),
                    c.method,
                    c.path.chars().take(120).collect::<String>()
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} hostile inputs answered wrongly:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        assert_eq!(
            app.event_count().await,
            before,
            "hostile input appended events"
        );
        // Still healthy afterwards.
        let health = app.get("/healthz", &admin).await;
        assert_eq!(health.status, 200);
    }
);
