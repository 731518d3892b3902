//! Bad input on every native endpoint gets the documented 4xx JSON error and writes nothing.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with};

both_backends!(bad_input_sweep, |backend: Backend| async move {
    let app = spawn_app_with(backend, &["--max-body-bytes", "4096"]).await;
    let token = app.admin();
    app.create_model("m").await;
    app.create_version("m").await;
    let before = app.event_count().await;
    let long_name = "x".repeat(300);
    let oversize = json!({"name": "big", "description": "y".repeat(10_000)})
        .to_string()
        .into_bytes();

    // (method, path, content type, body, expected status, expected code)
    type Case<'a> = (Method, String, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            b"{not json".to_vec(),
            400,
            "MALFORMED_REQUEST",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            br#"{"name": 5}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            br#"{"nmae": "x"}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            format!(r#"{{"name": "{long_name}"}}"#).into_bytes(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            b"{\"name\": \"a\\u0001b\"}".to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            br#"{"name": ""}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "text/plain",
            br#"{"name": "x"}"#.to_vec(),
            415,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models".into(),
            "application/json",
            oversize,
            413,
            "REQUEST_TOO_LARGE",
        ),
        (
            Method::PATCH,
            "/api/v1/models/m".into(),
            "application/json",
            br#"{}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::PATCH,
            "/api/v1/models/nope".into(),
            "application/json",
            br#"{"description": "d"}"#.to_vec(),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::DELETE,
            "/api/v1/models/nope".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::PUT,
            "/api/v1/models/m/tags/k".into(),
            "application/json",
            br#"{"value": 1}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::DELETE,
            "/api/v1/models/m/tags/absent".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions".into(),
            "application/json",
            br#"{"source": ""}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions".into(),
            "application/json",
            br#"{"source": "s", "metrics": {"f1": "high"}}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/nope/versions".into(),
            "application/json",
            br#"{"source": "s"}"#.to_vec(),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::GET,
            "/api/v1/models/m/versions/abc".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/models/m/versions/0".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/models/m/versions/99".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::PATCH,
            "/api/v1/models/m/versions/99".into(),
            "application/json",
            br#"{"description": "d"}"#.to_vec(),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::DELETE,
            "/api/v1/models/m/versions/99".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/1/stage".into(),
            "application/json",
            br#"{"stage": "Prod"}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/1/stage".into(),
            "application/json",
            br#"{"stage": "Archived", "archive_existing_versions": true}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/1/stage".into(),
            "application/json",
            br#"{"stage": "Staging", "archive_existing_versions": "yes"}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/m/versions/7/stage".into(),
            "application/json",
            br#"{"stage": "Staging"}"#.to_vec(),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::POST,
            "/api/v1/models/m/stages/None/rollback".into(),
            "application/json",
            br#"{}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::POST,
            "/api/v1/models/m/stages/Production/rollback".into(),
            "application/json",
            br#"{}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::PUT,
            "/api/v1/models/m/aliases/latest".into(),
            "application/json",
            br#"{"version": 1}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::PUT,
            "/api/v1/models/m/aliases/champion".into(),
            "application/json",
            br#"{"version": -1}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::PUT,
            "/api/v1/models/m/aliases/champion".into(),
            "application/json",
            br#"{"version": [1]}"#.to_vec(),
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::DELETE,
            "/api/v1/models/m/aliases/ghost".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::GET,
            "/api/v1/resolve?uri=runs:/abc".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/resolve?uri=models:/nope/1".into(),
            "application/json",
            vec![],
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            Method::GET,
            "/api/v1/models?limit=0".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/models?cursor=%%%".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/models/m/history?order=sideways".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/events?after=x".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/events?type=Nope".into(),
            "application/json",
            vec![],
            400,
            "INVALID_PARAMETER_VALUE",
        ),
        (
            Method::GET,
            "/api/v1/no-such-thing".into(),
            "application/json",
            vec![],
            404,
            "ENDPOINT_NOT_FOUND",
        ),
        (
            Method::PUT,
            "/api/v1/models".into(),
            "application/json",
            vec![],
            405,
            "ENDPOINT_NOT_FOUND",
        ),
    ];
    for (method, path, content_type, body, status, code) in cases {
        let reply = app
            .send_raw(method.clone(), &path, &token, content_type, body)
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {path}: {:?}",
            reply.body
        );
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path} has a message"
        );
    }
    assert_eq!(
        app.event_count().await,
        before,
        "no bad request wrote an event"
    );
    // The server is still healthy after all of that.
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
});

both_backends!(
    health_readiness_and_metrics,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &[]).await;
        let ready = app.request(Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status, 200);
        assert_eq!(ready.body["database"], "ok");
        app.create_model("m").await;
        let metrics = app
            .client
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("model_ledger_http_requests_total"),
            "{metrics}"
        );
        assert!(metrics.contains("route=\"/api/v1/models\""));
        assert!(metrics.contains("model_ledger_http_request_duration_seconds_bucket"));
    }
);
