//! `model-ledger serve` as a process, the way people run it: output piped into `tee`, stopped
//! with Ctrl-C, with an event-stream client still connected. Checks that it stops promptly,
//! that its log has no colour codes when it is not a terminal, and that every request gets an
//! access line.

use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

/// A shell pipeline (`bash -c "… | tee …"`) in a process group of its own, so a signal to the
/// group reaches the server and `tee` together, as Ctrl-C in a terminal does.
struct Pipeline(Child);

impl Pipeline {
    fn interrupt(&self) {
        let group = format!("-{}", self.0.id());
        let status = Process::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGINT to the process group");
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Process::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn token(data_dir: &std::path::Path) -> String {
    let out = Process::new(BIN)
        .args([
            "token",
            "--sub",
            "alice",
            "--group",
            "ml-admins",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .expect("token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_under_tee_with_an_event_stream_open_stops_within_seconds() {
    use std::os::unix::process::CommandExt as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let log = dir.path().join("server.log");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let script = format!(
        "'{BIN}' serve --listen 127.0.0.1:{port} --data-dir '{}' --policies '{}' 2>&1 | tee '{}'",
        data_dir.display(),
        repo_path("policies").display(),
        log.display()
    );
    let pipeline = Pipeline(
        Process::new("bash")
            .args(["-c", &script])
            .env_remove("MODEL_LEDGER_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the pipeline"),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token(&data_dir);
    let created = client
        .post(format!("{url}/api/v1/models"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "shutdown-demo"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let read = client
        .get(format!("{url}/api/v1/models/shutdown-demo"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let request_id = read
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("a request id")
        .to_owned();
    let stream = client
        .get(format!("{url}/api/v1/events/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("event stream");
    assert_eq!(stream.status(), 200);

    let started = Instant::now();
    pipeline.interrupt();
    let mut pipeline = pipeline;
    loop {
        if pipeline.0.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running {:?} after Ctrl-C",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    // The pipeline ends with its last process; the server is gone too, not merely detached.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after the pipeline ended"
    );

    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a piped log:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no access line for {request_id}:\n{text}"));
    for field in [
        "INFO",
        "method=GET",
        "route=/api/v1/models/{name}",
        "status=200",
        "latency_ms=",
        "principal=alice",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(
        !line.contains("shutdown-demo"),
        "the route template, not the path: {line}"
    );
}

/// A request still in flight at shutdown (an upload that keeps trickling in) is cut after
/// `--shutdown-timeout`, instead of keeping the process alive for as long as it lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_request_that_never_ends() {
    use std::io::Write as _;

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = Process::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--shutdown-timeout", "1s", "--data-dir"])
        .arg(dir.path())
        .arg("--policies")
        .arg(repo_path("policies"))
        .env_remove("MODEL_LEDGER_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token(dir.path());
    let mut upload = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        upload,
        "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    )
    .expect("send the head");
    let trickle = std::thread::spawn(move || {
        // One byte every 100 ms: never silent long enough for --body-read-timeout.
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if upload.write_all(b" ").is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = Process::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    loop {
        if server.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(4) {
            let _ = server.kill();
            panic!("still running {:?} after Ctrl-C", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = trickle.join();
}
