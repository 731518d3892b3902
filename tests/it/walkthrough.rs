//! The README's quick start, run as written: the embedded `serve` (no database URL: SQLite and
//! dev tokens in ./model-ledger-data), then the walkthrough's shell block against it.

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use crate::helpers::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

/// The first ```bash block after the walkthrough heading.
fn walkthrough_script() -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let section = readme
        .split("## Five-minute walkthrough")
        .nth(1)
        .expect("walkthrough section");
    let start = section.find("```bash\n").expect("bash block") + "```bash\n".len();
    let end = section[start..].find("```").expect("end of block");
    section[start..start + end].to_string()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_runs_against_the_embedded_server() {
    let cwd = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // Exactly the README's start, apart from the port and the policies' location (the test does
    // not run from the repository root).
    let server = Server(
        Process::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--policies",
                repo_path("policies").to_str().unwrap(),
            ])
            .current_dir(cwd.path())
            .env_remove("MODEL_LEDGER_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server"),
    );
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "embedded server did not start");
    assert!(
        cwd.path()
            .join("model-ledger-data/model-ledger.db")
            .exists(),
        "embedded store lives in ./model-ledger-data"
    );

    let output = Process::new("bash")
        .args(["-euo", "pipefail", "-c", &walkthrough_script()])
        .current_dir(cwd.path())
        .env("ML", BIN)
        .env("URL", &url)
        .output()
        .expect("run walkthrough");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"stage\":\"Staging\""), "{stdout}");
    assert!(
        stdout.contains("PERMISSION_DENIED"),
        "Production is refused without a verified artifact: {stdout}"
    );
    assert!(
        stdout.contains("\"stage\":\"Production\""),
        "the verified upload reaches Production: {stdout}"
    );
    assert!(stdout.contains("verified churn/2"), "{stdout}");
    assert!(stdout.contains("chain OK"), "{stdout}");
    drop(server);
}
