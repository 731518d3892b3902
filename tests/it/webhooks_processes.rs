//! Webhook delivery across `serve` processes on one database (issue #18): a server killed
//! mid-delivery loses nothing and repeats only under the same delivery id, and three servers
//! deliver each event (and each signed checkpoint) once. Each test starts real processes of
//! the built binary, since what is tested is what survives a process and what processes share.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::webhooks::{DELIVERY_FLAGS, HOOKS, Hit, SECRET, assert_signed};

/// A `serve` process of its own, so the test can `kill -9` it mid-delivery.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    async fn start(database_url: &str, data_dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_model-ledger"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--dev-auth",
            ])
            .args(["--database-url", database_url, "--policies"])
            .arg(crate::helpers::repo_path("policies"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(DELIVERY_FLAGS)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start serve");
        // Owned at once, so the process is killed and reaped whatever happens next.
        let process = ServeProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("{}/healthz", process.url))
                .send()
                .await
                .is_ok()
            {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not start");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_delivery_loses_nothing_and_repeats_only_under_the_same_id() {
    // The receiver holds every request for a while, so deliveries are in flight (leased,
    // sent, unanswered) when the server gets SIGKILL; a new process on the same database
    // must deliver every event, and a repeat may only reuse the same delivery id and body.
    let holding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (holding, hits) = (holding.clone(), hits.clone());
            move |headers: HeaderMap, body: String| {
                let (holding, hits) = (holding.clone(), hits.clone());
                async move {
                    hits.lock().expect("lock").push(Hit { headers, body });
                    while holding.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    (StatusCode::OK, "thanks")
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let database_url = crate::helpers::fresh_pg_database().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let first = ServeProcess::start(&database_url, data_dir.path()).await;
    let admin = model_ledger::auth::dev::mint_token(
        data_dir.path(),
        "admin",
        &["ml-admins".to_string()],
        Duration::from_secs(3600),
        model_ledger::auth::PrincipalKind::User,
    )
    .expect("token");
    let client = reqwest::Client::new();
    let post = |url: String, body: Value| {
        let (client, admin) = (client.clone(), admin.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, hook) = post(
        format!("{}{HOOKS}", first.url),
        json!({"name": "k9", "url": hook_url, "events": ["model_version.created"], "secret": SECRET}),
    )
    .await;
    assert_eq!(status, 200, "{hook:?}");
    let (status, _) = post(format!("{}/api/v1/models", first.url), json!({"name": "k"})).await;
    assert_eq!(status, 201);
    const VERSIONS: usize = 6;
    for _ in 0..VERSIONS {
        let (status, body) = post(
            format!("{}/api/v1/models/k/versions", first.url),
            json!({"source": "s3://bucket/k"}),
        )
        .await;
        assert_eq!(status, 201, "{body:?}");
    }
    // Wait until a delivery is on the wire, then kill the server without any shutdown.
    for _ in 0..200 {
        if !hits.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !hits.lock().expect("lock").is_empty(),
        "nothing was sent before the kill"
    );
    drop(first);
    holding.store(false, Ordering::SeqCst);

    let second = ServeProcess::start(&database_url, data_dir.path()).await;
    let delivered = |hits: &[Hit]| {
        let mut versions: Vec<String> = hits
            .iter()
            .filter_map(|h| serde_json::from_str::<Value>(&h.body).ok())
            .filter_map(|b| b["data"]["version"].as_str().map(str::to_string))
            .collect();
        versions.sort();
        versions.dedup();
        versions.len()
    };
    // The dead process's lease runs out first (the attempt's timeouts plus a 30 s margin).
    for _ in 0..900 {
        if delivered(&hits.lock().expect("lock")) == VERSIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits = hits.lock().expect("lock").clone();
    assert_eq!(
        delivered(&hits),
        VERSIONS,
        "every committed event was delivered"
    );
    // Repeats (the killed server's unanswered sends, sent again) reuse the delivery id, and
    // one delivery id always carries the same body.
    let mut by_id: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for h in &hits {
        let id = h
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .expect("a delivery id")
            .to_string();
        by_id.entry(id).or_default().insert(h.body.clone());
    }
    assert_eq!(
        by_id.len(),
        VERSIONS,
        "one delivery id per event: {by_id:?}"
    );
    assert!(by_id.values().all(|bodies| bodies.len() == 1), "{by_id:?}");
    drop(second);
}

/// Three `serve` processes on one database, each with its own delivery worker, and a burst of
/// events written through all three, then two signed checkpoints: every event and checkpoint
/// reaches the receiver exactly once, under one delivery id. The receiver answers at once, so nothing is retried and a second send of any
/// id could only come from two workers leasing the same delivery.
async fn three_servers_deliver_each_event_once(database_url: String) {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let hits = hits.clone();
            move |headers: HeaderMap, body: String| {
                let hits = hits.clone();
                async move {
                    hits.lock().expect("lock").push(Hit { headers, body });
                    (StatusCode::OK, "thanks")
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServeProcess::start(&database_url, data_dir.path()).await);
    }
    let admin = model_ledger::auth::dev::mint_token(
        data_dir.path(),
        "admin",
        &["ml-admins".to_string()],
        Duration::from_secs(3600),
        model_ledger::auth::PrincipalKind::User,
    )
    .expect("token");
    let client = reqwest::Client::new();
    let post = |url: String, body: Value| {
        let (client, admin) = (client.clone(), admin.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, hook) = post(
        format!("{}{HOOKS}", servers[0].url),
        json!({"name": "three", "url": hook_url,
               "events": ["registered_model.created", "model_version.created",
                          "ledger.checkpoint.created"],
               "secret": SECRET}),
    )
    .await;
    assert_eq!(status, 200, "{hook:?}");
    // Three models, one per server, then versions written round-robin through every server.
    const MODELS: usize = 3;
    const VERSIONS_EACH: usize = 10;
    for (i, server) in servers.iter().enumerate() {
        let (status, body) = post(
            format!("{}/api/v1/models", server.url),
            json!({"name": format!("three-{i}")}),
        )
        .await;
        assert_eq!(status, 201, "{body:?}");
    }
    for n in 0..MODELS * VERSIONS_EACH {
        let server = &servers[n % servers.len()];
        let (status, body) = post(
            format!("{}/api/v1/models/three-{}/versions", server.url, n % MODELS),
            json!({"source": format!("s3://bucket/three/{n}")}),
        )
        .await;
        assert_eq!(status, 201, "{body:?}");
    }
    // Checkpoints are written to the shared database, as `audit checkpoint` does: all three
    // workers see them at once and race to fan them out.
    const CHECKPOINTS: usize = 2;
    {
        use model_ledger::reports::checkpoint::{load_or_create_key, make_checkpoint};
        let store = model_ledger::store::connect(&database_url, 2)
            .await
            .expect("store");
        let key = load_or_create_key(data_dir.path()).expect("checkpoint key");
        for _ in 0..CHECKPOINTS {
            make_checkpoint(store.as_ref(), &key, "model-ledger")
                .await
                .expect("checkpoint");
        }
    }
    let expected = MODELS + MODELS * VERSIONS_EACH + CHECKPOINTS;
    for _ in 0..300 {
        if hits.lock().expect("lock").len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Leave time for a duplicate to show up, had two workers taken the same delivery.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = hits.lock().expect("lock").clone();
    let mut per_id: std::collections::BTreeMap<String, usize> = Default::default();
    let mut per_event: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for h in &hits {
        assert_signed(h);
        let id = h
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .expect("a delivery id")
            .to_string();
        *per_id.entry(id).or_default() += 1;
        let body: Value = serde_json::from_str(&h.body).expect("json body");
        // A model's event by its name and version, a checkpoint by its id.
        let event = (
            body["data"]["name"]
                .as_str()
                .or(body["data"]["id"].as_str())
                .unwrap_or_default()
                .to_string(),
            body["data"]["version"].as_str().unwrap_or("-").to_string(),
        );
        *per_event.entry(event).or_default() += 1;
    }
    assert_eq!(per_id.len(), expected, "one delivery id per event");
    assert!(
        per_id.values().all(|n| *n == 1),
        "a delivery id was sent more than once: {per_id:?}"
    );
    assert_eq!(per_event.len(), expected, "{per_event:?}");
    assert!(per_event.values().all(|n| *n == 1), "{per_event:?}");
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_postgres_database_deliver_each_event_once() {
    three_servers_deliver_each_event_once(crate::helpers::fresh_pg_database().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_on_one_sqlite_database_deliver_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/ledger.db", dir.path().display());
    three_servers_deliver_each_event_once(url).await;
}
