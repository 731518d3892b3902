//! The `push`, `pull` and `verify` commands against a spawned server. The CLI is how people
//! and CI move model files without writing HTTP calls, so the test runs the built binary end
//! to end, including the failure that matters most: a file damaged in the store is named,
//! and `pull` leaves no mismatching copy behind.

use serde_json::json;

use crate::artifacts::{local_dir, model_files};
use crate::helpers::{Backend, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_push_pull_verify() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin();
    let rm = app.release_manager();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("model");
    std::fs::create_dir_all(src.join("data")).expect("mkdir");
    let files = model_files();
    for (path, bytes) in &files {
        std::fs::write(src.join(path), bytes).expect("write");
    }

    // The model does not exist yet: push creates it.
    let out = app
        .cli(&admin, &["push", "pushed", src.to_str().expect("utf-8")])
        .await;
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let out = app
        .cli(
            &admin,
            &[
                "push",
                "pushed",
                src.to_str().expect("utf-8"),
                "--no-progress",
            ],
        )
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");

    let out = app.cli(&admin, &["verify", "models:/pushed/1"]).await;
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("verified pushed/1"));

    let promoted = app
        .post(
            "/api/v1/models/pushed/versions/1/stage",
            &rm,
            json!({"stage": "Production"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{:?}", promoted.body);
    let dest = work.path().join("pulled");
    let out = app
        .cli(
            &admin,
            &[
                "pull",
                "models:/pushed/Production",
                dest.to_str().expect("utf-8"),
            ],
        )
        .await;
    assert!(
        out.status.success(),
        "pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, bytes) in &files {
        assert_eq!(
            &std::fs::read(dest.join(path)).expect("pulled file"),
            bytes,
            "{path}"
        );
    }

    // Damage version 2 in the store: verify and pull both fail, naming the file.
    let v2 = app.get("/api/v1/models/pushed/versions/2", &admin).await;
    let dir = local_dir(
        &app,
        v2.body["artifact"]["location"].as_str().expect("location"),
    );
    std::fs::write(dir.join("MLmodel"), b"flavors: {}\n").expect("tamper");
    let out = app.cli(&admin, &["verify", "models:/pushed/2"]).await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("NOT verified") && stdout.contains("MLmodel"),
        "{stdout}"
    );
    let dest2 = work.path().join("pulled2");
    let out = app
        .cli(
            &admin,
            &["pull", "models:/pushed/2", dest2.to_str().expect("utf-8")],
        )
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MLmodel"));
    assert!(
        !dest2.join("MLmodel").exists(),
        "a mismatching file is not left behind"
    );
}
