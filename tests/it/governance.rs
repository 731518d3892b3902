//! Governance holes found by an attack run (issue "Governance without holes"), each closed and
//! proven here over HTTP with the shipped policies: quality gates changed only by release
//! managers and admins, renames that would change what `models:/NAME/...` serves kept to them
//! too, event streams that end with their token, and refusals that cannot become a write flood.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, spawn_app};

const MLFLOW: &str = "/api/2.0/mlflow";

async fn mlflow(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Reply {
    app.request(method, &format!("{MLFLOW}/{path}"), Some(token), Some(body))
        .await
}

/// Uploads one small file as a new version of `model` with `metrics` and verifies it, as `token`.
async fn verified_version(app: &TestApp, token: &str, model: &str, metrics: Value) -> u64 {
    let version = app.upload_version_with_metrics(token, model, metrics).await;
    let verified = app
        .post(
            &format!("/api/v1/models/{model}/versions/{version}/verify"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    version
}

async fn promote(app: &TestApp, token: &str, model: &str, version: u64) -> Reply {
    app.post(
        &format!("/api/v1/models/{model}/versions/{version}/stage"),
        token,
        json!({"stage": "Production", "archive_existing_versions": true}),
    )
    .await
}

/// The model's newest event.
async fn last_event(app: &TestApp, model: &str) -> Value {
    let history = app
        .get(
            &format!("/api/v1/models/{model}/history?limit=1"),
            &app.admin(),
        )
        .await;
    assert_eq!(history.status, 200, "{:?}", history.body);
    history.body["events"][0].clone()
}

fn denied(reply: &Reply) -> bool {
    (reply.status, reply.code()) == (403, "PERMISSION_DENIED")
}

both_backends!(
    quality_gates_are_changed_only_by_release_managers_and_admins,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        let rm = app.release_manager();
        let admin = app.admin();
        let created = app
            .post(
                "/api/v1/models",
                &ci,
                json!({"name": "fraud", "tags": {"gate.f1": "0.80"}}),
            )
            .await;
        assert_eq!(created.status, 201, "a new model's gates only add rules");

        // The people a gate holds back cannot lower or remove it, through either API.
        let events_before = app.event_count().await;
        let lower = app
            .put(
                "/api/v1/models/fraud/tags/gate.f1",
                &ci,
                json!({"value": "0.1"}),
            )
            .await;
        assert!(denied(&lower), "{:?}", lower.body);
        assert!(
            lower.body["policy_ids"].to_string().contains("gates-only"),
            "{:?}",
            lower.body
        );
        let remove = app.delete("/api/v1/models/fraud/tags/gate.f1", &ci).await;
        assert!(denied(&remove), "{:?}", remove.body);
        let lower = mlflow(
            &app,
            Method::POST,
            "registered-models/set-tag",
            &ci,
            json!({"name": "fraud", "key": "gate.f1", "value": "0"}),
        )
        .await;
        assert!(denied(&lower), "{:?}", lower.body);
        let remove = mlflow(
            &app,
            Method::DELETE,
            "registered-models/delete-tag",
            &ci,
            json!({"name": "fraud", "key": "gate.f1"}),
        )
        .await;
        assert!(denied(&remove), "{:?}", remove.body);
        let add = app
            .put(
                "/api/v1/models/fraud/tags/gate.auc",
                &ci,
                json!({"value": "0"}),
            )
            .await;
        assert!(
            denied(&add),
            "a new gate is a rule change too: {:?}",
            add.body
        );
        assert_eq!(
            app.event_count().await,
            events_before,
            "refusals write no event"
        );

        // Ordinary tags stay CI's to set.
        let team = app
            .put(
                "/api/v1/models/fraud/tags/team",
                &ci,
                json!({"value": "risk"}),
            )
            .await;
        assert_eq!(team.status, 200, "{:?}", team.body);

        // A release manager raises the gate; the event holds the old and the new value.
        let raise = app
            .put(
                "/api/v1/models/fraud/tags/gate.f1",
                &rm,
                json!({"value": "0.85"}),
            )
            .await;
        assert_eq!(raise.status, 200, "{:?}", raise.body);
        let event = last_event(&app, "fraud").await;
        assert_eq!(event["event_type"], "ModelTagSet");
        assert_eq!(
            (&event["payload"]["previous"], &event["payload"]["value"]),
            (&json!("0.80"), &json!("0.85")),
            "{event}"
        );
        assert_eq!(
            event["decision"]["action"], "ChangeGate",
            "the decision names the governed action: {event}"
        );

        // The promotion's decision records the gate values it was checked against.
        let weak = verified_version(&app, &ci, "fraud", json!({"f1": 0.82})).await;
        let strong = verified_version(&app, &ci, "fraud", json!({"f1": 0.9})).await;
        let refused = promote(&app, &rm, "fraud", weak).await;
        assert!(denied(&refused), "0.82 < 0.85: {:?}", refused.body);
        let promoted = promote(&app, &rm, "fraud", strong).await;
        assert_eq!(promoted.status, 200, "{:?}", promoted.body);
        let transition = last_event(&app, "fraud").await;
        assert_eq!(
            transition["event_type"], "StageTransitioned",
            "{transition}"
        );
        assert_eq!(
            transition["decision"]["gates"],
            json!([{"metric": "f1", "threshold": "0.85", "value": 0.9}]),
            "{transition}"
        );

        // Admins may remove a gate; the event says what it was.
        let removed = app
            .delete("/api/v1/models/fraud/tags/gate.f1", &admin)
            .await;
        assert_eq!(removed.status, 200, "{:?}", removed.body);
        let event = last_event(&app, "fraud").await;
        assert_eq!(
            (event["event_type"].as_str(), &event["payload"]["previous"]),
            (Some("ModelTagDeleted"), &json!("0.85")),
            "{event}"
        );
    }
);

both_backends!(
    renames_that_change_what_a_name_serves_are_release_decisions,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let ci = app.token("ci-bot", &["ml-ci"]);
        let rm = app.release_manager();
        for (name, f1) in [("fraud", 0.95), ("weak", 0.2)] {
            let r = app.post("/api/v1/models", &ci, json!({"name": name})).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            let v = verified_version(&app, &ci, name, json!({"f1": f1})).await;
            let p = promote(&app, &rm, name, v).await;
            assert_eq!(p.status, 200, "{:?}", p.body);
        }
        let fraud_id = app.get("/api/v1/models/fraud", &rm).await.body["model_id"].clone();
        let weak_id = app.get("/api/v1/models/weak", &rm).await.body["model_id"].clone();
        assert!(fraud_id.is_string() && weak_id.is_string());

        // CI cannot move a serving model out from under its name, through either API.
        let away = app
            .patch("/api/v1/models/fraud", &ci, json!({"name": "fraud-old"}))
            .await;
        assert!(denied(&away), "{:?}", away.body);
        assert!(
            away.body["policy_ids"]
                .to_string()
                .contains("rename-serving"),
            "{:?}",
            away.body
        );
        let away = mlflow(
            &app,
            Method::POST,
            "registered-models/rename",
            &ci,
            json!({"name": "fraud", "new_name": "fraud-old"}),
        )
        .await;
        assert!(denied(&away), "{:?}", away.body);

        // A model that serves nothing may be renamed by CI, to a name nobody used.
        let r = app
            .post("/api/v1/models", &ci, json!({"name": "scratch"}))
            .await;
        assert_eq!(r.status, 201);
        let renamed = app
            .patch("/api/v1/models/scratch", &ci, json!({"name": "scratch-2"}))
            .await;
        assert_eq!(renamed.status, 200, "{:?}", renamed.body);
        let back = app
            .patch("/api/v1/models/scratch-2", &ci, json!({"name": "scratch"}))
            .await;
        assert_eq!(
            back.status, 200,
            "its own old name is not a takeover: {:?}",
            back.body
        );

        // The release manager moves fraud away; CI may not take the freed name over...
        let moved = app
            .patch("/api/v1/models/fraud", &rm, json!({"name": "fraud-old"}))
            .await;
        assert_eq!(moved.status, 200, "{:?}", moved.body);
        let takeover = app
            .patch("/api/v1/models/scratch", &ci, json!({"name": "fraud"}))
            .await;
        assert!(denied(&takeover), "{:?}", takeover.body);

        // ...and when a release manager does, the rename event and resolve say a different
        // model now answers under the name.
        let swapped = app
            .patch("/api/v1/models/weak", &rm, json!({"name": "fraud"}))
            .await;
        assert_eq!(swapped.status, 200, "{:?}", swapped.body);
        let event = last_event(&app, "fraud").await;
        assert_eq!(event["event_type"], "ModelRenamed", "{event}");
        assert_eq!(event["payload"]["replaces_model_id"], fraud_id, "{event}");
        assert_eq!(event["decision"]["action"], "RenameModel", "{event}");
        let resolved = app
            .get("/api/v1/resolve?uri=models:/fraud/Production", &rm)
            .await;
        assert_eq!(resolved.status, 200, "{:?}", resolved.body);
        assert_eq!(resolved.body["model_id"], weak_id, "{:?}", resolved.body);
    }
);

/// Reads SSE blocks until the stream ends or `limit` passes; returns (event type, data).
async fn read_until_end(
    response: reqwest::Response,
    limit: Duration,
) -> (Vec<(String, Value)>, bool) {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return (events, false),
            Ok(None) => return (events, true),
            Ok(Some(chunk)) => {
                buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut kind, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((kind, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
    }
}

#[tokio::test]
async fn event_stream_ends_when_its_token_expires() {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_model("before").await;
    let short_lived = model_ledger::auth::dev::mint_token(
        app.data_dir.path(),
        "auditor",
        &["ml-admins".to_string()],
        Duration::from_secs(3),
        model_ledger::auth::PrincipalKind::User,
    )
    .expect("mint");
    let response = app
        .client
        .get(format!("{}/api/v1/events/stream", app.url))
        .bearer_auth(&short_lived)
        .send()
        .await
        .expect("stream opens");
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(read_until_end(response, Duration::from_secs(20)));
    // Events after expiry must not reach the holder of the expired token.
    tokio::time::sleep(Duration::from_secs(5)).await;
    app.create_model("after").await;
    let (events, ended) = reader.await.expect("reader");
    assert!(
        ended,
        "the stream must end at the token's expiry: {events:?}"
    );
    let names: Vec<String> = events
        .iter()
        .filter_map(|(_, data)| data["model_name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, vec!["before"], "{events:?}");
    let (kind, data) = events.last().expect("a last event");
    assert_eq!(
        (kind.as_str(), data["error_code"].as_str()),
        ("token-expired", Some("TOKEN_EXPIRED"))
    );
}

both_backends!(
    repeated_denials_are_coalesced_not_written_one_by_one,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let nobody = app.token("mallory", &[]);
        let store = app.store();
        let query = model_ledger::store::DenialQuery {
            limit: 10_000,
            ..Default::default()
        };
        for _ in 0..200 {
            let r = app.get("/api/v1/models/secret", &nobody).await;
            assert!(denied(&r), "{:?}", r.body);
        }
        let rows = store.read_denials(&query).await.expect("denials");
        assert_eq!(
            rows.len(),
            1,
            "one row for 200 identical refusals: {rows:?}"
        );
        // The repeats reach the row within the flush interval.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let rows = store.read_denials(&query).await.expect("denials");
            if rows[0].repeats == 200 {
                assert!(
                    rows[0]
                        .last_at
                        .is_some_and(|last| last >= rows[0].occurred_at)
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "repeats never written: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // Varying the model name does not buy one row per request either.
        for i in 0..300 {
            let r = app.get(&format!("/api/v1/models/probe-{i}"), &nobody).await;
            assert!(denied(&r));
        }
        let rows = store.read_denials(&query).await.expect("denials");
        let limit = model_ledger::service::denials::KINDS_PER_PRINCIPAL + 1;
        assert!(rows.len() <= limit, "{} rows for 300 probes", rows.len());
        assert!(
            rows.iter()
                .any(|r| r.model_name == model_ledger::service::denials::LUMPED_MODEL),
            "the probes past the limit are lumped into one row: {rows:?}"
        );
        // Every refusal is still counted in the metrics (one process-wide registry, so at
        // least these 500).
        let metrics = app
            .client
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let refused: f64 = metrics
            .lines()
            .find(|l| l.starts_with("model_ledger_access_denials_total{action=\"ReadModel\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no denial counter in:\n{metrics}"));
        assert!(refused >= 500.0, "{refused}");

        // Other principals are still recorded on their own.
        let other = app.token("eve", &[]);
        assert!(denied(&app.get("/api/v1/models/secret", &other).await));
        let rows = store.read_denials(&query).await.expect("denials");
        assert!(rows.iter().any(|r| r.actor.subject == "eve"), "{rows:?}");
    }
);

/// Names whose characters mean something to URLs or object keys: each must push, verify and
/// pull (the upload location used to be encoded once on write and twice on read).
const AWKWARD_NAMES: [&str; 8] = [
    "team/churn",
    "100%",
    "a..b",
    "...",
    "sp ace",
    "x%2Fy",
    "q?x#y&z",
    "ünï/cödé",
];

both_backends!(
    every_valid_model_name_round_trips_push_verify_pull,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let admin = app.admin();
        let work = tempfile::tempdir().expect("tempdir");
        let src = work.path().join("model");
        std::fs::create_dir_all(src.join("data")).expect("mkdir");
        std::fs::write(src.join("MLmodel"), b"flavors: {}\n").expect("write");
        std::fs::write(src.join("data/model.pkl"), b"weights").expect("write");
        let server_path = app.data_dir.path().display().to_string();
        for (i, name) in AWKWARD_NAMES.iter().enumerate() {
            let out = app
                .cli(&admin, &["push", name, src.to_str().expect("utf-8")])
                .await;
            assert!(
                out.status.success(),
                "push {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let uri = format!("models:/{name}/1");
            let out = app.cli(&admin, &["verify", &uri]).await;
            assert!(
                out.status.success(),
                "verify {name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let dest = work.path().join(format!("pulled-{i}"));
            let out = app
                .cli(&admin, &["pull", &uri, dest.to_str().expect("utf-8")])
                .await;
            assert!(
                out.status.success(),
                "pull {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                std::fs::read(dest.join("data/model.pkl")).expect("pulled"),
                b"weights"
            );

            // What callers see names the store, never the server's directories.
            let encoded = crate::helpers::enc(name);
            let version = app
                .get(&format!("/api/v1/models/{encoded}/versions/1"), &admin)
                .await;
            assert_eq!(version.status, 200, "{name}: {:?}", version.body);
            assert_eq!(version.body["artifact_verified"], true, "{name}");
            let text = version.body.to_string();
            assert!(!text.contains(&server_path), "{name}: {text}");
            assert!(!text.contains("file://"), "{name}: {text}");
            let missing = app
                .get(
                    &format!("/api/v1/models/{encoded}/versions/1/files/nope.bin"),
                    &admin,
                )
                .await;
            assert_eq!(missing.status, 404, "{name}: {:?}", missing.body);
            assert!(
                !missing.body.to_string().contains(&server_path),
                "{:?}",
                missing.body
            );
            let mlflow_version = app
                .get(
                    &format!("{MLFLOW}/model-versions/get?name={encoded}&version=1"),
                    &admin,
                )
                .await;
            assert_eq!(mlflow_version.status, 200, "{:?}", mlflow_version.body);
            assert!(
                !mlflow_version.body.to_string().contains(&server_path),
                "{:?}",
                mlflow_version.body
            );
        }
    }
);
