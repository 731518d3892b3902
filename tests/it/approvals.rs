//! The approval workflow (issue #17) over HTTP with the shipped policies, on both backends:
//! CI asks, a release manager answers, and the approval that completes a request executes the
//! transition in the same append. Each refusal (reader, self-approval, a second open request,
//! approving a void or expired request), the two-approver rule for risk=high models, 32
//! racing approvals, the binding to the artifact's verification, and expiry by the server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, spawn_app, spawn_app_with};

/// (request id, to stage, outcome, decided by, requested by) from the reporting view.
async fn view_rows(app: &TestApp) -> Vec<(String, String, String, Option<String>, String)> {
    use sqlx::Connection;
    let sql = |view: &str| {
        format!(
            "SELECT request_id, to_stage, outcome, decided_by, requested_by FROM {view} ORDER BY position"
        )
    };
    match app.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .expect("connect");
            sqlx::query_as(sqlx::AssertSqlSafe(sql("reporting.transition_requests")))
                .fetch_all(&mut conn)
                .await
                .expect("query the view")
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .expect("connect");
            sqlx::query_as(sqlx::AssertSqlSafe(sql("reporting_transition_requests")))
                .fetch_all(&mut conn)
                .await
                .expect("query the view")
        }
    }
}

fn ci(app: &TestApp) -> String {
    app.token("ci-bot", &["ml-ci"])
}

