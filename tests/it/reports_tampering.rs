//! Tamper detection. Compliance reporting is worth only as much as the promise that an edited
//! event log is caught, so these tests edit it behind the server's back (rows in the database
//! with its append-only guards off, a tail removed along with the recorded head, an exported
//! file) and check that `audit verify` fails and names where, with a signed checkpoint
//! catching what the hash chain alone cannot.

use std::process::Command as Process;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};
use crate::reports::{BIN, run};

fn verify_db(url: &str) -> (bool, String) {
    run(&["audit", "verify", "--database-url", url])
}

/// Ten events: a model and nine versions.
async fn ten_events(app: &TestApp) {
    app.create_model("m").await;
    for _ in 0..9 {
        app.create_version("m").await;
    }
    assert_eq!(app.event_count().await, 10);
}

/// Runs SQL on the database with the append-only guards off: on PostgreSQL as superuser with
/// triggers disabled for the session, on SQLite by dropping the guard triggers.
async fn tamper(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    match app.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET session_replication_role = replica; {sql}"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete; {sql}"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
}

const TAMPERINGS: [(&str, &str, &str); 3] = [
    (
        "altered payload",
        "UPDATE events SET payload = replace(payload, 's3://', 'http://') WHERE position = 3",
        "position 3: stored hash",
    ),
    (
        "deleted event",
        "DELETE FROM outbox WHERE position = 4; DELETE FROM events WHERE position = 4",
        "position 5: expected position 4",
    ),
    (
        "swapped events",
        "UPDATE events SET position = -1 WHERE position = 2; UPDATE events SET position = 2 WHERE position = 3; UPDATE events SET position = 3 WHERE position = -1",
        "position 2",
    ),
];

both_backends!(
    verify_names_the_first_bad_position_for_each_tampering,
    |backend: Backend| async move {
        for (what, sql, expected) in TAMPERINGS {
            let app = spawn_app(backend).await;
            ten_events(&app).await;
            let (ok, output) = verify_db(&app.database_url);
            assert!(ok, "untouched log verifies: {output}");
            assert!(output.contains("chain OK: 10 events"), "{output}");
            // Outbox rows reference events; on SQLite a swapped position would dangle.
            let sql = if backend == Backend::Sqlite {
                format!("PRAGMA foreign_keys = OFF; {sql}")
            } else {
                sql.to_string()
            };
            tamper(&app, &sql).await;
            let (ok, output) = verify_db(&app.database_url);
            assert!(!ok, "{what} must be detected");
            assert!(
                output.contains(expected),
                "{what} should name '{expected}': {output}"
            );
        }
    }
);

both_backends!(
    a_truncated_tail_is_caught_against_a_checkpoint,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        ten_events(&app).await;
        let data_dir = app.data_dir.path().display().to_string();
        let (ok, note) = run(&[
            "audit",
            "checkpoint",
            "--database-url",
            &app.database_url,
            "--data-dir",
            &data_dir,
        ]);
        assert!(ok, "{note}");
        assert!(note.starts_with("model-ledger\n10\n"), "{note}");
        let checkpoint = app.data_dir.path().join("cp.txt");
        std::fs::write(&checkpoint, &note).unwrap();
        let (ok, pem) = run(&["audit", "public-key", "--data-dir", &data_dir]);
        assert!(ok && pem.contains("BEGIN PUBLIC KEY"), "{pem}");
        let public_key = app.data_dir.path().join("pub.pem");
        std::fs::write(&public_key, &pem).unwrap();
        let cp = checkpoint.to_str().unwrap();
        let pk = public_key.to_str().unwrap();
        let with_checkpoint = || {
            run(&[
                "audit",
                "verify",
                "--database-url",
                &app.database_url,
                "--checkpoint",
                cp,
                "--public-key",
                pk,
            ])
        };
        let (ok, output) = with_checkpoint();
        assert!(ok, "{output}");
        assert!(
            output.contains("matches the checkpoint at position 10"),
            "{output}"
        );

        // A careful attacker removes the tail and rewinds the recorded head too: the chain
        // alone now verifies, and only the checkpoint shows what is missing.
        let hash8 = app
            .store
            .read_events(&model_ledger::store::EventQuery {
                after_position: Some(7),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()[0]
            .hash
            .clone();
        tamper(
            &app,
            &format!(
                "DELETE FROM outbox WHERE position >= 9; DELETE FROM events WHERE position >= 9; UPDATE chain_head SET position = 8, hash = '{hash8}' WHERE id = 1"
            ),
        )
        .await;
        let (ok, output) = verify_db(&app.database_url);
        assert!(ok, "a truncated chain still verifies on its own: {output}");
        let (ok, output) = with_checkpoint();
        assert!(!ok, "truncation must be caught against the checkpoint");
        assert!(
            output.contains("position 9: the log ends at position 8"),
            "{output}"
        );

        // A forged checkpoint (edited position) fails its signature check.
        std::fs::write(&checkpoint, note.replace("\n10\n", "\n8\n")).unwrap();
        let (ok, output) = with_checkpoint();
        assert!(!ok && output.contains("signature"), "{output}");
    }
);

/// An NDJSON export verifies offline; each edit of the file is caught at its first bad
/// position, and a shortened file against a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_exports_are_caught_offline() {
    let app = spawn_app(Backend::Sqlite).await;
    ten_events(&app).await;
    let data_dir = app.data_dir.path().display().to_string();
    let out = Process::new(BIN)
        .args([
            "audit",
            "export",
            "--format",
            "ndjson",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let export = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 10);
    let (_, note) = run(&[
        "audit",
        "checkpoint",
        "--database-url",
        &app.database_url,
        "--data-dir",
        &data_dir,
    ]);
    let cp = app.data_dir.path().join("cp.txt");
    std::fs::write(&cp, &note).unwrap();
    let file = app.data_dir.path().join("export.ndjson");
    let check = |content: String, with_checkpoint: bool| {
        std::fs::write(&file, content).unwrap();
        let mut args = vec!["audit", "verify", "--file", file.to_str().unwrap()];
        if with_checkpoint {
            args.extend([
                "--checkpoint",
                cp.to_str().unwrap(),
                "--data-dir",
                &data_dir,
            ]);
        }
        run(&args)
    };
    let (ok, output) = check(export.clone(), true);
    assert!(ok && output.contains("chain OK: 10 events"), "{output}");

    let altered = export.replacen("s3://bucket/m", "s3://evil/m", 2);
    let (ok, output) = check(altered, false);
    assert!(
        !ok && output.contains("position 2: stored hash"),
        "{output}"
    );

    let mut deleted = lines.clone();
    deleted.remove(3);
    let (ok, output) = check(deleted.join("\n"), false);
    assert!(
        !ok && output.contains("position 5: expected position 4"),
        "{output}"
    );

    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let (ok, output) = check(swapped.join("\n"), false);
    assert!(
        !ok && output.contains("position 3: expected position 2"),
        "{output}"
    );

    let truncated = lines[..8].join("\n");
    let (ok, output) = check(truncated.clone(), false);
    assert!(ok, "a truncated export verifies on its own: {output}");
    let (ok, output) = check(truncated, true);
    assert!(
        !ok && output.contains("position 9: the log ends at position 8"),
        "{output}"
    );

    let (ok, output) = check(format!("{}\nnot json\n", lines[0]), false);
    assert!(!ok && output.contains("line 2"), "{output}");
}
