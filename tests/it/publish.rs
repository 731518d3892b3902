//! Event publishing against a real NATS JetStream (127.0.0.1:4222, a unique stream and subject
//! prefix per test so tests run in parallel) and the SSE event stream. Fault tests run their own
//! `nats-server` on a free port so they can stop and restart it. NATS being down fails the
//! tests; nothing is skipped.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use model_ledger::publish::NatsSettings;
use model_ledger::publish::subject::encode_model;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, enc, spawn_app_on, spawn_app_with};

const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A unique stream and subject prefix on one NATS server.
struct Target {
    url: String,
    stream: String,
    prefix: String,
}

impl Target {
    fn new(url: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Target {
            url: url.into(),
            stream: format!("T_{id}"),
            prefix: format!("t.{id}"),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--nats-url".into(),
            self.url.clone(),
            "--nats-stream".into(),
            self.stream.clone(),
            "--nats-subject-prefix".into(),
            self.prefix.clone(),
        ]
    }

    fn settings(&self) -> NatsSettings {
        NatsSettings::local(&self.url, &self.stream, &self.prefix)
    }

    async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("NATS at {} is required and not reachable: {e}", self.url));
        jetstream::new(client)
    }

    /// Every message in the stream, oldest first: (subject, Nats-Msg-Id, CloudEvent).
    async fn messages(&self) -> Vec<(String, String, Value)> {
        let js = self.jetstream().await;
        let mut stream = js.get_stream(&self.stream).await.expect("stream exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for seq in state.first_sequence..=state.last_sequence {
            let m = stream.get_raw_message(seq).await.expect("message");
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            let ce: Value = serde_json::from_slice(&m.payload).expect("JSON payload");
            out.push((m.subject.to_string(), id, ce));
        }
        out
    }

    async fn delete(&self) {
        let _ = self.jetstream().await.delete_stream(&self.stream).await;
    }
}

async fn spawn_publishing(backend: Backend, target: &Target, db: Option<&str>) -> TestApp {
    let args = target.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match db {
        None => spawn_app_with(backend, &args).await,
        Some(url) => spawn_app_on(backend, Some(url), &args).await,
    }
}

