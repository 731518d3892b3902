//! `model-ledger watch` as a downstream deployment: the real binary follows a stage over the
//! registry's event stream (no NATS), downloads and verifies each new version into a directory,
//! runs its hook, and reports version and digest on `/current`.

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn push(app: &TestApp, weights: &str) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("model.bin"), weights).expect("write");
    let client =
        model_ledger::artifacts::client::Client::new(&app.url, Some(app.admin())).expect("client");
    client
        .push("watched", dir.path(), &Default::default())
        .await
        .expect("push")
}

async fn promote(app: &TestApp, version: u64) {
    let reply = app
        .post(
            &format!("/api/v1/models/watched/versions/{version}/stage"),
            &app.release_manager(),
            json!({"stage": "Staging", "archive_existing_versions": true}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_stage_over_sse_downloads_verifies_and_runs_its_hook() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(push(&app, "weights one").await, 1);
    assert_eq!(push(&app, "weights two").await, 2);
    promote(&app, 1).await;

    let out = tempfile::tempdir().expect("tempdir");
    let hook_log = out.path().join("hook.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let hook = format!(
        "echo \"$MODEL_LEDGER_VERSION $MODEL_LEDGER_DIGEST $MODEL_LEDGER_DIR\" >> '{}'",
        hook_log.display()
    );
    let _watcher = Watcher(
        Process::new(BIN)
            .args(["watch", "models:/watched/Staging", "--server", &app.url])
            .args(["--token", &app.token("deployer", &["ml-readers"])])
            .arg("--dir")
            .arg(out.path().join("versions"))
            .args(["--exec", &hook, "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("MODEL_LEDGER_NATS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watch"),
    );
    let current_url = format!("http://127.0.0.1:{port}/current");
    let wait_for = |version: u64| {
        let client = app.client.clone();
        let url = current_url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let current = match client.get(&url).send().await {
                    Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                if current["version"] == version && current["dir"].is_string() {
                    let expected = format!("/versions/{version}");
                    if current["dir"]
                        .as_str()
                        .is_some_and(|d| d.ends_with(&expected))
                    {
                        return current;
                    }
                }
                assert!(Instant::now() < deadline, "watch still serves {current}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let first = wait_for(1).await;
    assert_eq!(first["via"], "sse", "{first}");
    let digest_1 = first["digest"].as_str().expect("a digest").to_owned();
    let versions = out.path().join("versions");
    assert_eq!(
        std::fs::read_to_string(versions.join("1/model.bin")).expect("downloaded"),
        "weights one"
    );

    promote(&app, 2).await;
    let second = wait_for(2).await;
    assert_eq!(second["swaps"], 1, "{second}");
    assert_ne!(second["digest"], first["digest"]);
    assert!(second["last_error"].is_null(), "{second}");
    assert_eq!(
        std::fs::read_to_string(versions.join("2/model.bin")).expect("downloaded"),
        "weights two"
    );
    let log = std::fs::read_to_string(&hook_log).expect("the hook ran");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].starts_with(&format!("1 {digest_1} ")), "{log}");
    assert!(
        lines[1].starts_with("2 ") && lines[1].ends_with("/versions/2"),
        "{log}"
    );
}

#[test]
fn watch_says_what_it_needs() {
    let run = |args: &[&str]| {
        let out = Process::new(BIN)
            .arg("watch")
            .args(args)
            .output()
            .expect("watch runs");
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let none = run(&[]);
    assert!(none.contains("models:/churn/Production"), "{none}");
    let fixed = run(&["models:/churn/3"]);
    assert!(fixed.contains("fixed version"), "{fixed}");
    let bad = run(&["churn"]);
    assert!(bad.contains("models:/NAME/STAGE"), "{bad}");
}
