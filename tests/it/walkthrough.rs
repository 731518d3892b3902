//! The README's quick start, run as written: the embedded `serve` (no database URL: SQLite and
//! dev tokens in ./model-ledger-data), then the walkthrough's shell block and its MLflow step
//! (the README's `pip install` line, in a virtual environment under `target/`) against it, and
//! the same commands from a wrong directory, which must fail helpfully and leave nothing.

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use crate::helpers::repo_path;

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

/// The first ```bash block of the README after `marker`.
fn bash_block_after(marker: &str) -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let section = readme
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("README has no '{marker}'"));
    let start = section.find("```bash\n").expect("bash block") + "```bash\n".len();
    let end = section[start..].find("```").expect("end of block");
    section[start..start + end].to_string()
}

/// The walkthrough, then its MLflow step, as one script: the MLflow step uses the
/// walkthrough's `$URL` and `$BOB`, as it does in the reader's shell.
fn walkthrough_script() -> String {
    format!(
        "{}\n{}",
        bash_block_after("## Five-minute walkthrough"),
        bash_block_after("The same registry from an MLflow client")
    )
}

/// A virtual environment for the MLflow step, kept under `target/` between runs (like
/// `scripts/suites/`). Only created here: the packages come from the README's own
/// `pip install` line, which is quick once they are present.
fn mlflow_venv() -> std::path::PathBuf {
    let venv = repo_path("target/mlflow-venv-walkthrough");
    if !venv.join("bin/python").exists() {
        let status = Process::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv {}", venv.display());
    }
    venv
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
    let mut server = server;
    let banner = read_banner(&mut server.0);
    let data_dir_line = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("data dir: "))
        .unwrap_or_else(|| panic!("the banner names the data directory: {banner:?}"));
    assert_eq!(
        std::path::Path::new(data_dir_line),
        cwd.path().join("model-ledger-data").canonicalize().unwrap(),
        "the banner prints the data directory as an absolute path: {banner:?}"
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

    // The walkthrough runs at the repository root; it needs the example model from there.
    std::os::unix::fs::symlink(repo_path("examples"), cwd.path().join("examples"))
        .expect("link examples/");
    let venv = mlflow_venv();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Process::new("bash")
        .args(["-euo", "pipefail", "-c", &walkthrough_script()])
        .current_dir(cwd.path())
        .env("ML", BIN)
        .env("URL", &url)
        .env("PATH", path)
        .env("VIRTUAL_ENV", &venv)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
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
    assert!(
        stdout.contains("approved: churn version 2 is now in Production"),
        "the release manager's approval executes the request: {stdout}"
    );
    assert!(stdout.contains("chain OK"), "{stdout}");
    assert!(
        stdout.contains("[0.779, 0.0139]"),
        "MLflow loads the Production model and it predicts: {stdout}"
    );
    // Nothing is left in the directory it ran in but the server's data.
    let mut left: Vec<String> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["examples", "model-ledger-data"],
        "the walkthrough left files behind"
    );

    // The same commands from a directory that is not the server's: each stops, names where
    // it looked and how to point it elsewhere, and leaves nothing behind.
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        &["token", "--sub", "alice", "--group", "ml-ci"][..],
        &["audit", "verify"],
        &["audit", "public-key"],
    ] {
        let out = Process::new(BIN)
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("MODEL_LEDGER_DATA_DIR")
            .env_remove("MODEL_LEDGER_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail here: {stderr}");
        let looked_in = elsewhere
            .path()
            .canonicalize()
            .unwrap()
            .join("model-ledger-data");
        assert!(
            stderr.contains(&looked_in.display().to_string())
                && stderr.contains("--data-dir")
                && stderr.contains("MODEL_LEDGER_DATA_DIR"),
            "{args:?} names the directory and the options: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left files behind: {left:?}");
    }
    // Pointed at the right directory, `token` works from anywhere.
    let out = Process::new(BIN)
        .args(["token", "--sub", "alice", "--data-dir", data_dir_line])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
}

/// The server's start-up lines on stdout, up to the token hint (the last one it prints).
fn read_banner(child: &mut std::process::Child) -> Vec<String> {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining after the banner, so the server never writes into a closed pipe.
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.is_none() {
                continue;
            }
            let last = line.contains("get a token");
            lines.push(line);
            if last && let Some(tx) = tx.take() {
                let _ = tx.send(std::mem::take(&mut lines));
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(lines);
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server prints its banner")
}
