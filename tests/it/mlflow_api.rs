//! The MLflow Model Registry REST API at the wire level, on both backends: field names and
//! types, error codes and statuses, filters, pagination, GET and POST searches, DELETE with a
//! JSON body and aliases. Download URIs and the artifact proxy are in `mlflow_download_uris.rs`,
//! the audit trail of MLflow writes in `mlflow_audit.rs`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, spawn_app};

pub(crate) const API: &str = "/api/2.0/mlflow";

pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    app.request(method, &format!("{API}/{path}"), Some(token), body)
        .await
}

pub(crate) async fn ok(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let r = call(app, method.clone(), path, token, body).await;
    assert_eq!(r.status, 200, "{method} {path}: {:?}", r.body);
    r.body
}

pub(crate) async fn create_versions(app: &TestApp, token: &str, name: &str, n: usize) {
    ok(
        app,
        Method::POST,
        "registered-models/create",
        token,
        Some(json!({ "name": name })),
    )
    .await;
    for i in 1..=n {
        let body = json!({ "name": name, "source": format!("s3://b/{name}/{i}"), "run_id": format!("run{i}") });
        ok(
            app,
            Method::POST,
            "model-versions/create",
            token,
            Some(body),
        )
        .await;
    }
}

fn versions(body: &Value) -> Vec<String> {
    body["model_versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["version"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

both_backends!(wire_shapes_and_error_codes, |backend: Backend| async move {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let created = ok(
        &app,
        Method::POST,
        "registered-models/create",
        &admin,
        Some(json!({ "name": "churn", "description": "d", "tags": [{ "key": "team", "value": "fraud" }] })),
    )
    .await;
    let rm = &created["registered_model"];
    assert_eq!(rm["name"], "churn");
    assert_eq!(rm["description"], "d");
    assert_eq!(rm["tags"], json!([{ "key": "team", "value": "fraud" }]));
    assert!(rm["creation_timestamp"].is_i64());
    assert!(rm["last_updated_timestamp"].is_i64());
    assert!(
        rm.get("latest_versions").is_none(),
        "unset fields are omitted"
    );

    let mv = ok(
        &app,
        Method::POST,
        "model-versions/create",
        &admin,
        Some(json!({ "name": "churn", "source": "s3://b/1", "run_id": "r1" })),
    )
    .await;
    let mv = &mv["model_version"];
    assert_eq!(mv["version"], json!("1"), "version is a JSON string");
    assert_eq!(mv["status"], "READY");
    assert_eq!(mv["current_stage"], "None");
    assert_eq!(mv["run_id"], "r1");
    assert!(mv["creation_timestamp"].as_i64().unwrap_or(0) > 1_600_000_000_000);

    // The MLflow UI's prefix serves the same API.
    let via_ajax = app
        .get(
            "/ajax-api/2.0/mlflow/model-versions/get?name=churn&version=1",
            &admin,
        )
        .await;
    assert_eq!(via_ajax.status, 200);
    assert_eq!(via_ajax.body["model_version"]["source"], "s3://b/1");

    let got = ok(
        &app,
        Method::GET,
        "registered-models/get?name=churn",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        got["registered_model"]["latest_versions"][0]["version"],
        "1"
    );

    let dup = call(
        &app,
        Method::POST,
        "registered-models/create",
        &admin,
        Some(json!({ "name": "churn" })),
    )
    .await;
    assert_eq!((dup.status, dup.code()), (400, "RESOURCE_ALREADY_EXISTS"));
    let missing = call(
        &app,
        Method::GET,
        "registered-models/get?name=nope",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "RESOURCE_DOES_NOT_EXIST")
    );
    let missing_v = call(
        &app,
        Method::GET,
        "model-versions/get?name=churn&version=9",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (missing_v.status, missing_v.code()),
        (404, "RESOURCE_DOES_NOT_EXIST")
    );
    let bad_v = call(
        &app,
        Method::GET,
        "model-versions/get?name=churn&version=abc",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (bad_v.status, bad_v.code()),
        (400, "INVALID_PARAMETER_VALUE")
    );
    let no_name = call(
        &app,
        Method::POST,
        "registered-models/create",
        &admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (no_name.status, no_name.code()),
        (400, "INVALID_PARAMETER_VALUE")
    );
    assert!(
        no_name.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("'name'")
    );
    let bad_stage = call(
        &app,
        Method::POST,
        "model-versions/transition-stage",
        &admin,
        Some(json!({ "name": "churn", "version": "1", "stage": "Archived", "archive_existing_versions": true })),
    )
    .await;
    assert_eq!(
        (bad_stage.status, bad_stage.code()),
        (400, "INVALID_PARAMETER_VALUE")
    );

    let unknown = call(&app, Method::GET, "no/such/endpoint", &admin, None).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "ENDPOINT_NOT_FOUND")
    );
    let tracking = call(&app, Method::POST, "runs/search", &admin, Some(json!({}))).await;
    assert_eq!(
        (tracking.status, tracking.code()),
        (404, "ENDPOINT_NOT_FOUND")
    );
    assert!(
        tracking.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("runs")
    );
    let wrong = call(&app, Method::GET, "registered-models/create", &admin, None).await;
    assert_eq!(wrong.code(), "ENDPOINT_NOT_FOUND");
    let info = app.get("/api/3.0/mlflow/server-info", &admin).await;
    assert_eq!(info.status, 404);
    assert_eq!(info.code(), "ENDPOINT_NOT_FOUND");

    let anonymous = app
        .request(
            Method::GET,
            &format!("{API}/registered-models/get?name=churn"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "UNAUTHENTICATED")
    );
    let reader = app.token("rita", &["ml-readers"]);
    assert_eq!(
        call(
            &app,
            Method::GET,
            "registered-models/get?name=churn",
            &reader,
            None
        )
        .await
        .status,
        200
    );
    let denied = call(
        &app,
        Method::POST,
        "registered-models/create",
        &reader,
        Some(json!({ "name": "x" })),
    )
    .await;
    assert_eq!((denied.status, denied.code()), (403, "PERMISSION_DENIED"));
    let promote = json!({ "name": "churn", "version": "1", "stage": "Production" });
    let gated = call(
        &app,
        Method::POST,
        "model-versions/transition-stage",
        &app.release_manager(),
        Some(promote),
    )
    .await;
    assert_eq!((gated.status, gated.code()), (403, "PERMISSION_DENIED"));
    assert!(
        gated.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("verified artifact")
    );
});

