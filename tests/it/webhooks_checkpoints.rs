//! Signed checkpoints as webhook deliveries (`ledger.checkpoint.created`, issue #18).
//!
//! A checkpoint is not an event in the log, so it reaches webhooks through a fan-out of its own
//! (a marker on `checkpoint_outbox`) and a delivery row keyed by the checkpoint. What a
//! subscriber relies on, and what these tests pin down: it gets each checkpoint made after it
//! subscribed exactly once, signed like any delivery, never before the events the checkpoint
//! vouches for that it also receives (even while those are being retried); a webhook not
//! subscribed to checkpoints never gets one; and the MLflow-facing `events` list still shows
//! MLflow's events only. Several servers on one database are covered by
//! `webhooks::three_servers_*`, whose receiver subscribes to checkpoints too.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with};
use crate::webhooks::{
    DELIVERY_FLAGS, HOOKS, assert_signed, create_hook, deliveries, eventually, receiver,
};
use model_ledger::reports::checkpoint::{Checkpoint, load_or_create_key, make_checkpoint};

both_backends!(
    checkpoints_reach_subscribers_once_after_the_events_they_vouch_for,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let key = load_or_create_key(app.data_dir.path()).expect("checkpoint key");
        app.create_model("ckpt").await;
        // Made before any webhook exists: owed to nobody.
        let before = make_checkpoint(app.store.as_ref(), &key, "model-ledger")
            .await
            .expect("checkpoint");

        // The subscriber fails its first two attempts, so its first version is still being
        // retried when the checkpoint is queued: sent early, the checkpoint would arrive first.
        let both = receiver(2).await;
        let events_only = receiver(0).await;
        let hook = create_hook(
            &app,
            "with-checkpoints",
            &both.url,
            json!(["model_version.created", "ledger.checkpoint.created"]),
        )
        .await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        let plain = create_hook(
            &app,
            "without",
            &events_only.url,
            json!([{"entity": "MODEL_VERSION", "action": "CREATED"}]),
        )
        .await;
        let plain_id = plain["webhook_id"].as_str().expect("id").to_string();
        // MLflow clients parse `events` into their enums: ours are listed apart.
        assert_eq!(
            hook["events"],
            json!([{"entity": "MODEL_VERSION", "action": "CREATED"}])
        );
        assert_eq!(
            hook["event_names"],
            json!(["model_version.created", "ledger.checkpoint.created"])
        );
        let listed = app.get(HOOKS, &app.admin()).await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        for w in listed.body["webhooks"].as_array().expect("webhooks") {
            assert!(
                w["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .all(|e| !e["entity"].as_str().unwrap_or("").starts_with("LEDGER")),
                "{w}"
            );
        }

        for _ in 0..3 {
            app.create_version("ckpt").await;
        }
        // Its position is the last version's: one event and one checkpoint delivery at the
        // same position for the same webhook.
        let record = make_checkpoint(app.store.as_ref(), &key, "model-ledger")
            .await
            .expect("checkpoint");
        assert_eq!(record.position, app.event_count().await);

        // 2 failed attempts + 3 versions + 1 checkpoint.
        eventually("the subscriber got the checkpoint", || {
            both.hits().len() >= 6
        })
        .await;
        eventually("the other receiver got the versions", || {
            events_only.hits().len() >= 3
        })
        .await;
        // Long enough for a duplicate, or a stray checkpoint, to arrive.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;

        let hits = both.hits();
        assert_eq!(hits.len(), 6, "delivered once");
        let bodies: Vec<Value> = hits
            .iter()
            .map(|h| serde_json::from_str(&h.body).expect("json"))
            .collect();
        let last = &bodies[5];
        assert_eq!(last["entity"], "ledger.checkpoint", "{bodies:?}");
        assert_eq!(last["action"], "created");
        assert!(
            bodies[..5].iter().all(|b| b["entity"] == "model_version"),
            "the checkpoint came after every version it vouches for: {bodies:?}"
        );
        assert_signed(&hits[5]);
        let data = &last["data"];
        assert_eq!(data["id"], record.id.as_str());
        assert_ne!(data["id"], before.id.as_str());
        assert_eq!(data["position"], record.position);
        assert_eq!(data["hash"], record.hash.as_str());
        assert_eq!(data["origin"], "model-ledger");
        assert_eq!(data["key_id"], record.key_id.as_str());
        assert_eq!(data["created_at"], last["timestamp"]);
        // The receiver can check the registry's signature on what it got.
        let note = data["note"].as_str().expect("note");
        let parsed = Checkpoint::parse(note, Some(&key.verifying_key())).expect("signature");
        assert_eq!(parsed.position, record.position);
        assert_eq!(parsed.hash, record.hash);

        assert!(
            events_only
                .hits()
                .iter()
                .all(|h| !h.body.contains("ledger.checkpoint")),
            "not subscribed, not sent"
        );
        assert_eq!(events_only.hits().len(), 3);

        // Delivery history shows it, with the checkpoint it carried.
        let history = deliveries(&app, &id).await;
        let shown: Vec<&Value> = history
            .iter()
            .filter(|d| d["event_name"] == "ledger.checkpoint.created")
            .collect();
        assert_eq!(shown.len(), 1, "{history:?}");
        assert_eq!(shown[0]["checkpoint_id"], record.id.as_str());
        assert_eq!(shown[0]["position"], record.position);
        assert_eq!(shown[0]["status"], "SUCCEEDED");
        assert_eq!(
            shown[0]["event"],
            json!({"entity": "LEDGER.CHECKPOINT", "action": "CREATED"})
        );
        let plain_history = deliveries(&app, &plain_id).await;
        assert_eq!(plain_history.len(), 3, "{plain_history:?}");
        assert!(plain_history.iter().all(|d| d["checkpoint_id"].is_null()));

        // test_webhook knows the name, and an unknown ledger name is still refused.
        let r = app
            .post(
                &format!("{HOOKS}/{id}/test"),
                &app.admin(),
                json!({"event": {"entity": "LEDGER.CHECKPOINT", "action": "CREATED"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = app
            .patch(
                &format!("{HOOKS}/{id}"),
                &app.admin(),
                json!({"events": ["ledger.checkpoint.exploded"]}),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
);
