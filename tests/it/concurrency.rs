//! 64 concurrent stage transitions and alias moves on one model, over HTTP, on both backends.

use std::collections::BTreeMap;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_permissive};

both_backends!(
    concurrent_writers_lose_no_update,
    |backend: Backend| async move {
        let app = spawn_permissive(backend).await;
        let token = app.admin();
        app.create_model("hot").await;
        for _ in 0..8 {
            app.create_version("hot").await;
        }
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let client = app.client.clone();
            let url = app.url.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let version = i % 8 + 1;
                let (path, body, is_transition) = if i % 2 == 0 {
                    (
                        format!("{url}/api/v1/models/hot/versions/{version}/stage"),
                        json!({"stage": "Production", "archive_existing_versions": true}),
                        true,
                    )
                } else {
                    (
                        format!("{url}/api/v1/models/hot/aliases/champion"),
                        json!({"version": version}),
                        false,
                    )
                };
                let method = if is_transition {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::PUT
                };
                let status = client
                    .request(method, path)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                (is_transition, status)
            }));
        }
        let mut ok = BTreeMap::from([(true, 0), (false, 0)]);
        for t in tasks {
            let (is_transition, status) = t.await.unwrap();
            assert!(status == 200 || status == 409, "unexpected status {status}");
            if status == 200 {
                *ok.get_mut(&is_transition).unwrap() += 1;
            }
        }
        assert!(ok[&true] > 0 && ok[&false] > 0);

        let history = app
            .get("/api/v1/models/hot/history?order=asc&limit=1000", &token)
            .await;
        let events = history.body["events"].as_array().unwrap();
        // Every acknowledged write is in the log: one requested transition per 200, one AliasSet per 200.
        let requested = events
            .iter()
            .filter(|e| {
                e["event_type"] == "StageTransitioned"
                    && e["payload"]["reason"]["kind"] == "requested"
            })
            .count();
        let alias_sets = events
            .iter()
            .filter(|e| e["event_type"] == "AliasSet")
            .count();
        assert_eq!(requested, ok[&true]);
        assert_eq!(alias_sets, ok[&false]);
        // The stream has no gaps.
        let versions: Vec<i64> = events
            .iter()
            .map(|e| e["stream_version"].as_i64().unwrap())
            .collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
        // Every request archived the others: exactly one version holds Production.
        let prod = app
            .get("/api/v1/models/hot/versions?stage=Production", &token)
            .await;
        assert_eq!(prod.body["versions"].as_array().unwrap().len(), 1);

        let live = app.store.projection_dump().await.unwrap();
        app.store.rebuild_projections().await.unwrap();
        assert_eq!(live, app.store.projection_dump().await.unwrap());
    }
);
