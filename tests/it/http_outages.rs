//! Issue 15, "Governance without holes": failing fast while PostgreSQL is down. A server that
//! waits out its pool's timeout on every request during an outage stalls its callers and
//! misleads its load balancer, so the test stops a real database under a running server and
//! times /readyz, the refusals and the recovery. The database is a cluster of the test's own
//! ([`PrivatePg`]), because stopping the machine's shared one would fail every other test.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::http_hardening::MLFLOW;

// ---------------------------------------------------------------------------------------------
// Item 17: while PostgreSQL is down, /readyz says so within a second, requests fail fast with
// Retry-After, and everything recovers within a second of the database being back.

/// A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` on a free port, socket in its
/// own directory), so stopping it cannot disturb the machine's shared service. Stopped when
/// dropped; the directory goes with the temp dir.
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    /// initdb and postgres refuse to run as root; as root the commands run as `postgres`.
    as_postgres: bool,
}

impl PrivatePg {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::Builder::new()
            .prefix("ml-private-pg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sock")).expect("socket dir");
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the private cluster's directory");
        }
        let pg = PrivatePg {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.ctl_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let output = command.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().join("sock").display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn ctl_stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        // Best effort: it may be stopped already.
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
    }
}

async fn timed_readyz(app: &TestApp) -> (u16, Value, Duration) {
    let start = Instant::now();
    let r = app.request(Method::GET, "/readyz", None, None).await;
    (r.status, r.body, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_fail_fast_and_recover_within_a_second() {
    let pg = PrivatePg::start();
    let url = pg.url();
    let app = crate::helpers::spawn_app_on(
        Backend::Postgres,
        Some(&url),
        &["--db-acquire-timeout", "1s"],
    )
    .await;
    let admin = app.admin();
    app.create_model("kept").await;
    let (status, body, took) = timed_readyz(&app).await;
    assert_eq!(status, 200, "{body:?}");
    assert!(took < Duration::from_secs(1), "readyz took {took:?}");

    pg.ctl_stop();
    // /readyz runs its own short check: not ready at once, answered within a second.
    let (status, body, took) = timed_readyz(&app).await;
    assert_eq!(status, 503, "{body:?}");
    assert_eq!(body["database"], "unreachable");
    assert!(took < Duration::from_secs(1), "readyz took {took:?}");
    // The background check flags the outage; requests then fail fast with Retry-After.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..3 {
        let start = Instant::now();
        let read = app.get("/api/v1/models", &admin).await;
        assert_eq!((read.status, read.code()), (503, "TEMPORARILY_UNAVAILABLE"));
        assert!(read.headers.get("retry-after").is_some());
        let write = app
            .post("/api/v1/models", &admin, json!({"name": "refused"}))
            .await;
        assert_eq!(
            (write.status, write.code()),
            (503, "TEMPORARILY_UNAVAILABLE")
        );
        let mlflow = app
            .get(&format!("{MLFLOW}/registered-models/search"), &admin)
            .await;
        assert_eq!(
            (mlflow.status, mlflow.code()),
            (503, "TEMPORARILY_UNAVAILABLE")
        );
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "three refusals took {took:?}"
        );
        let (status, _, took) = timed_readyz(&app).await;
        assert_eq!(status, 503);
        assert!(took < Duration::from_secs(1), "readyz took {took:?}");
    }
    let health = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);

    pg.ctl_start();
    let back = Instant::now();
    loop {
        let (status, _, _) = timed_readyz(&app).await;
        let read = app.get("/api/v1/models", &admin).await;
        if status == 200 && read.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not recovered {:?} after the database came back: readyz {status}, read {} {:?}",
            back.elapsed(),
            read.status,
            read.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The write acknowledged before the outage is there; the refused ones are not.
    let kept = app.get("/api/v1/models/kept", &admin).await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    let refused = app.get("/api/v1/models/refused", &admin).await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    let write = app
        .post("/api/v1/models", &admin, json!({"name": "after"}))
        .await;
    assert_eq!(write.status, 201, "{:?}", write.body);
}