/// Waits until the outbox of `app`'s database is empty.
async fn wait_drained(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (pending, _) = app.store.outbox_lag().await.expect("outbox lag");
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events still unpublished after {within:?}; relay: {}",
            app.get("/readyz", "").await.body["relay"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the stream holds events 1..=n, each once, in position order, with matching ids.
fn assert_exactly_once_in_order(messages: &[(String, String, Value)], n: i64) {
    let positions: Vec<i64> = messages
        .iter()
        .map(|(_, _, ce)| ce["data"]["position"].as_i64().expect("position"))
        .collect();
    assert_eq!(
        positions,
        (1..=n).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    let ids: HashSet<&str> = messages.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len() as i64, n, "distinct Nats-Msg-Id per event");
    for (_, id, ce) in messages {
        assert_eq!(ce["id"].as_str(), Some(id.as_str()));
        assert_eq!(ce["data"]["event_id"].as_str(), Some(id.as_str()));
    }
}

async fn set_tags(app: &TestApp, model: &str, range: std::ops::Range<usize>) {
    let admin = app.admin();
    for i in range {
        let r = app
            .put(
                &format!("/api/v1/models/{}/tags/k{i}", enc(model)),
                &admin,
                json!({"value": format!("v{i}")}),
            )
            .await;
        assert_eq!(r.status, 200, "write {i}: {:?}", r.body);
    }
}

both_backends!(
    every_event_is_published_once_in_order_as_a_cloudevent,
    |backend: Backend| async move {
        let target = Target::new(SHARED_NATS);
        let app = spawn_publishing(backend, &target, None).await;
        let admin = app.admin();
        let weird = "a.b *>c";
        for model in ["churn", weird] {
            app.create_model(model).await;
            app.create_version(model).await;
            app.create_version(model).await;
            let r = app
                .post(
                    &format!("/api/v1/models/{}/versions/2/stage", enc(model)),
                    &admin,
                    json!({"stage": "Staging"}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        let n = app.event_count().await;
        wait_drained(&app, Duration::from_secs(20)).await;
        let messages = target.messages().await;
        assert_exactly_once_in_order(&messages, n);

        let (subject, _, ce) = messages
            .iter()
            .find(|(_, _, ce)| {
                ce["subject"] == weird && ce["data"]["event_type"] == "StageTransitioned"
            })
            .expect("the weird model's stage change");
        assert_eq!(
            subject,
            &format!("{}.a~2Eb~20~2A~3Ec.StageTransitioned", target.prefix)
        );
        assert_eq!(encode_model(weird), "a~2Eb~20~2A~3Ec");
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "io.model-ledger.StageTransitioned");
        assert_eq!(ce["source"], "/model-ledger");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert!(ce["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(ce["data"]["payload"]["to"], "Staging");
        assert_eq!(ce["data"]["hash"].as_str().map(str::len), Some(64));

        let ready = app.get("/readyz", "").await.body;
        assert_eq!(ready["relay"]["connected"], true, "{ready}");
        assert_eq!(ready["relay"]["leader"], true);
        assert_eq!(ready["relay"]["duplicates"], 0);
        assert_eq!(ready["outbox"]["pending"], 0);
        target.delete().await;
    }
);

both_backends!(
    signed_checkpoints_are_published_after_the_events_they_cover,
    |backend: Backend| async move {
        use model_ledger::reports::checkpoint::{Checkpoint, load_or_create_key, make_checkpoint};
        let target = Target::new(SHARED_NATS);
        let app = spawn_publishing(backend, &target, None).await;
        app.create_model("ckpt").await;
        set_tags(&app, "ckpt", 0..3).await;
        let key = load_or_create_key(app.data_dir.path()).expect("checkpoint key");
        let record = make_checkpoint(app.store.as_ref(), &key, "model-ledger")
            .await
            .expect("checkpoint");
        assert_eq!(record.position, app.event_count().await);
        set_tags(&app, "ckpt", 3..5).await;
        let n = app.event_count().await;

        let deadline = Instant::now() + Duration::from_secs(20);
        let messages = loop {
            wait_drained(&app, Duration::from_secs(20)).await;
            let messages = target.messages().await;
            if messages.len() as i64 > n {
                break messages;
            }
            assert!(
                Instant::now() < deadline,
                "the checkpoint was not published"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let checkpoint_subject = format!("{}.~checkpoint", target.prefix);
        let (checkpoints, events): (Vec<_>, Vec<_>) = messages
            .iter()
            .enumerate()
            .partition(|(_, (subject, _, _))| *subject == checkpoint_subject);
        assert_eq!(checkpoints.len(), 1, "published exactly once: {messages:?}");
        let events: Vec<_> = events.into_iter().map(|(_, m)| m.clone()).collect();
        assert_exactly_once_in_order(&events, n);

        let (index, (_, id, ce)) = checkpoints[0];
        assert_eq!(id, &record.id, "deduplicated by the checkpoint id");
        assert_eq!(ce["type"], "io.model-ledger.Checkpoint");
        assert_eq!(ce["data"]["position"], record.position);
        // It follows the event at its position, whose hash it signs.
        let covered = messages[..index]
            .iter()
            .find(|(_, _, e)| e["data"]["position"] == record.position)
            .expect("the covered event precedes the checkpoint");
        assert_eq!(ce["data"]["hash"], covered.2["data"]["hash"]);
        let note = ce["data"]["note"].as_str().expect("note");
        let parsed = Checkpoint::parse(note, Some(&key.verifying_key())).expect("signature");
        assert_eq!(parsed.position, record.position);
        assert_eq!(parsed.hash, record.hash);
        target.delete().await;
    }
);

/// A `nats-server -js` of the test's own, on a free port, with its store in a temp dir.
struct OwnNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut nats = OwnNats {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        nats.restart().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server cleanly (SIGTERM), so its file store is flushed.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_nats_outage_are_all_delivered_in_order_once() {
    let mut nats = OwnNats::start().await;
    let target = Target::new(&nats.url());
    let app = spawn_publishing(Backend::Postgres, &target, None).await;
    app.create_model("outage").await;
    wait_drained(&app, Duration::from_secs(20)).await;

    nats.stop();
    set_tags(&app, "outage", 0..500).await;
    let ready = app.get("/readyz", "").await.body;
    assert_eq!(ready["outbox"]["pending"], 500, "{ready}");
    assert_eq!(ready["relay"]["connected"], false, "{ready}");

    nats.restart().await;
    wait_drained(&app, Duration::from_secs(60)).await;
    let n = app.event_count().await;
    assert_eq!(n, 501);
    assert_exactly_once_in_order(&target.messages().await, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_died_between_publish_and_mark_causes_no_duplicate() {
    let target = Target::new(SHARED_NATS);
    // Writer without a relay: every event stays pending.
    let writer = spawn_app_with(Backend::Postgres, &[]).await;
    writer.create_model("crash").await;
    set_tags(&writer, "crash", 0..19).await;
    let pending = writer.store.outbox_pending(1000).await.expect("pending");
    assert_eq!(pending.len(), 20);

    // The "crashed" relay: published and acknowledged, never marked.
    let publisher = model_ledger::publish::Publisher::connect(target.settings(), None)
        .await
        .expect("connect");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !publisher.is_connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("NATS at 127.0.0.1:4222 is required");
    publisher.ensure_stream().await.expect("stream");
    for event in &pending {
        assert!(!publisher.publish(event).await.expect("publish").duplicate);
    }

    // A new relay on the same database publishes them again; JetStream drops the copies.
    let relay = spawn_publishing(Backend::Postgres, &target, Some(&writer.database_url)).await;
    wait_drained(&relay, Duration::from_secs(20)).await;
    set_tags(&relay, "crash", 19..24).await;
    wait_drained(&relay, Duration::from_secs(20)).await;
    let status = relay.get("/readyz", "").await.body["relay"].clone();
    assert_eq!(status["duplicates"], 20, "{status}");
    assert_eq!(status["published"], 25, "{status}");
    assert_exactly_once_in_order(&target.messages().await, 25);

    // What a consumer sees: each event exactly once.
    let js = target.jetstream().await;
    let stream = js.get_stream(&target.stream).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("consumer");
    let received: Vec<i64> = consumer
        .messages()
        .await
        .expect("messages")
        .take(25)
        .map(|m| {
            let m = m.expect("message");
            let ce: Value = serde_json::from_slice(&m.payload).expect("json");
            ce["data"]["position"].as_i64().expect("position")
        })
        .collect()
        .await;
    assert_eq!(received, (1..=25).collect::<Vec<_>>());
    target.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_publish_each_event_once_and_fail_over() {
    let target = Target::new(SHARED_NATS);
    let first = spawn_publishing(Backend::Postgres, &target, None).await;
    let second = spawn_publishing(Backend::Postgres, &target, Some(&first.database_url)).await;
    first.create_model("left").await;
    second.create_model("right").await;
    tokio::join!(
        set_tags(&first, "left", 0..40),
        set_tags(&second, "right", 0..40)
    );
    wait_drained(&first, Duration::from_secs(30)).await;

    let a = first.get("/readyz", "").await.body["relay"].clone();
    let b = second.get("/readyz", "").await.body["relay"].clone();
    assert_eq!(
        [a["leader"].as_bool(), b["leader"].as_bool()]
            .iter()
            .filter(|l| **l == Some(true))
            .count(),
        1,
        "exactly one leader: {a} {b}"
    );
    let published = a["published"].as_u64().unwrap_or(0) + b["published"].as_u64().unwrap_or(0);
    assert_eq!(published, 82, "each event published once: {a} {b}");
    assert_eq!(a["duplicates"], 0);
    assert_eq!(b["duplicates"], 0);

    // The leader goes away; the other takes over and nothing is lost.
    let (leader, survivor) = if a["leader"] == true {
        (first, second)
    } else {
        (second, first)
    };
    drop(leader);
    set_tags(&survivor, "right", 40..60).await;
    wait_drained(&survivor, Duration::from_secs(30)).await;
    assert_eq!(
        survivor.get("/readyz", "").await.body["relay"]["leader"],
        true
    );
    assert_exactly_once_in_order(&target.messages().await, 102);
    target.delete().await;
}

/// Reads `n` SSE events (id, event, data) from a streaming response.
async fn read_sse(response: reqwest::Response, n: usize) -> Vec<(i64, String, Value)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived: {events:?}", events.len()))
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                events.push((id, kind, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
    }
    events
}

both_backends!(
    sse_stream_resumes_filters_and_authorizes,
    |backend: Backend| async move {
        let app = spawn_app_with(backend, &[]).await;
        let admin = app.admin();
        for model in ["m1", "m2"] {
            app.create_model(model).await;
            app.create_version(model).await;
        }
        let url = format!("{}/api/v1/events/stream", app.url);
        let open = |query: &str, token: Option<String>, last_id: Option<&str>| {
            let mut req = app.client.get(format!("{url}{query}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(id) = last_id {
                req = req.header("Last-Event-ID", id);
            }
            req.send()
        };

        let all = open("", Some(admin.clone()), None).await.expect("open");
        assert_eq!(all.status(), 200);
        assert!(
            all.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/event-stream")
        );
        let events = read_sse(all, 4).await;
        assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(events[0].1, "ModelCreated");
        assert_eq!(events[1].2["event_type"], "VersionCreated");
        assert_eq!(events[1].2["position"], 2);

        let resumed = open("?after=1", Some(admin.clone()), Some("3"))
            .await
            .expect("open");
        assert_eq!(
            read_sse(resumed, 1).await[0].0,
            4,
            "Last-Event-ID wins over ?after"
        );
        let after = open("?after=2", Some(admin.clone()), None)
            .await
            .expect("open");
        assert_eq!(read_sse(after, 1).await[0].0, 3);

        // Live: a filtered stream sees only matching events, as they commit.
        let filtered = open(
            "?model=m2&type=VersionCreated,ModelTagSet",
            Some(app.token("r", &["ml-readers"])),
            None,
        )
        .await
        .expect("open");
        assert_eq!(filtered.status(), 200);
        let live = tokio::spawn(read_sse(filtered, 2));
        tokio::time::sleep(Duration::from_millis(200)).await;
        set_tags(&app, "m1", 0..1).await;
        set_tags(&app, "m2", 0..1).await;
        let got = live.await.expect("reader");
        assert_eq!(
            got.iter().map(|e| (e.0, e.1.as_str())).collect::<Vec<_>>(),
            [(4, "VersionCreated"), (6, "ModelTagSet")]
        );

        let anonymous = open("", None, None).await.expect("open");
        assert_eq!(anonymous.status(), 401);
        let reader_whole_log = open("", Some(app.token("r", &["ml-readers"])), None)
            .await
            .expect("open");
        assert_eq!(reader_whole_log.status(), 403);
        let nobody = open("?model=m1", Some(app.token("n", &[])), None)
            .await
            .expect("open");
        assert_eq!(nobody.status(), 403);
        let bad_type = open("?type=Nope", Some(admin.clone()), None)
            .await
            .expect("open");
        assert_eq!(bad_type.status(), 400);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Follows `models:/svc/Staging`: promoting to Production needs a verified artifact (policy
// `production-requires-verified-artifact`), which this test cannot produce; the watcher's code
// path is the same for every stage.
async fn watch_swaps_to_the_new_version_on_a_stage_change() {
    let target = Target::new(SHARED_NATS);
    let app = spawn_publishing(Backend::Sqlite, &target, None).await;
    let rm = app.release_manager();
    app.create_model("svc").await;
    app.create_version("svc").await;
    app.create_version("svc").await;
    let promote = |v: u64| {
        let app = &app;
        let rm = rm.clone();
        async move {
            let r = app
                .post(
                    &format!("/api/v1/models/svc/versions/{v}/stage"),
                    &rm,
                    json!({"stage": "Staging", "archive_existing_versions": true}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    };
    promote(1).await;
    wait_drained(&app, Duration::from_secs(20)).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let watch_url = format!("http://{}/current", listener.local_addr().expect("addr"));
    let config = model_ledger::publish::watch::WatchConfig {
        registry_url: app.url.clone(),
        token: Some(app.token("server", &["ml-readers"])),
        model: "svc".into(),
        target: "Staging".into(),
        nats: Some(target.settings()),
        download_dir: None,
        hook: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(model_ledger::publish::watch::run(config, listener, async {
        let _ = stopped.await;
    }));
    let current = || async {
        match app.client.get(&watch_url).send().await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    let wait_for = |version: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let c = current().await;
            if c["version"] == version {
                return c;
            }
            assert!(Instant::now() < deadline, "watcher still serves {c}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(wait_for(1).await["source"], "s3://bucket/svc");
    promote(2).await;
    let swapped = wait_for(2).await;
    assert_eq!(swapped["swaps"], 1, "{swapped}");
    assert!(swapped["position"].as_i64().unwrap_or(0) > 0);
    let _ = stop.send(());
    let _ = watcher.await;
    target.delete().await;
}

// The crash hook exists only with the test-only `fault-injection` feature (scripts/test-all.sh
// enables it); without it the binary has no `--relay-crash-after-publish`.
#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_between_publish_and_mark_causes_no_duplicate() {
    let target = Target::new(SHARED_NATS);
    let writer = spawn_app_with(Backend::Postgres, &[]).await;
    writer.create_model("killed").await;
    set_tags(&writer, "killed", 0..9).await;

    // A real server process whose relay aborts right after the 5th acknowledgement, before it
    // marks anything: events 1–5 are in the stream and still pending in the outbox.
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "serve".to_string(),
        "--database-url".into(),
        writer.database_url.clone(),
        "--data-dir".into(),
        data.path().display().to_string(),
        "--dev-auth".into(),
        "--policies".into(),
        crate::helpers::repo_path("policies").display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--relay-crash-after-publish".into(),
        "5".into(),
    ];
    args.extend(target.args());
    let mut child = Command::new(env!("CARGO_BIN_EXE_model-ledger"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the relay process did not crash");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "aborted: {status:?}");
    assert_eq!(writer.store.outbox_lag().await.expect("lag").0, 10);
    assert_eq!(target.messages().await.len(), 5);

    // A new relay re-publishes 1–5 (dropped by JetStream as duplicates) and then 6–10.
    let relay = spawn_publishing(Backend::Postgres, &target, Some(&writer.database_url)).await;
    wait_drained(&relay, Duration::from_secs(20)).await;
    let status = relay.get("/readyz", "").await.body["relay"].clone();
    assert_eq!(status["duplicates"], 5, "{status}");
    assert_exactly_once_in_order(&target.messages().await, 10);
    target.delete().await;
}
