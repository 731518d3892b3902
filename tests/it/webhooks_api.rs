//! The MLflow 3 webhook REST API (issue #18), on both backends. MLflow's own client and UI
//! drive these endpoints, so what they rely on is checked at the wire level: field names,
//! pagination, partial updates, validation and not-found errors in MLflow's words, that only
//! admins may look or change, and that a webhook's secret is never answered back nor stored
//! in plain text. Delivery is tested in `webhooks.rs` and the files next to it.

use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with};
use crate::webhooks::{HOOKS, KEY, SECRET, mv_created};

both_backends!(
    crud_pagination_validation_and_access,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &["--webhook-secret-key", KEY]).await;
        let admin = app.admin();

        let created = app
            .post(
                HOOKS,
                &admin,
                json!({"name": "test_webhook", "url": "https://example.com/webhook",
                   "events": mv_created(), "description": "d", "secret": SECRET}),
            )
            .await;
        assert_eq!(created.status, 200, "{:?}", created.body);
        let hook = &created.body["webhook"];
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        assert_eq!(hook["name"], "test_webhook");
        assert_eq!(hook["url"], "https://example.com/webhook");
        assert_eq!(hook["events"], mv_created());
        assert_eq!(hook["status"], "ACTIVE");
        assert_eq!(hook["description"], "d");
        assert!(hook["creation_timestamp"].as_i64().expect("ms") > 1_600_000_000_000);

        // The secret is never answered, by any endpoint.
        let got = app.get(&format!("{HOOKS}/{id}"), &admin).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["webhook"], *hook);
        let listed = app.get(HOOKS, &admin).await;
        for text in [
            created.body.to_string(),
            got.body.to_string(),
            listed.body.to_string(),
        ] {
            assert!(!text.contains(SECRET) && !text.contains("secret"), "{text}");
        }
        // ... and is not stored in plain text either.
        let stored = app
            .store
            .get_webhook(&id)
            .await
            .expect("read")
            .expect("row");
        let sealed = stored.secret_sealed.expect("sealed");
        assert!(!sealed.contains(SECRET));

        // Pagination: newest first, disjoint pages, a token while more follow.
        for i in 0..4 {
            let r = app
                .post(
                    HOOKS,
                    &admin,
                    json!({"name": format!("webhook{i}"), "url": format!("https://example.com/{i}"),
                       "events": ["model_version.created", "registered_model.created"]}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        let first = app.get(&format!("{HOOKS}?max_results=2"), &admin).await;
        assert_eq!(first.body["webhooks"].as_array().map(Vec::len), Some(2));
        assert_eq!(first.body["webhooks"][0]["name"], "webhook3");
        let token = first.body["next_page_token"].as_str().expect("token");
        let second = app
            .get(
                &format!(
                    "{HOOKS}?max_results=2&page_token={}",
                    crate::helpers::enc(token)
                ),
                &admin,
            )
            .await;
        assert_eq!(second.body["webhooks"][0]["name"], "webhook1");
        let third = app
            .get(
                &format!(
                    "{HOOKS}?max_results=2&page_token={}",
                    crate::helpers::enc(second.body["next_page_token"].as_str().expect("token"))
                ),
                &admin,
            )
            .await;
        assert_eq!(third.body["webhooks"].as_array().map(Vec::len), Some(1));
        assert!(third.body.get("next_page_token").is_none());

        // Partial and full updates; the update time moves forward.
        let r = app
            .patch(&format!("{HOOKS}/{id}"), &admin, json!({"name": "renamed"}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["webhook"]["url"], "https://example.com/webhook");
        assert_eq!(r.body["webhook"]["events"], mv_created());
        assert_eq!(r.body["webhook"]["description"], "d");
        let r2 = app
            .patch(
                &format!("{HOOKS}/{id}"),
                &admin,
                json!({"url": "https://example.com/updated", "status": "DISABLED",
                   "events": [{"entity": "MODEL_VERSION", "action": "CREATED"},
                              {"entity": "REGISTERED_MODEL", "action": "CREATED"}]}),
            )
            .await;
        assert_eq!(r2.status, 200, "{:?}", r2.body);
        assert_eq!(r2.body["webhook"]["status"], "DISABLED");
        assert_eq!(
            r2.body["webhook"]["events"][1]["entity"],
            "REGISTERED_MODEL"
        );
        assert!(
            r2.body["webhook"]["last_updated_timestamp"].as_i64()
                > r.body["webhook"]["last_updated_timestamp"].as_i64()
        );

        // Validation, in MLflow's words.
        for (body, expect) in [
            (
                json!({"url": "   "}),
                "Webhook URL cannot be empty or just whitespace",
            ),
            (
                json!({"url": "ftp://example.com"}),
                "Invalid webhook URL scheme",
            ),
            (json!({"url": "http://[invalid"}), "Invalid webhook URL"),
            (json!({"url": "http://127.0.0.1:9/x"}), "non-public address"),
            (json!({"url": "https://u:p@example.com/"}), "credentials"),
            (
                json!({"events": [{"entity": "MODEL_VERSION", "action": "EXPLODED"}]}),
                "Invalid webhook event",
            ),
            (json!({"events": 3}), "events"),
            (json!({"status": "SLEEPING"}), "Invalid webhook status"),
            (json!({"name": "-bad"}), "Invalid webhook name"),
        ] {
            let r = app
                .patch(&format!("{HOOKS}/{id}"), &admin, body.clone())
                .await;
            assert_eq!(r.status, 400, "{body}: {:?}", r.body);
            assert_eq!(r.code(), "INVALID_PARAMETER_VALUE", "{body}");
            let message = r.body["message"].as_str().unwrap_or("");
            assert!(message.contains(expect), "{body}: {message}");
        }
        let r = app
            .post(HOOKS, &admin, json!({"name": "x", "events": mv_created()}))
            .await;
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"].as_str().unwrap_or("").contains("'url'"),
            "{:?}",
            r.body
        );
        let r = app
            .post(
                HOOKS,
                &admin,
                json!({"name": "x", "url": "https://example.com/", "events": []}),
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("cannot be empty")
        );

        // Not found, in MLflow's words, for every verb.
        for r in [
            app.get(&format!("{HOOKS}/nonexistent"), &admin).await,
            app.patch(
                &format!("{HOOKS}/nonexistent"),
                &admin,
                json!({"name": "n"}),
            )
            .await,
            app.delete(&format!("{HOOKS}/nonexistent"), &admin).await,
            app.post(&format!("{HOOKS}/nonexistent/test"), &admin, json!({}))
                .await,
        ] {
            assert_eq!(r.status, 404, "{:?}", r.body);
            assert_eq!(r.code(), "RESOURCE_DOES_NOT_EXIST");
            assert_eq!(r.body["message"], "Webhook with ID nonexistent not found");
        }

        // Readers and release managers may neither look nor change; each refusal is recorded.
        let reader = app.token("rita", &["ml-readers"]);
        for r in [
            app.get(HOOKS, &reader).await,
            app.get(&format!("{HOOKS}/{id}"), &reader).await,
            app.post(
                HOOKS,
                &app.release_manager(),
                json!({"name": "x", "url": "https://example.com/", "events": mv_created()}),
            )
            .await,
            app.delete(&format!("{HOOKS}/{id}"), &reader).await,
        ] {
            assert_eq!(r.status, 403, "{:?}", r.body);
            assert_eq!(r.code(), "PERMISSION_DENIED");
        }
        let mut denied = Vec::new();
        for _ in 0..50 {
            denied = app
                .store
                .read_denials(&model_ledger::store::DenialQuery {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .expect("denials");
            if denied.iter().any(|d| d.action == "ManageWebhooks")
                && denied.iter().any(|d| d.action == "ReadWebhooks")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            denied.iter().any(|d| d.action == "ManageWebhooks"),
            "{denied:?}"
        );
        assert!(
            denied.iter().any(|d| d.action == "ReadWebhooks"),
            "{denied:?}"
        );

        // Delete: gone from get and list.
        let r = app.delete(&format!("{HOOKS}/{id}"), &admin).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body, json!({}));
        assert_eq!(app.get(&format!("{HOOKS}/{id}"), &admin).await.status, 404);
        let all = app.get(HOOKS, &admin).await;
        assert!(
            all.body["webhooks"]
                .as_array()
                .expect("list")
                .iter()
                .all(|w| w["webhook_id"] != id.as_str())
        );
    }
);