async fn model_with_tags(app: &TestApp, name: &str, tags: Value) {
    let r = app
        .post(
            "/api/v1/models",
            &app.admin(),
            json!({"name": name, "tags": tags}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// A version uploaded and verified by CI.
async fn verified_version(app: &TestApp, model: &str) -> u64 {
    let token = ci(app);
    let version = app
        .upload_version_with_metrics(&token, model, json!({"f1": 0.9}))
        .await;
    let verified = app
        .post(
            &format!("/api/v1/models/{model}/versions/{version}/verify"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    version
}

async fn open_request(app: &TestApp, token: &str, model: &str, version: u64, stage: &str) -> Reply {
    app.post(
        &format!("/api/v1/models/{model}/versions/{version}/requests"),
        token,
        json!({"stage": stage, "comment": "please"}),
    )
    .await
}

async fn act(app: &TestApp, token: &str, model: &str, version: u64, id: &str, verb: &str) -> Reply {
    app.post(
        &format!("/api/v1/models/{model}/versions/{version}/requests/{id}/{verb}"),
        token,
        json!({"comment": format!("{verb} it")}),
    )
    .await
}

async fn stage_of(app: &TestApp, model: &str, version: u64) -> String {
    let r = app
        .get(
            &format!("/api/v1/models/{model}/versions/{version}"),
            &app.admin(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["stage"].as_str().unwrap_or_default().to_string()
}

async fn history(app: &TestApp, model: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/models/{model}/history?limit=1000"),
            &app.admin(),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["events"].as_array().cloned().unwrap_or_default()
}

fn id_of(reply: &Reply) -> String {
    reply.body["id"].as_str().expect("request id").to_string()
}

both_backends!(
    a_request_approved_by_a_release_manager_executes_the_transition,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("fraud").await;
        let v = verified_version(&app, "fraud").await;
        let ci = ci(&app);
        let rm = app.release_manager();
        let reader = app.token("alice", &["ml-readers"]);

        let opened = open_request(&app, &ci, "fraud", v, "Production").await;
        assert_eq!(opened.status, 201, "{:?}", opened.body);
        assert_eq!(opened.body["status"], "pending");
        assert_eq!(opened.body["available_actions"], json!(["cancel"]));
        let id = id_of(&opened);

        // Refusals: a second open request, a reader asking or approving, self-approval.
        let again = open_request(&app, &ci, "fraud", v, "Production").await;
        assert_eq!((again.status, again.code()), (409, "REQUEST_ALREADY_OPEN"));
        let by_reader = open_request(&app, &reader, "fraud", v, "Staging").await;
        assert_eq!(by_reader.status, 403, "{:?}", by_reader.body);
        let reader_approves = act(&app, &reader, "fraud", v, &id, "approve").await;
        assert_eq!(reader_approves.status, 403, "{:?}", reader_approves.body);
        let own = act(&app, &ci, "fraud", v, &id, "approve").await;
        assert_eq!(own.status, 403, "{:?}", own.body);
        assert_eq!(stage_of(&app, "fraud", v).await, "None");

        // What the release manager sees: the request in the inbox, approvable.
        let inbox = app.get("/api/v1/requests?status=pending", &rm).await;
        assert_eq!(inbox.status, 200, "{:?}", inbox.body);
        let listed = &inbox.body["requests"][0];
        assert_eq!(listed["id"], id.as_str());
        assert_eq!(listed["available_actions"], json!(["approve", "reject"]));

        let approved = act(&app, &rm, "fraud", v, &id, "approve").await;
        assert_eq!(approved.status, 200, "{:?}", approved.body);
        assert_eq!(approved.body["status"], "approved");
        assert_eq!(approved.body["available_actions"], json!([]));
        assert_eq!(stage_of(&app, "fraud", v).await, "Production");

        // Approval and transition are one append, and the transition names its request.
        let events = history(&app, "fraud").await;
        let approval = events
            .iter()
            .find(|e| e["event_type"] == "RequestApproved")
            .expect("approval event");
        let transition = events
            .iter()
            .find(|e| e["event_type"] == "StageTransitioned")
            .expect("transition event");
        assert_eq!(transition["payload"]["request_id"], id.as_str());
        assert_eq!(
            approval["position"].as_i64().map(|p| p + 1),
            transition["position"].as_i64()
        );
        assert!(
            approval["payload"]["policy_set_digest"]
                .as_str()
                .is_some_and(|d| d.len() == 64),
            "{approval}"
        );
        assert!(
            approval["decision"]["transition"]["allowed"] == true,
            "{approval}"
        );

        // Reports tell reviewed promotions from direct ones and time the decision.
        let report = app.get("/api/v1/audit/reports/requests", &rm).await;
        assert_eq!(report.status, 200, "{:?}", report.body);
        let row = &report.body["rows"][0];
        assert_eq!(row["request_id"], id.as_str());
        assert_eq!(row["status"], "approved");
        assert_eq!(row["decided_by"], "rm");
        assert!(row["decision_seconds"].as_i64().is_some(), "{row}");
        let promotions = app.get("/api/v1/audit/reports/promotions", &rm).await;
        assert_eq!(promotions.status, 200, "{:?}", promotions.body);
        assert_eq!(
            promotions.body["rows"][0]["transition_request"],
            id.as_str()
        );
        // The same in the SQL view for BI tools, and in the audit CLI.
        let view = view_rows(&app).await;
        assert_eq!(
            view,
            vec![(
                id.clone(),
                "Production".to_string(),
                "approved".to_string(),
                Some("rm".to_string()),
                "ci-bot".to_string()
            )]
        );
        let cli = std::process::Command::new(env!("CARGO_BIN_EXE_model-ledger"))
            .args([
                "audit",
                "report",
                "requests",
                "--format",
                "json",
                "--database-url",
                &app.database_url,
            ])
            .output()
            .expect("audit report requests");
        assert!(
            cli.status.success(),
            "{}",
            String::from_utf8_lossy(&cli.stderr)
        );
        let rows: Value = serde_json::from_slice(&cli.stdout).expect("json rows");
        assert_eq!(rows[0]["request_id"], id.as_str(), "{rows}");
        assert_eq!(rows[0]["status"], "approved", "{rows}");

        let late = act(&app, &rm, "fraud", v, &id, "approve").await;
        assert_eq!((late.status, late.code()), (409, "REQUEST_ALREADY_DECIDED"));
        let empty = app.get("/api/v1/requests", &rm).await;
        assert_eq!(empty.body["requests"], json!([]));
    }
);

both_backends!(
    requests_are_rejected_or_cancelled_and_versions_carry_comments,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("churn").await;
        let v = verified_version(&app, "churn").await;
        let ci = ci(&app);
        let rm = app.release_manager();

        let first = open_request(&app, &ci, "churn", v, "Staging").await;
        assert_eq!(first.status, 201, "{:?}", first.body);
        let rejected = act(&app, &rm, "churn", v, &id_of(&first), "reject").await;
        assert_eq!(rejected.status, 200, "{:?}", rejected.body);
        assert_eq!(rejected.body["status"], "rejected");
        assert_eq!(rejected.body["closing_comment"], "reject it");

        let second = open_request(&app, &ci, "churn", v, "Staging").await;
        assert_eq!(second.status, 201, "{:?}", second.body);
        let id = id_of(&second);
        let not_theirs = act(&app, &rm, "churn", v, &id, "cancel").await;
        assert_eq!(not_theirs.status, 403, "{:?}", not_theirs.body);
        let cancelled = act(&app, &ci, "churn", v, &id, "cancel").await;
        assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
        assert_eq!(cancelled.body["status"], "cancelled");
        assert_eq!(stage_of(&app, "churn", v).await, "None");

        let listed = app
            .get(&format!("/api/v1/models/churn/versions/{v}/requests"), &rm)
            .await;
        assert_eq!(listed.body["requests"].as_array().map(Vec::len), Some(2));
        let unknown = act(&app, &rm, "churn", v, "no-such-request", "approve").await;
        assert_eq!(unknown.status, 404, "{:?}", unknown.body);

        let comments = format!("/api/v1/models/churn/versions/{v}/comments");
        let added = app
            .post(&comments, &ci, json!({"comment": "f1 up 2%"}))
            .await;
        assert_eq!(added.status, 201, "{:?}", added.body);
        assert_eq!(added.body["available_actions"], json!(["edit", "delete"]));
        let cid = added.body["id"].as_str().expect("comment id").to_string();
        let empty = app.post(&comments, &ci, json!({"comment": "  "})).await;
        assert_eq!(empty.status, 400, "{:?}", empty.body);
        let reader = app.token("alice", &["ml-readers"]);
        let by_reader = app.post(&comments, &reader, json!({"comment": "hi"})).await;
        assert_eq!(by_reader.status, 403, "{:?}", by_reader.body);
        let foreign = app
            .patch(
                &format!("{comments}/{cid}"),
                &rm,
                json!({"comment": "mine"}),
            )
            .await;
        assert_eq!(
            (foreign.status, foreign.code()),
            (403, "NOT_COMMENT_AUTHOR")
        );
        let edited = app
            .patch(
                &format!("{comments}/{cid}"),
                &ci,
                json!({"comment": "f1 up 3%"}),
            )
            .await;
        assert_eq!(edited.status, 200, "{:?}", edited.body);
        let seen = app.get(&comments, &reader).await;
        assert_eq!(seen.body["comments"][0]["comment"], "f1 up 3%");
        assert_eq!(seen.body["comments"][0]["available_actions"], json!([]));
        let deleted = app.delete(&format!("{comments}/{cid}"), &ci).await;
        assert_eq!(deleted.status, 200, "{:?}", deleted.body);
        let gone = app.get(&comments, &reader).await;
        assert_eq!(gone.body["comments"], json!([]));
    }
);

both_backends!(
    a_high_risk_model_needs_two_distinct_approvers_for_production,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        model_with_tags(&app, "credit", json!({"risk": "high"})).await;
        let v = verified_version(&app, "credit").await;
        let ci = ci(&app);
        let rita = app.token("rita", &["ml-release-managers"]);
        let rob = app.token("rob", &["ml-release-managers"]);

        let opened = open_request(&app, &ci, "credit", v, "Production").await;
        assert_eq!(opened.status, 201, "{:?}", opened.body);
        let id = id_of(&opened);
        let first = act(&app, &rita, "credit", v, &id, "approve").await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        assert_eq!(first.body["status"], "pending");
        assert_eq!(first.body["approvals"].as_array().map(Vec::len), Some(1));
        assert_eq!(stage_of(&app, "credit", v).await, "None");
        let twice = act(&app, &rita, "credit", v, &id, "approve").await;
        assert_eq!((twice.status, twice.code()), (409, "ALREADY_APPROVED"));

        let second = act(&app, &rob, "credit", v, &id, "approve").await;
        assert_eq!(second.status, 200, "{:?}", second.body);
        assert_eq!(second.body["status"], "approved");
        assert_eq!(stage_of(&app, "credit", v).await, "Production");
    }
);

both_backends!(
    thirty_two_racing_approvals_execute_one_transition,
    |backend: Backend| async move {
        let app = std::sync::Arc::new(spawn_app(backend).await);
        app.create_model("race").await;
        let v = verified_version(&app, "race").await;
        let opened = open_request(&app, &ci(&app), "race", v, "Staging").await;
        assert_eq!(opened.status, 201, "{:?}", opened.body);
        let id = id_of(&opened);
        let mut tasks = Vec::new();
        for i in 0..32 {
            let (app, id) = (app.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let token = app.token(&format!("rm-{i}"), &["ml-release-managers"]);
                act(&app, &token, "race", v, &id, "approve").await.status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.expect("task"));
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            31,
            "{statuses:?}"
        );
        let transitions = history(&app, "race")
            .await
            .into_iter()
            .filter(|e| e["event_type"] == "StageTransitioned")
            .count();
        assert_eq!(transitions, 1);
    }
);

both_backends!(
    a_verification_change_voids_the_request_it_was_bound_to,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("bound").await;
        let ci = ci(&app);
        let v = app
            .upload_version_with_metrics(&ci, "bound", json!({"f1": 0.9}))
            .await;
        let opened = open_request(&app, &ci, "bound", v, "Staging").await;
        assert_eq!(opened.status, 201, "{:?}", opened.body);
        assert_eq!(opened.body["verification"], "not_verified");
        let id = id_of(&opened);
        // Verifying changes what the reviewers would be approving: the request is void.
        let verified = app
            .post(
                &format!("/api/v1/models/bound/versions/{v}/verify"),
                &ci,
                json!({}),
            )
            .await;
        assert_eq!(verified.status, 200, "{:?}", verified.body);
        let events = history(&app, "bound").await;
        assert!(
            events.iter().any(|e| e["event_type"] == "RequestVoided"),
            "{events:?}"
        );
        let approve = act(&app, &app.release_manager(), "bound", v, &id, "approve").await;
        assert_eq!(
            (approve.status, approve.code()),
            (409, "REQUEST_ALREADY_DECIDED")
        );
        assert!(
            approve.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("voided")
        );
        assert_eq!(stage_of(&app, "bound", v).await, "None");
        // A new request binds to the verified artifact.
        let fresh = open_request(&app, &ci, "bound", v, "Staging").await;
        assert_eq!(fresh.status, 201, "{:?}", fresh.body);
        assert!(
            fresh.body["verification"]
                .as_str()
                .unwrap_or_default()
                .starts_with("verified:")
        );
    }
);

both_backends!(
    open_requests_expire_and_the_server_records_it,
    |backend: Backend| async move {
        let app = spawn_app_with(
            backend,
            &["--request-lifetime", "1s", "--request-sweep-interval", "1s"],
        )
        .await;
        app.create_model("stale").await;
        let v = verified_version(&app, "stale").await;
        let opened = open_request(&app, &ci(&app), "stale", v, "Staging").await;
        assert_eq!(opened.status, 201, "{:?}", opened.body);
        let id = id_of(&opened);
        let rm = app.release_manager();
        let mut status = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = app
                .get(
                    &format!("/api/v1/models/stale/versions/{v}/requests/{id}"),
                    &rm,
                )
                .await;
            status = r.body["status"].as_str().unwrap_or_default().to_string();
            if status == "expired" {
                break;
            }
        }
        assert_eq!(status, "expired");
        let events = history(&app, "stale").await;
        let expired = events
            .iter()
            .find(|e| e["event_type"] == "RequestExpired")
            .expect("expiry event");
        assert_eq!(expired["actor"]["issuer"], "model-ledger:system");
        let approve = act(&app, &rm, "stale", v, &id, "approve").await;
        assert_eq!(approve.status, 409, "{:?}", approve.body);
    }
);

both_backends!(
    the_databricks_transition_request_api_speaks_activities,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("dbx").await;
        let v = verified_version(&app, "dbx").await.to_string();
        let mlflow = |path: &str| format!("/api/2.0/mlflow/{path}");
        let created = app
            .post(
                &mlflow("transition-requests/create"),
                &ci(&app),
                json!({"name": "dbx", "version": v, "stage": "Staging", "comment": "ready"}),
            )
            .await;
        assert_eq!(created.status, 200, "{:?}", created.body);
        assert_eq!(created.body["request"]["to_stage"], "Staging");
        let rm = app.release_manager();
        let listed = app
            .get(
                &mlflow(&format!("transition-requests/list?name=dbx&version={v}")),
                &rm,
            )
            .await;
        let activity = &listed.body["requests"][0];
        assert_eq!(activity["activity_type"], "REQUESTED_TRANSITION");
        assert_eq!(activity["user_id"], "ci-bot");
        assert_eq!(
            activity["available_actions"],
            json!(["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST"])
        );
        let approved = app
            .post(
                &mlflow("transition-requests/approve"),
                &rm,
                json!({"name": "dbx", "version": v, "stage": "Staging",
                       "archive_existing_versions": false}),
            )
            .await;
        assert_eq!(approved.status, 200, "{:?}", approved.body);
        assert_eq!(
            approved.body["activity"]["activity_type"],
            "APPROVED_REQUEST"
        );
        let version: u64 = v.parse().expect("number");
        assert_eq!(stage_of(&app, "dbx", version).await, "Staging");
        let none_open = app
            .post(
                &mlflow("transition-requests/approve"),
                &rm,
                json!({"name": "dbx", "version": v, "stage": "Staging",
                       "archive_existing_versions": false}),
            )
            .await;
        assert_eq!(none_open.status, 404, "{:?}", none_open.body);
    }
);

both_backends!(
    the_cli_requests_lists_and_decides,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        app.create_model("cli").await;
        let v = verified_version(&app, "cli").await;
        let uri = format!("models:/cli/{v}");
        let text = |out: &std::process::Output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let asked = app
            .cli(&ci(&app), &["request", &uri, "--stage", "Staging"])
            .await;
        assert!(asked.status.success(), "{}", text(&asked));
        let id = String::from_utf8_lossy(&asked.stdout).trim().to_string();
        assert!(!id.is_empty());
        let rm = app.release_manager();
        let inbox = app.cli(&rm, &["requests"]).await;
        assert!(inbox.status.success(), "{}", text(&inbox));
        assert!(text(&inbox).contains(&id), "{}", text(&inbox));
        assert!(text(&inbox).contains("approve, reject"), "{}", text(&inbox));
        let ci_inbox = app.cli(&ci(&app), &["requests"]).await;
        assert!(!text(&ci_inbox).contains("approve"), "{}", text(&ci_inbox));
        let rejected = app
            .cli(
                &rm,
                &["reject", &uri, "--stage", "Staging", "--comment", "no"],
            )
            .await;
        assert!(rejected.status.success(), "{}", text(&rejected));
        assert!(text(&rejected).contains("rejected"), "{}", text(&rejected));
        let nothing = app.cli(&rm, &["approve", &uri, "--stage", "Staging"]).await;
        assert!(!nothing.status.success(), "{}", text(&nothing));
        assert_eq!(stage_of(&app, "cli", v).await, "None");
    }
);
