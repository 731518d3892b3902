//! migrate-store (SQLite → PostgreSQL) and audit verify against real databases and the binary.

use std::process::Command as Process;

use serde_json::json;

use crate::helpers::{Backend, fresh_pg_database, spawn_app, spawn_permissive};

const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

async fn populate(app: &crate::helpers::TestApp) {
    let admin = app.admin();
    for name in ["a", "b/with slash", "c"] {
        app.create_model(name).await;
        for _ in 0..3 {
            app.create_version(name).await;
        }
    }
    let r = app
        .post(
            "/api/v1/models/a/versions/2/stage",
            &admin,
            json!({"stage": "Production", "archive_existing_versions": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.put(
        "/api/v1/models/a/aliases/champion",
        &admin,
        json!({"version": 3}),
    )
    .await;
    app.delete("/api/v1/models/c", &admin).await;
    app.delete("/api/v1/models/a/versions/1", &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sqlite_to_postgres_with_identical_state() {
    let app = spawn_permissive(Backend::Sqlite).await;
    populate(&app).await;
    let target_url = fresh_pg_database().await;
    let out = Process::new(BIN)
        .args([
            "migrate-store",
            "--from",
            &app.database_url,
            "--to",
            &target_url,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("artifact files were not copied") && stderr.contains("--artifact-store"),
        "migrate-store says what happens to artifact files: {stderr}"
    );
    // A missing SQLite source is refused instead of created empty and "copied".
    let missing = app.data_dir.path().join("no-such.db");
    let refused = Process::new(BIN)
        .args(["migrate-store", "--from"])
        .arg(format!("sqlite://{}", missing.display()))
        .args(["--to", &fresh_pg_database().await])
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        refusal.contains(&missing.display().to_string()),
        "{refusal}"
    );
    assert!(!missing.exists(), "the missing source was created");
    let target = model_ledger::store::connect(&target_url, 2).await.unwrap();
    assert_eq!(
        target.head().await.unwrap(),
        app.store.head().await.unwrap()
    );
    assert_eq!(
        target.projection_dump().await.unwrap(),
        app.store.projection_dump().await.unwrap()
    );
    // A second run refuses to write into a non-empty store.
    let again = Process::new(BIN)
        .args([
            "migrate-store",
            "--from",
            &app.database_url,
            "--to",
            &target_url,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    // The migrated log verifies, and the migrated outbox does not republish history.
    let verify = Process::new(BIN)
        .args(["audit", "verify", "--database-url", &target_url])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(target.outbox_lag().await.unwrap().0, 0);
}

fn verify(url: &str) -> (bool, String) {
    let out = Process::new(BIN)
        .args(["audit", "verify", "--database-url", url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Each kind of tampering is caught and the first bad position named; an untouched log is OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_tampering_on_postgres() {
    use sqlx::Connection;
    let cases = [
        (
            "SET session_replication_role = replica; UPDATE events SET payload = replace(payload, 's3://', 'http://') WHERE position = 3",
            "position 3",
        ),
        (
            "SET session_replication_role = replica; DELETE FROM outbox WHERE position = 4; DELETE FROM events WHERE position = 4",
            "position 5",
        ),
        (
            "SET session_replication_role = replica; UPDATE events SET position = -1 WHERE position = 2; UPDATE events SET position = 2 WHERE position = 3; UPDATE events SET position = 3 WHERE position = -1",
            "position 2",
        ),
        (
            "SET session_replication_role = replica; DELETE FROM outbox WHERE position >= 9; DELETE FROM events WHERE position >= 9",
            "head is position",
        ),
    ];
    for (tamper, expected) in cases {
        let app = spawn_app(Backend::Postgres).await;
        populate_small(&app).await;
        let (ok, output) = verify(&app.database_url);
        assert!(ok, "untouched log verifies: {output}");
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(tamper.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
        let (ok, output) = verify(&app.database_url);
        assert!(!ok, "tampering '{tamper}' must be detected");
        assert!(
            output.contains(expected),
            "'{tamper}' should name {expected}: {output}"
        );
    }
}

async fn populate_small(app: &crate::helpers::TestApp) {
    app.create_model("m").await;
    for _ in 0..9 {
        app.create_version("m").await;
    }
}