both_backends!(
    search_filters_pagination_and_stages,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        create_versions(&app, &admin, "fraud", 5).await;
        create_versions(&app, &admin, "Fraud-2", 1).await;
        create_versions(&app, &admin, "other", 1).await;
        ok(
            &app,
            Method::POST,
            "registered-models/set-tag",
            &admin,
            Some(json!({ "name": "other", "key": "team", "value": "x" })),
        )
        .await;
        let prompt = json!({ "name": "a-prompt", "tags": [{ "key": "mlflow.prompt.is_prompt", "value": "true" }] });
        ok(
            &app,
            Method::POST,
            "registered-models/create",
            &admin,
            Some(prompt),
        )
        .await;

        let names = |b: &Value| -> Vec<String> {
            b["registered_models"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| m["name"].as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        // What the client sends: its prompt clause, URL-encoded, on a GET.
        let q = "registered-models/search?filter=name+LIKE+%27%25fraud%25%27+AND+tag.%60mlflow.prompt.is_prompt%60+%21%3D+%27true%27&max_results=100";
        assert_eq!(
            names(&ok(&app, Method::GET, q, &admin, None).await),
            ["fraud"]
        );
        let posted = ok(
            &app,
            Method::POST,
            "registered-models/search",
            &admin,
            Some(json!({ "filter": "name ILIKE '%raud%'" })),
        )
        .await;
        assert_eq!(names(&posted), ["Fraud-2", "fraud"]);
        let all = ok(&app, Method::GET, "registered-models/search", &admin, None).await;
        assert_eq!(
            names(&all),
            ["Fraud-2", "fraud", "other"],
            "prompts are left out"
        );
        let tagged = ok(
            &app,
            Method::POST,
            "registered-models/search",
            &admin,
            Some(json!({ "filter": "tags.team != 'x'" })),
        )
        .await;
        assert_eq!(
            names(&tagged),
            ["Fraud-2", "fraud"],
            "!= matches models without the tag"
        );
        let desc = ok(
            &app,
            Method::GET,
            "registered-models/search?order_by=name+DESC&max_results=2",
            &admin,
            None,
        )
        .await;
        assert_eq!(names(&desc), ["other", "fraud"]);
        let token = desc["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!token.is_empty());
        let page2 = ok(
            &app,
            Method::POST,
            "registered-models/search",
            &admin,
            Some(json!({ "order_by": ["name DESC"], "max_results": 2, "page_token": token })),
        )
        .await;
        assert_eq!(names(&page2), ["Fraud-2"]);
        assert!(page2.get("next_page_token").is_none());

        for bad in [
            "registered-models/search?max_results=1001",
            "registered-models/search?max_results=abc",
            "registered-models/search?page_token=garbage",
            "registered-models/search?filter=name+%3D+%27a%27+OR+name+%3D+%27b%27",
            "registered-models/search?order_by=version_number",
            "model-versions/search?filter=current_stage%3D%27Prod%27",
        ] {
            let r = call(&app, Method::GET, bad, &admin, None).await;
            assert_eq!(
                (r.status, r.code()),
                (400, "INVALID_PARAMETER_VALUE"),
                "{bad}: {:?}",
                r.body
            );
        }

        // Versions: run_id IN, source_path, version_number, tags, order_by, pages.
        let f = json!({ "filter": "name='fraud' AND run_id IN ('run1','run3')", "order_by": ["version_number ASC"] });
        assert_eq!(
            versions(&ok(&app, Method::POST, "model-versions/search", &admin, Some(f)).await),
            ["1", "3"]
        );
        let q = "model-versions/search?filter=source_path%3D%27s3%3A%2F%2Fb%2Ffraud%2F2%27";
        assert_eq!(
            versions(&ok(&app, Method::GET, q, &admin, None).await),
            ["2"]
        );
        let q = "model-versions/search?filter=name%3D%27fraud%27+AND+version_number%3D4";
        assert_eq!(
            versions(&ok(&app, Method::GET, q, &admin, None).await),
            ["4"]
        );
        let q = "model-versions/search?filter=name%3D%27fraud%27&order_by=version_number+DESC&max_results=2";
        let first = ok(&app, Method::GET, q, &admin, None).await;
        assert_eq!(versions(&first), ["5", "4"]);
        let token = first["next_page_token"].as_str().unwrap_or_default();
        let q2 = format!("{q}&page_token={}", crate::helpers::enc(token));
        assert_eq!(
            versions(&ok(&app, Method::GET, &q2, &admin, None).await),
            ["3", "2"]
        );

        // current_stage, with transitions that archive the previous holder.
        let stage = |v: &str, s: &str, archive: bool| json!({ "name": "fraud", "version": v, "stage": s, "archive_existing_versions": archive });
        ok(
            &app,
            Method::POST,
            "model-versions/transition-stage",
            &admin,
            Some(stage("2", "Staging", false)),
        )
        .await;
        let moved = ok(
            &app,
            Method::POST,
            "model-versions/transition-stage",
            &admin,
            Some(stage("3", "staging", true)),
        )
        .await;
        assert_eq!(moved["model_version"]["current_stage"], "Staging");
        let gate = json!({ "name": "fraud", "filter": "current_stage='Staging'" });
        assert_eq!(
            versions(
                &ok(
                    &app,
                    Method::POST,
                    "model-versions/search",
                    &admin,
                    Some(gate)
                )
                .await
            ),
            ["3"]
        );
        let q = "model-versions/search?filter=name%3D%27fraud%27+AND+current_stage+IN+%28%27Archived%27%2C%27Staging%27%29&order_by=version_number";
        assert_eq!(
            versions(&ok(&app, Method::GET, q, &admin, None).await),
            ["2", "3"]
        );

        let latest = ok(
            &app,
            Method::POST,
            "registered-models/get-latest-versions",
            &admin,
            Some(json!({ "name": "fraud", "stages": ["Staging"] })),
        )
        .await;
        assert_eq!(versions(&latest), ["3"]);
        let all_latest = ok(
            &app,
            Method::GET,
            "registered-models/get-latest-versions?name=fraud",
            &admin,
            None,
        )
        .await;
        assert_eq!(versions(&all_latest), ["2", "3", "5"]);
        let two = ok(
            &app,
            Method::GET,
            "registered-models/get-latest-versions?name=fraud&stages=Staging&stages=Archived",
            &admin,
            None,
        )
        .await;
        assert_eq!(versions(&two), ["2", "3"]);
    }
);

both_backends!(
    deletes_take_a_json_body_and_aliases_work,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        create_versions(&app, &admin, "m", 3).await;
        let del = |path: &'static str, body: Value| {
            let app = &app;
            let admin = admin.clone();
            async move { call(app, Method::DELETE, path, &admin, Some(body)).await }
        };

        ok(
            &app,
            Method::POST,
            "registered-models/alias",
            &admin,
            Some(json!({ "name": "m", "alias": "champion", "version": "2" })),
        )
        .await;
        let by_alias = ok(
            &app,
            Method::GET,
            "registered-models/alias?name=m&alias=champion",
            &admin,
            None,
        )
        .await;
        assert_eq!(by_alias["model_version"]["version"], "2");
        assert_eq!(by_alias["model_version"]["aliases"], json!(["champion"]));
        let rm = ok(
            &app,
            Method::GET,
            "registered-models/get?name=m",
            &admin,
            None,
        )
        .await;
        assert_eq!(
            rm["registered_model"]["aliases"],
            json!([{ "alias": "champion", "version": "2" }])
        );
        let latest = ok(
            &app,
            Method::GET,
            "registered-models/alias?name=m&alias=latest",
            &admin,
            None,
        )
        .await;
        assert_eq!(latest["model_version"]["version"], "3");
        let reserved = call(
            &app,
            Method::POST,
            "registered-models/alias",
            &admin,
            Some(json!({ "name": "m", "alias": "v2", "version": "2" })),
        )
        .await;
        assert_eq!(
            (reserved.status, reserved.code()),
            (400, "INVALID_PARAMETER_VALUE")
        );
        let no_version = call(
            &app,
            Method::POST,
            "registered-models/alias",
            &admin,
            Some(json!({ "name": "m", "alias": "x", "version": "9" })),
        )
        .await;
        assert_eq!(
            (no_version.status, no_version.code()),
            (404, "RESOURCE_DOES_NOT_EXIST")
        );

        let r = del(
            "registered-models/alias",
            json!({ "name": "m", "alias": "champion" }),
        )
        .await;
        assert_eq!((r.status, r.body.clone()), (200, json!({})));
        let gone = call(
            &app,
            Method::GET,
            "registered-models/alias?name=m&alias=champion",
            &admin,
            None,
        )
        .await;
        assert_eq!((gone.status, gone.code()), (400, "INVALID_PARAMETER_VALUE"));
        assert_eq!(
            del(
                "registered-models/alias",
                json!({ "name": "m", "alias": "champion" })
            )
            .await
            .status,
            200,
            "deleting a missing alias is a no-op"
        );

        ok(
            &app,
            Method::POST,
            "registered-models/set-tag",
            &admin,
            Some(json!({ "name": "m", "key": "k", "value": "v" })),
        )
        .await;
        ok(
            &app,
            Method::POST,
            "model-versions/set-tag",
            &admin,
            Some(json!({ "name": "m", "version": "1", "key": "k", "value": "v" })),
        )
        .await;
        assert_eq!(
            del(
                "registered-models/delete-tag",
                json!({ "name": "m", "key": "k" })
            )
            .await
            .status,
            200
        );
        assert_eq!(
            del(
                "model-versions/delete-tag",
                json!({ "name": "m", "version": "1", "key": "k" })
            )
            .await
            .status,
            200
        );
        assert_eq!(
            del(
                "model-versions/delete-tag",
                json!({ "name": "m", "version": "1", "key": "k" })
            )
            .await
            .status,
            200
        );
        let v1 = ok(
            &app,
            Method::GET,
            "model-versions/get?name=m&version=1",
            &admin,
            None,
        )
        .await;
        assert!(v1["model_version"].get("tags").is_none());
        let reader = app.token("rita", &["ml-readers"]);
        let denied = call(
            &app,
            Method::DELETE,
            "registered-models/delete-tag",
            &reader,
            Some(json!({ "name": "m", "key": "absent" })),
        )
        .await;
        assert_eq!(
            (denied.status, denied.code()),
            (403, "PERMISSION_DENIED"),
            "a no-op still needs permission"
        );

        assert_eq!(
            del(
                "model-versions/delete",
                json!({ "name": "m", "version": "1" })
            )
            .await
            .status,
            200
        );
        let v = call(
            &app,
            Method::GET,
            "model-versions/get?name=m&version=1",
            &admin,
            None,
        )
        .await;
        assert_eq!(v.status, 404);
        let missing = del(
            "model-versions/delete",
            json!({ "name": "m", "version": "1" }),
        )
        .await;
        assert_eq!(
            (missing.status, missing.code()),
            (404, "RESOURCE_DOES_NOT_EXIST")
        );

        let renamed = ok(
            &app,
            Method::POST,
            "registered-models/rename",
            &admin,
            Some(json!({ "name": "m", "new_name": "m2" })),
        )
        .await;
        assert_eq!(renamed["registered_model"]["name"], "m2");
        let updated = ok(
            &app,
            Method::PATCH,
            "model-versions/update",
            &admin,
            Some(json!({ "name": "m2", "version": "2", "description": "d" })),
        )
        .await;
        assert_eq!(updated["model_version"]["description"], "d");
        let updated = ok(
            &app,
            Method::PATCH,
            "registered-models/update",
            &admin,
            Some(json!({ "name": "m2", "description": "rm" })),
        )
        .await;
        assert_eq!(updated["registered_model"]["description"], "rm");
        assert_eq!(
            del("registered-models/delete", json!({ "name": "m2" }))
                .await
                .status,
            200
        );
        let r = call(
            &app,
            Method::GET,
            "registered-models/get?name=m2",
            &admin,
            None,
        )
        .await;
        assert_eq!((r.status, r.code()), (404, "RESOURCE_DOES_NOT_EXIST"));
    }
);
