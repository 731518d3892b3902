//! Registry webhooks (issue #18): durable, signed delivery to a real HTTP receiver (axum on
//! 127.0.0.1, so the servers run with --webhook-allow-private-ips). The MLflow 3 REST API for
//! webhooks is tested in `webhooks_api.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_on, spawn_app_with};

pub(crate) const HOOKS: &str = "/api/2.0/mlflow/webhooks";
pub(crate) const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub(crate) const SECRET: &str = "s3cret-for-the-receiver";

/// Fast retries so a test sees several attempts in a second or two.
pub(crate) const DELIVERY_FLAGS: &[&str] = &[
    "--webhook-allow-private-ips",
    "--webhook-secret-key",
    KEY,
    "--webhook-retry-base",
    "100ms",
    "--webhook-retry-max-delay",
    "300ms",
    "--webhook-timeout",
    "3s",
];

pub(crate) fn mv_created() -> Value {
    json!([{"entity": "MODEL_VERSION", "action": "CREATED"}])
}

/// What the receiver got: headers and the exact body.
#[derive(Clone)]
pub(crate) struct Hit {
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// A webhook receiver that answers 500 to its first `fail_first` requests, then 200.
pub(crate) struct Receiver {
    pub(crate) url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn receiver_on(listener: tokio::net::TcpListener, fail_first: usize) -> Receiver {
    receiver_hanging_on(listener, fail_first, None).await
}

/// [`receiver_on`], answering each request only after `hang` (a receiver that hangs).
async fn receiver_hanging_on(
    listener: tokio::net::TcpListener,
    fail_first: usize,
    hang: Option<Duration>,
) -> Receiver {
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let hits = hits.clone();
            move |headers: HeaderMap, body: String| {
                let hits = hits.clone();
                let seen = seen.clone();
                async move {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    hits.lock().expect("lock").push(Hit { headers, body });
                    if let Some(hang) = hang {
                        tokio::time::sleep(hang).await;
                    }
                    if n < fail_first {
                        (StatusCode::INTERNAL_SERVER_ERROR, "not yet")
                    } else {
                        (StatusCode::OK, "thanks")
                    }
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Receiver {
        url,
        hits,
        _stop: tx,
    }
}

pub(crate) async fn receiver(fail_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    receiver_on(listener, fail_first).await
}

impl Receiver {
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }
}

pub(crate) async fn create_hook(app: &TestApp, name: &str, url: &str, events: Value) -> Value {
    let r = app
        .post(
            HOOKS,
            &app.admin(),
            json!({"name": name, "url": url, "events": events, "secret": SECRET}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["webhook"].clone()
}

/// Polls until `check` holds (or fails the test after 20 s).
pub(crate) async fn eventually<F: Fn() -> bool>(what: &str, check: F) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub(crate) async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app
        .get(&format!("{HOOKS}/{id}/deliveries"), &app.admin())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The distinct delivery ids among `hits`.
fn delivery_ids(hits: &[Hit]) -> std::collections::HashSet<String> {
    hits.iter()
        .map(|h| h.headers["webhook-id"].to_str().expect("id").to_string())
        .collect()
}

/// The versions of `model` that `hits` carried, in the order they arrived.
fn versions_of(hits: &[Hit], model: &str) -> Vec<String> {
    hits.iter()
        .map(|h| serde_json::from_str::<Value>(&h.body).expect("json"))
        .filter(|b| b["data"]["name"] == model)
        .map(|b| b["data"]["version"].as_str().expect("v").to_string())
        .collect()
}

/// Checks both header sets and the signature a receiver would verify.
pub(crate) fn assert_signed(hit: &Hit) {
    let h = |n: &str| {
        hit.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("header {n} missing"))
            .to_string()
    };
    let id = h("x-mlflow-delivery-id");
    let ts: i64 = h("x-mlflow-timestamp").parse().expect("unix seconds");
    assert_eq!(h("webhook-id"), id);
    assert_eq!(h("webhook-timestamp"), ts.to_string());
    assert_eq!(h("webhook-signature"), h("x-mlflow-signature"));
    assert!(model_ledger::webhooks::signing::verify(
        SECRET.as_bytes(),
        &h("x-mlflow-signature"),
        &id,
        ts,
        hit.body.as_bytes(),
    ));
    assert!(!model_ledger::webhooks::signing::verify(
        b"another secret",
        &h("x-mlflow-signature"),
        &id,
        ts,
        hit.body.as_bytes(),
    ));
}

both_backends!(
    events_are_delivered_signed_in_order,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let rx = receiver(0).await;
        let hook = create_hook(
            &app,
            "ordered",
            &rx.url,
            json!([
                "registered_model.created",
                "model_version.created",
                "ledger.model_version.stage_transitioned"
            ]),
        )
        .await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("churn").await;
        for _ in 0..3 {
            app.create_version("churn").await;
        }
        eventually("4 deliveries", || rx.hits().len() >= 4).await;
        let hits = rx.hits();
        assert_eq!(hits.len(), 4, "each event once");
        for hit in &hits {
            assert_signed(hit);
        }
        let bodies: Vec<Value> = hits
            .iter()
            .map(|h| serde_json::from_str(&h.body).expect("json"))
            .collect();
        assert_eq!(bodies[0]["entity"], "registered_model");
        assert_eq!(bodies[0]["data"]["name"], "churn");
        let versions: Vec<&str> = bodies[1..]
            .iter()
            .map(|b| b["data"]["version"].as_str().expect("version"))
            .collect();
        assert_eq!(
            versions,
            ["1", "2", "3"],
            "one model's events in commit order"
        );
        for b in &bodies {
            let keys: Vec<&String> = b.as_object().expect("object").keys().collect();
            assert_eq!(keys.len(), 4, "MLflow's four keys: {b}");
        }
        eventually_deliveries(&app, &id, 4, "SUCCEEDED").await;
        let history = deliveries(&app, &id).await;
        assert!(
            history
                .iter()
                .all(|d| d["attempts"] == 1 && d["last_response_code"] == 200)
        );

        // test_webhook: sent now, signed, reported.
        let r = app
            .post(
                &format!("{HOOKS}/{id}/test"),
                &app.admin(),
                json!({"event": {"entity": "MODEL_VERSION", "action": "CREATED"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["result"]["success"], true);
        assert_eq!(r.body["result"]["response_status"], 200);
        assert_eq!(r.body["result"]["response_body"], "thanks");
        let last = rx.hits().pop().expect("the test delivery");
        assert_signed(&last);

        // Redelivery: the same delivery id again.
        let first = history.last().expect("oldest")["delivery_id"]
            .as_str()
            .expect("id")
            .to_string();
        let r = app
            .post(
                &format!("{HOOKS}/{id}/deliveries/{first}/redeliver"),
                &app.admin(),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        eventually("the redelivery", || {
            rx.hits()
                .iter()
                .filter(|h| h.headers["webhook-id"] == first.as_str())
                .count()
                == 2
        })
        .await;
        let r = app
            .post(
                &format!("{HOOKS}/{id}/deliveries/nope/redeliver"),
                &app.admin(),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 404);
    }
);

async fn eventually_deliveries(app: &TestApp, id: &str, n: usize, status: &str) {
    eventually_deliveries_within(app, id, n, status, Duration::from_secs(20)).await;
}

async fn eventually_deliveries_within(
    app: &TestApp,
    id: &str,
    n: usize,
    status: &str,
    patience: Duration,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        let d = deliveries(app, id).await;
        if d.len() == n && d.iter().all(|d| d["status"] == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "deliveries never reached {n} x {status}: {:?}",
        deliveries(app, id).await
    );
}

both_backends!(
    a_failing_receiver_is_retried_until_it_answers,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let rx = receiver(2).await;
        let hook = create_hook(&app, "flaky", &rx.url, json!(["registered_model.created"])).await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("flaky-model").await;
        eventually_deliveries(&app, &id, 1, "SUCCEEDED").await;
        let d = &deliveries(&app, &id).await[0];
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["last_response_code"], 200);
        let hits = rx.hits();
        assert_eq!(hits.len(), 3);
        let ids = delivery_ids(&hits);
        assert_eq!(ids.len(), 1, "retries keep the delivery id");
    }
);

both_backends!(
    a_receiver_that_was_down_gets_everything,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        // Reserve a port, then leave it closed: connections are refused until the receiver starts.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/hook");
        let hook = create_hook(&app, "down", &url, json!(["model_version.created"])).await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("m").await;
        for _ in 0..5 {
            app.create_version("m").await;
        }
        // Attempts fail while it is down. The first one is retried after about 100 ms, which
        // may come before the last version's event is fanned out: wait for both.
        for _ in 0..100 {
            let d = deliveries(&app, &id).await;
            if d.len() == 5 && d.iter().any(|d| d["attempts"].as_i64() >= Some(2)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let d = deliveries(&app, &id).await;
        assert_eq!(d.len(), 5);
        assert!(d.iter().all(|d| d["status"] == "PENDING"), "{d:?}");
        assert!(
            d.iter().any(|d| d["last_error"].as_str().is_some()),
            "{d:?}"
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind the receiver's port");
        let rx = receiver_on(listener, 0).await;
        eventually_deliveries(&app, &id, 5, "SUCCEEDED").await;
        let versions: Vec<String> = rx
            .hits()
            .iter()
            .map(|h| {
                let b: Value = serde_json::from_str(&h.body).expect("json");
                b["data"]["version"].as_str().expect("v").to_string()
            })
            .collect();
        assert_eq!(versions, ["1", "2", "3", "4", "5"], "in order, each once");
    }
);

both_backends!(
    two_servers_on_one_database_deliver_each_event_once,
    |backend: Backend| async move {
        let one = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let two = spawn_app_on(backend, Some(&one.database_url), DELIVERY_FLAGS).await;
        let rx = receiver(0).await;
        let hook = create_hook(&one, "shared", &rx.url, json!(["model_version.created"])).await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        one.create_model("a").await;
        two.create_model("b").await;
        for i in 0..10 {
            let app = if i % 2 == 0 { &one } else { &two };
            app.create_version(if i % 3 == 0 { "a" } else { "b" }).await;
        }
        eventually_deliveries(&one, &id, 10, "SUCCEEDED").await;
        // Let any duplicate that is coming arrive before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hits = rx.hits();
        let ids = delivery_ids(&hits);
        assert_eq!(hits.len(), 10, "each event delivered once");
        assert_eq!(ids.len(), 10);
        for hit in &hits {
            assert_signed(hit);
        }
    }
);

both_backends!(
    a_hanging_receiver_does_not_delay_the_others,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stuck = receiver_hanging_on(listener, 0, Some(Duration::from_secs(30))).await;
        let healthy = receiver(0).await;
        create_hook(&app, "stuck", &stuck.url, json!(["model_version.created"])).await;
        create_hook(
            &app,
            "healthy",
            &healthy.url,
            json!(["model_version.created"]),
        )
        .await;
        app.create_model("busy").await;
        app.create_model("other").await;
        let started = std::time::Instant::now();
        for name in ["busy", "other", "busy", "other"] {
            app.create_version(name).await;
        }
        eventually("the healthy receiver's 4 deliveries", || {
            healthy.hits().len() >= 4
        })
        .await;
        // The stuck receiver's attempts time out only after --webhook-timeout (3 s).
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the healthy receiver waited {:?}",
            started.elapsed()
        );
        assert_eq!(healthy.hits().len(), 4);
        // One attempt in flight per model at the stuck receiver, nothing more.
        assert_eq!(stuck.hits().len(), 2, "one in flight per model");
    }
);

both_backends!(
    a_receiver_slower_than_a_window_gets_each_model_in_order_once,
    |backend: Backend| async move {
        // Every answer takes 150 ms, three times what a fan-out window waits for an attempt:
        // each delivery outlives its window (written in flight, its outcome recorded later)
        // or is queued behind one that did, and the lease sends the rest. Order per model,
        // one attempt each and one delivery id each must hold across that hand-over.
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let slow = receiver_hanging_on(listener, 0, Some(Duration::from_millis(150))).await;
        // A second receiver that notes how many of one model's deliveries it holds at once:
        // "in order" means the next is sent only after the one before it was answered.
        let overlaps = Arc::new(AtomicUsize::new(0));
        let holding: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
        let counting = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let counting_url = format!("http://{}/hook", counting.local_addr().expect("addr"));
        let counter = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let (overlaps, holding) = (overlaps.clone(), holding.clone());
                move |body: String| {
                    let (overlaps, holding) = (overlaps.clone(), holding.clone());
                    async move {
                        let model =
                            serde_json::from_str::<Value>(&body).expect("json")["data"]["name"]
                                .as_str()
                                .expect("name")
                                .to_string();
                        {
                            let mut held = holding.lock().expect("lock");
                            let n = held.entry(model.clone()).or_default();
                            *n += 1;
                            if *n > 1 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        *holding.lock().expect("lock").entry(model).or_default() -= 1;
                        (StatusCode::OK, "thanks")
                    }
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(counting, counter).await;
        });
        let hook = create_hook(&app, "slow", &slow.url, json!(["model_version.created"])).await;
        let counted = create_hook(
            &app,
            "counting",
            &counting_url,
            json!(["model_version.created"]),
        )
        .await;
        let counted = counted["webhook_id"].as_str().expect("id").to_string();
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("x").await;
        app.create_model("y").await;
        for name in ["x", "y", "x", "y", "x", "y"] {
            app.create_version(name).await;
        }
        eventually_deliveries(&app, &id, 6, "SUCCEEDED").await;
        // Let any duplicate that is coming arrive before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hits = slow.hits();
        let ids = delivery_ids(&hits);
        assert_eq!((hits.len(), ids.len()), (6, 6), "each delivered once");
        for model in ["x", "y"] {
            let versions = versions_of(&hits, model);
            assert_eq!(versions, ["1", "2", "3"], "model {model} in order");
        }
        for delivery in deliveries(&app, &id).await {
            assert_eq!(delivery["attempts"], 1, "{delivery}");
        }
        eventually_deliveries(&app, &counted, 6, "SUCCEEDED").await;
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "a model's next delivery was sent before the one before it was answered"
        );
    }
);

both_backends!(
    a_backlog_of_many_windows_is_delivered_in_order_once,
    |backend: Backend| async move {
        // Windows of at most three deliveries (one event to two webhooks each) and receivers
        // that take 30 ms: events pile up behind the fan-out, so each window is written while
        // the next one is sent. Nothing may be skipped, repeated or reordered across them.
        let mut flags = DELIVERY_FLAGS.to_vec();
        flags.extend(["--webhook-window-deliveries", "3"]);
        let app = spawn_app_with(backend, &flags).await;
        let mut receivers = Vec::new();
        let mut ids = Vec::new();
        for name in ["first", "second"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let rx = receiver_hanging_on(listener, 0, Some(Duration::from_millis(30))).await;
            let hook = create_hook(&app, name, &rx.url, json!(["model_version.created"])).await;
            ids.push(hook["webhook_id"].as_str().expect("id").to_string());
            receivers.push(rx);
        }
        app.create_model("p").await;
        app.create_model("q").await;
        let models = ["p", "q", "p", "p", "q", "p", "q", "q", "p", "q"];
        for name in models {
            app.create_version(name).await;
        }
        for (rx, id) in receivers.iter().zip(&ids) {
            eventually_deliveries(&app, id, models.len(), "SUCCEEDED").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let hits = rx.hits();
            let unique = delivery_ids(&hits);
            assert_eq!((hits.len(), unique.len()), (10, 10), "each delivered once");
            for model in ["p", "q"] {
                let versions = versions_of(&hits, model);
                assert_eq!(
                    versions,
                    ["1", "2", "3", "4", "5"],
                    "model {model} in order"
                );
            }
            for hit in &hits {
                assert_signed(hit);
            }
        }
    }
);

both_backends!(
    a_server_without_active_webhooks_skips_the_old_log,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        app.create_model("before").await;
        app.create_version("before").await;
        let (cursor, active) = app.store.webhook_cursor().await.expect("cursor");
        assert!(!active);
        assert_eq!(cursor, 0, "nothing is written while no webhook is active");
        let rx = receiver(0).await;
        create_hook(&app, "late", &rx.url, json!(["model_version.created"])).await;
        let (cursor, active) = app.store.webhook_cursor().await.expect("cursor");
        assert!(active);
        assert_eq!(
            cursor,
            app.event_count().await,
            "the new webhook starts at the head"
        );
        app.create_version("before").await;
        eventually("the new version's delivery", || !rx.hits().is_empty()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hits = rx.hits();
        assert_eq!(
            hits.len(),
            1,
            "only what happened after the webhook was created"
        );
        let body: Value = serde_json::from_str(&hits[0].body).expect("json");
        assert_eq!(body["data"]["version"], "2");
    }
);

both_backends!(
    a_restarted_server_resumes_pending_deliveries,
    |backend: Backend| async move {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/hook");
        let mut first = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let hook = create_hook(&first, "resume", &url, json!(["model_version.created"])).await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        first.create_model("r").await;
        for _ in 0..3 {
            first.create_version("r").await;
        }
        for _ in 0..100 {
            let d = deliveries(&first, &id).await;
            if d.len() == 3 && d.iter().any(|d| d["attempts"].as_i64() >= Some(1)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(deliveries(&first, &id).await.len(), 3);
        // Stop the server (keeping its data directory: the SQLite file lives there) while the
        // receiver is still down, then start another one on the same database.
        let database_url = first.database_url.clone();
        let _kept = std::mem::replace(&mut first.data_dir, tempfile::tempdir().expect("tempdir"));
        drop(first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind the receiver's port");
        let rx = receiver_on(listener, 0).await;
        let second = spawn_app_on(backend, Some(&database_url), DELIVERY_FLAGS).await;
        // An attempt that was in flight when the first server stopped keeps its lease (the
        // 3 s timeout, the 5 s connect timeout and the 30 s margin) before another process may
        // take it over: that takeover is part of what this test checks, so it waits past one
        // lease, not only for a retry.
        eventually_deliveries_within(&second, &id, 3, "SUCCEEDED", Duration::from_secs(60)).await;
        let versions: Vec<String> = rx
            .hits()
            .iter()
            .map(|h| {
                let b: Value = serde_json::from_str(&h.body).expect("json");
                b["data"]["version"].as_str().expect("v").to_string()
            })
            .collect();
        assert_eq!(versions, ["1", "2", "3"], "resumed in order, each once");
    }
);

both_backends!(
    ledger_events_are_listed_apart_from_mlflows,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &["--webhook-secret-key", KEY]).await;
        let r = app
            .post(
                HOOKS,
                &app.admin(),
                json!({"name": "mixed", "url": "https://example.com/x",
                   "events": ["ledger.model_version.stage_transitioned",
                              {"entity": "MODEL_VERSION", "action": "CREATED"}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        // MLflow clients parse `events` into their enums: only MLflow's events go there.
        assert_eq!(r.body["webhook"]["events"], mv_created());
        assert_eq!(
            r.body["webhook"]["event_names"],
            json!([
                "ledger.model_version.stage_transitioned",
                "model_version.created"
            ])
        );
    }
);

both_backends!(
    a_replaced_secret_keeps_signing_during_the_overlap,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let rx = receiver(0).await;
        let hook = create_hook(
            &app,
            "rotating",
            &rx.url,
            json!(["registered_model.created"]),
        )
        .await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        // One delivery before the rotation: the worker keeps each webhook's opened keys, and
        // must notice they were replaced.
        app.create_model("before").await;
        eventually("the first delivery", || !rx.hits().is_empty()).await;
        let first = &rx.hits()[0];
        let first_signature = first.headers["webhook-signature"]
            .to_str()
            .expect("header")
            .to_string();
        assert_eq!(first_signature.split(' ').count(), 1, "{first_signature}");
        let r = app
            .patch(
                &format!("{HOOKS}/{id}"),
                &app.admin(),
                json!({"secret": "the-new-one"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        app.create_model("rotated").await;
        eventually("the delivery", || rx.hits().len() >= 2).await;
        let hit = &rx.hits()[1];
        assert!(hit.body.contains("rotated"), "{}", hit.body);
        let h = |n: &str| hit.headers[n].to_str().expect("header").to_string();
        let signature = h("webhook-signature");
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        let (delivery, ts) = (h("webhook-id"), h("webhook-timestamp").parse().expect("ts"));
        for secret in ["the-new-one", SECRET] {
            assert!(
                model_ledger::webhooks::signing::verify(
                    secret.as_bytes(),
                    &signature,
                    &delivery,
                    ts,
                    hit.body.as_bytes()
                ),
                "{secret} verifies during the overlap"
            );
        }
        assert!(signature.starts_with(&format!(
            "v1,{}",
            model_ledger::webhooks::signing::signature(
                b"the-new-one",
                &delivery,
                ts,
                hit.body.as_bytes()
            )
        )));
    }
);

both_backends!(
    deliveries_follow_a_changed_url,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, DELIVERY_FLAGS).await;
        let (old_rx, new_rx) = (receiver(0).await, receiver(0).await);
        let hook = create_hook(
            &app,
            "moving",
            &old_rx.url,
            json!(["registered_model.created"]),
        )
        .await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("first").await;
        eventually("the first delivery", || !old_rx.hits().is_empty()).await;
        let r = app
            .patch(
                &format!("{HOOKS}/{id}"),
                &app.admin(),
                json!({"url": new_rx.url}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        app.create_model("second").await;
        eventually("the delivery to the new URL", || !new_rx.hits().is_empty()).await;
        assert!(
            new_rx.hits()[0].body.contains("second"),
            "{}",
            new_rx.hits()[0].body
        );
        // The worker kept the old URL parsed: it must not have been used again.
        assert_eq!(old_rx.hits().len(), 1);
    }
);

both_backends!(
    a_name_that_resolves_to_a_private_address_is_refused_when_sent,
    |backend: Backend| async move {
        // Without --webhook-allow-private-ips. A name is accepted when the webhook is made
        // (it is resolved only when dialled), and then refused by the resolver: the delivery
        // fails at once, nothing reaches the receiver, and it is not retried.
        let flags: Vec<&str> = DELIVERY_FLAGS
            .iter()
            .copied()
            .filter(|f| *f != "--webhook-allow-private-ips")
            .collect();
        let app = spawn_app_with(backend, &flags).await;
        let rx = receiver(0).await;
        let by_name = rx.url.replace("127.0.0.1", "localhost");
        let hook = create_hook(
            &app,
            "inside",
            &by_name,
            json!(["registered_model.created"]),
        )
        .await;
        let id = hook["webhook_id"].as_str().expect("id").to_string();
        app.create_model("probe").await;
        eventually_deliveries(&app, &id, 1, "FAILED").await;
        let delivery = &deliveries(&app, &id).await[0];
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        let error = delivery["last_error"].as_str().expect("an error");
        assert!(error.contains("non-public address"), "{error}");
        assert!(rx.hits().is_empty());
    }
);
