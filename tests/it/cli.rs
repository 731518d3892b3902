//! The command line as a user meets it: how the binary frames its answers and what its errors
//! say. Every test runs the real binary.

use std::process::{Command as Process, Output, Stdio};

use crate::helpers::{Backend, TestApp, repo_path, spawn_app};

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

fn run(args: &[&str]) -> Output {
    Process::new(BIN)
        .args(args)
        .env_remove("MODEL_LEDGER_TOKEN")
        .output()
        .expect("the model-ledger binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A SQLite registry with one model, so every report has something to say.
async fn app_with_a_model() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    app.create_model("cli-model").await;
    app
}

#[test]
fn policy_test_output_ends_with_a_newline() {
    let data = tempfile::tempdir().expect("tempdir");
    let cases = repo_path("policies/tests/default_policies.json");
    let policies = repo_path("policies");
    let out = run(&[
        "policy",
        "test",
        &cases.display().to_string(),
        "--policies",
        &policies.display().to_string(),
        "--data-dir",
        &data.path().display().to_string(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(" failed (policy set "), "{stdout}");
    assert!(stdout.ends_with(")\n"), "{stdout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_end_with_a_newline() {
    let app = app_with_a_model().await;
    let db = app.database_url.as_str();
    let policies = repo_path("policies").display().to_string();
    let commands: [&[&str]; 4] = [
        &["audit", "report", "stages", "--database-url", db],
        &[
            "audit",
            "state",
            "cli-model",
            "--as-of",
            "1",
            "--database-url",
            db,
        ],
        &["audit", "export", "--format", "json", "--database-url", db],
        &[
            "policy",
            "replay",
            "--policies",
            &policies,
            "--database-url",
            db,
        ],
    ];
    for args in commands {
        let out = run(args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let value: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {stdout:?}"));
        assert!(!value.is_null(), "{args:?}");
        assert!(
            stdout.ends_with("}\n") || stdout.ends_with("]\n"),
            "{args:?}: {stdout:?}"
        );
    }
}

#[test]
fn push_of_a_missing_directory_names_it() {
    let missing = "/nonexistent/model-ledger-cli-test";
    let out = run(&[
        "push",
        "m",
        missing,
        // Nothing listens here: the directory must be checked before any request is made.
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "unused",
        "--no-progress",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(missing), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_says_how_to_give_one() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("model.bin"), b"weights").expect("write");
    let dir_arg = dir.path().display().to_string();
    let uri = "models:/m/1";
    let commands: [&[&str]; 3] = [
        &["push", "m", &dir_arg, "--server", &app.url, "--no-progress"],
        &["pull", uri, &dir_arg, "--server", &app.url, "--no-progress"],
        &["verify", uri, "--server", &app.url],
    ];
    for args in commands {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("401"), "{args:?}: {stderr}");
        assert!(stderr.contains("--token"), "{args:?}: {stderr}");
        assert!(stderr.contains("MODEL_LEDGER_TOKEN"), "{args:?}: {stderr}");
    }
    // With a token the same push goes through, so the hint is only about the missing token.
    let token = app.admin();
    let out = run(&[
        "push",
        "m",
        &dir_arg,
        "--server",
        &app.url,
        "--token",
        &token,
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n");
}

/// Runs `args` with stdout a pipe whose reading end is already closed, as `… | head` leaves it
/// once `head` has exited.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Process::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the model-ledger binary runs");
    // Closed before the child has opened its store, so its first write meets EPIPE.
    drop(child.stdout.take());
    child.wait_with_output().expect("the binary exits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_reports_quietly() {
    let app = app_with_a_model().await;
    let db = app.database_url.as_str();
    let commands: [&[&str]; 3] = [
        &["audit", "report", "stages", "--database-url", db],
        &[
            "audit",
            "report",
            "stages",
            "--format",
            "csv",
            "--database-url",
            db,
        ],
        &["audit", "export", "--database-url", db],
    ];
    for args in commands {
        let out = run_into_closed_pipe(args);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_shipped_binary_has_no_fault_injection_flag_unless_built_for_it() {
    let out = run(&["serve", "--relay-crash-after-publish", "1", "--help"]);
    let stderr = text(&out.stderr);
    if cfg!(feature = "fault-injection") {
        assert!(out.status.success(), "{stderr}");
    } else {
        assert!(!out.status.success());
        assert!(
            stderr.contains("unexpected argument '--relay-crash-after-publish'"),
            "{stderr}"
        );
    }
}

/// A misspelt key or a section in `--config` stops every command before it does anything,
/// naming the key and the option it was probably meant to be; a correct file still applies.
#[test]
fn config_file_typos_name_the_key_and_the_nearest_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ledger.toml");
    let config_arg = config.display().to_string();
    let cases = [
        (
            "listen_adress = \"127.0.0.1:1\"\n",
            ["`listen_adress`", "`listen`"],
        ),
        (
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            ["`[server]`", "top-level"],
        ),
    ];
    for (text_of_file, expected) in cases {
        std::fs::write(&config, text_of_file).expect("write config");
        let out = run(&["--config", &config_arg, "serve", "--help"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text_of_file}: {stderr}");
        for needle in expected {
            assert!(stderr.contains(needle), "{text_of_file}: {stderr}");
        }
        assert!(stderr.contains(&config_arg), "names the file: {stderr}");
    }
    // A valid key is applied: it shows as the environment value in `--help`.
    std::fs::write(&config, "oidc_groups_claim = \"realm_access.roles\"\n").expect("write");
    let out = run(&["--config", &config_arg, "serve", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("realm_access.roles"));
}
