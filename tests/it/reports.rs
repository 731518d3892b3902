//! Compliance reporting: time travel against observed projections, the audit reports on a
//! scripted scenario, policy replay, the audit API and the reporting views. Tamper detection
//! (database, checkpoint, export file) is in `reports_tampering.rs`.

use std::collections::BTreeMap;
use std::process::Command as Process;
use std::sync::Arc;

use model_ledger::domain::command::VerificationOutcome;
use model_ledger::domain::events::{ArtifactManifest, ManifestFile, VerificationFailure};
use model_ledger::domain::names::{ModelName, Stage};
use model_ledger::domain::{Actor, Command};
use model_ledger::policy::{GroupNames, PolicyEngine};
use model_ledger::reports::{history, kinds, replay};
use model_ledger::service::{AllowAll, Caller, RequestMeta, Service};
use model_ledger::store::{ModelView, SharedStore, VersionView};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, permissive_policies, repo_path, spawn_app};
use crate::store_conformance::{caller, random_command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_model-ledger");

pub(crate) fn run(args: &[&str]) -> (bool, String) {
    let out = Process::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What the projections said about every name at one moment.
type Observed = BTreeMap<String, Option<(ModelView, Vec<VersionView>)>>;

const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

async fn observe(store: &SharedStore) -> Observed {
    let mut out = BTreeMap::new();
    for name in NAMES {
        let model = store.get_model(name).await.unwrap();
        let entry = match model {
            None => None,
            Some(m) => {
                let mut versions = Vec::new();
                for v in 1..=m.last_version {
                    if let Some(view) = store.get_version(name, v as i64).await.unwrap() {
                        versions.push(view);
                    }
                }
                Some((m, versions))
            }
        };
        out.insert(name.to_string(), entry);
    }
    out
}

both_backends!(
    time_travel_equals_the_projections_observed_at_every_position,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let mut rng = StdRng::seed_from_u64(0x7133);
        let mut observed: Vec<(i64, Observed)> = vec![(0, observe(&app.store).await)];
        for i in 0..160 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            // Renames move names between streams, the case time travel must resolve by the
            // name a stream had at the time.
            let command = if rng.gen_ratio(1, 12) {
                Command::RenameModel {
                    name: ModelName::parse(NAMES[rng.gen_range(0..4)]).unwrap(),
                    new_name: ModelName::parse(NAMES[rng.gen_range(0..4)]).unwrap(),
                }
            } else {
                random_command(&mut rng)
            };
            if service
                .execute(&who, &RequestMeta::default(), command)
                .await
                .is_ok()
            {
                let head = app.store.head().await.unwrap().0;
                observed.push((head, observe(&app.store).await));
            }
        }
        assert!(observed.len() > 40, "too few successful commands");
        for (position, seen) in &observed {
            for (name, expected) in seen {
                let got = history::model_as_of(app.store.as_ref(), name, *position)
                    .await
                    .unwrap()
                    .map(|m| (m.model, m.versions));
                assert_eq!(&got, expected, "{name} as of position {position}");
            }
        }
    }
);

// ---------------------------------------------------------------------------------------------
// Reports on a scripted scenario

fn person(subject: &str, groups: &[&str]) -> Caller {
    Caller {
        actor: Actor {
            subject: subject.into(),
            issuer: "https://idp.test".into(),
            display_name: None,
        },
        groups: groups.iter().map(|g| g.to_string()).collect(),
        service_account: false,
        expires_at: None,
    }
}

fn artifact(digest: &str) -> Option<ArtifactManifest> {
    Some(ArtifactManifest {
        location: "file:///tmp/a".into(),
        files: vec![ManifestFile {
            path: "model.bin".into(),
            size: 3,
            sha256: "ab".repeat(32),
        }],
        digest: digest.into(),
    })
}

/// ana (admin) registers two versions and verifies them (v2 fails), promotes v1 to Staging
/// herself, is refused Production; rm (release manager) is refused v2 (unverified) and
/// promotes v1 to Production; v1's artifact later fails verification.
async fn scripted(service: &Service) -> (i64, i64) {
    let ana = person("ana", &["ml-admins"]);
    let rm = person("rm", &["ml-release-managers"]);
    let name = ModelName::parse("fraud").unwrap();
    let meta = RequestMeta::default();
    let ok = |r: Result<model_ledger::service::Outcome, model_ledger::service::ServiceError>| {
        r.map(|o| o.events.last().map(|e| e.position).unwrap_or(0))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    ok(service
        .execute(
            &ana,
            &meta,
            Command::CreateModel {
                name: name.clone(),
                description: String::new(),
                tags: BTreeMap::new(),
            },
        )
        .await);
    for digest in ["d1", "d2"] {
        ok(service
            .execute(
                &ana,
                &meta,
                Command::CreateVersion {
                    name: name.clone(),
                    source: "s3://b/fraud".into(),
                    run_id: None,
                    description: String::new(),
                    tags: BTreeMap::new(),
                    metrics: BTreeMap::new(),
                    signature: None,
                    input_example: None,
                    artifact: artifact(digest),
                    run_evidence: None,
                },
            )
            .await);
    }
    let verify = |version: u64, good: bool| Command::RecordVerification {
        name: name.clone(),
        version,
        outcome: if good {
            VerificationOutcome::Verified {
                digest: "d1".into(),
                files: 1,
            }
        } else {
            VerificationOutcome::Failed {
                failures: vec![VerificationFailure {
                    path: "model.bin".into(),
                    expected_sha256: "ab".repeat(32),
                    actual_sha256: None,
                    reason: "missing".into(),
                }],
            }
        },
    };
    ok(service.execute(&ana, &meta, verify(1, true)).await);
    ok(service.execute(&ana, &meta, verify(2, false)).await);
    let transition = |version: u64, stage: Stage, comment: &str| Command::TransitionStage {
        name: name.clone(),
        version,
        stage,
        comment: Some(comment.into()),
        archive_existing_versions: true,
    };
    let staged = ok(service
        .execute(&ana, &meta, transition(1, Stage::Staging, "qa"))
        .await);
    assert!(
        service
            .execute(&ana, &meta, transition(1, Stage::Production, "me"))
            .await
            .is_err()
    );
    assert!(
        service
            .execute(&rm, &meta, transition(2, Stage::Production, "v2"))
            .await
            .is_err()
    );
    let promoted = ok(service
        .execute(&rm, &meta, transition(1, Stage::Production, "go"))
        .await);
    ok(service.execute(&ana, &meta, verify(1, false)).await);
    (staged, promoted)
}

fn engine(dir: &std::path::Path) -> PolicyEngine {
    PolicyEngine::load(dir, GroupNames::default()).unwrap()
}

both_backends!(
    reports_return_the_right_rows_for_a_scripted_scenario,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let shipped = engine(&repo_path("policies"));
        let service = Service::new(app.store(), Arc::new(shipped.clone()));
        let (staged, promoted) = scripted(&service).await;
        let store = app.store.as_ref();

        let all = kinds::promotions(store, kinds::Period::default(), false)
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "{all:#?}");
        let (s, p) = (&all[0], &all[1]);
        assert_eq!(
            (s.position, s.to_stage.as_str(), s.approver.as_str()),
            (staged, "Staging", "ana")
        );
        assert!(s.same_person && s.verified_at_promotion);
        assert_eq!(s.comment.as_deref(), Some("qa"));
        assert_eq!(s.policy_ids, vec!["admins-all"]);
        assert_eq!(
            (p.position, p.to_stage.as_str(), p.approver.as_str()),
            (promoted, "Production", "rm")
        );
        assert_eq!(p.registered_by, "ana");
        assert!(!p.same_person && p.verified_at_promotion);
        assert_eq!(p.artifact_digest.as_deref(), Some("d1"));
        assert_eq!(p.policy_ids, vec!["release-managers-release"]);
        assert_eq!(
            p.policy_set_digest.as_deref(),
            Some(shipped.policy_set_digest().as_str())
        );
        let prod = kinds::promotions(store, kinds::Period::default(), true)
            .await
            .unwrap();
        assert_eq!(prod.len(), 1);
        let violations = kinds::sod_rows(&all, true);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            (
                violations[0].registered_by.as_str(),
                violations[0].promoted_by.as_str()
            ),
            ("ana", "ana")
        );

        let denials = kinds::denials(store, kinds::Period::default())
            .await
            .unwrap();
        assert_eq!(denials.len(), 2, "{denials:#?}");
        assert_eq!(denials[0].subject, "ana");
        assert!(
            denials[0]
                .policy_ids
                .contains(&"production-only-release-managers".to_string())
        );
        assert!(
            denials[0]
                .policy_ids
                .contains(&"production-separation-of-duties".to_string())
        );
        assert_eq!(denials[1].subject, "rm");
        assert_eq!(
            denials[1].policy_ids,
            vec!["production-requires-verified-artifact"]
        );
        let later = kinds::Period {
            from: Some(chrono::Utc::now()),
            to: None,
        };
        assert!(kinds::denials(store, later).await.unwrap().is_empty());

        let unverified = kinds::unverified_in_production(store).await.unwrap();
        assert_eq!(unverified.len(), 1);
        assert_eq!(
            (unverified[0].version, unverified[0].verification),
            (1, "failed")
        );

        let stays = kinds::stage_durations(store, kinds::Period::default())
            .await
            .unwrap();
        let summary: Vec<(u64, &str, bool)> = stays
            .iter()
            .map(|s| (s.version, s.stage.as_str(), s.left_at.is_some()))
            .collect();
        assert_eq!(
            summary,
            vec![(1, "Staging", true), (1, "Production", false)]
        );

        let stages_then = history::stages_as_of(store, staged).await.unwrap();
        assert_eq!(
            history::group_stages(&stages_then)["fraud"]["Staging"],
            vec![1]
        );
        let stages_now = history::stages_as_of(store, promoted).await.unwrap();
        let grouped = history::group_stages(&stages_now);
        assert_eq!(
            grouped["fraud"].keys().collect::<Vec<_>>(),
            vec!["Production"]
        );

        // Replaying with the policies that decided changes nothing; with allow-all, both
        // refused Production promotions would have gone through.
        let same = replay::replay(store, &shipped, kinds::Period::default())
            .await
            .unwrap();
        assert!(same.changed.is_empty(), "{:#?}", same.changed);
        assert_eq!(same.decisions, 10, "8 commands and 2 denials");
        let holder = tempfile::tempdir().unwrap();
        let permissive = engine(&permissive_policies(holder.path()));
        let what_if = replay::replay(store, &permissive, kinds::Period::default())
            .await
            .unwrap();
        let changed: Vec<(&str, &str, bool)> = what_if
            .changed
            .iter()
            .map(|c| (c.source, c.subject.as_str(), c.after_allowed))
            .collect();
        assert_eq!(
            changed,
            vec![("denial", "ana", true), ("denial", "rm", true)]
        );
        assert_eq!(what_if.changed[1].after_policy_ids, vec!["test-allow-all"]);

        // The same through the API and the CLI.
        let rm = app.token("rm", &["ml-release-managers"]);
        let r = app
            .get("/api/v1/audit/reports/promotions?production_only=true", &rm)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["rows"][0]["approver"], "rm");
        let r = app
            .get("/api/v1/audit/reports/sod?violations_only=true", &rm)
            .await;
        assert_eq!(r.body["rows"].as_array().map(Vec::len), Some(1));
        let r = app
            .get("/api/v1/audit/reports/unverified-production", &rm)
            .await;
        assert_eq!(r.body["rows"][0]["verification"], "failed");
        let r = app
            .get(&format!("/api/v1/audit/reports/stages?as_of={staged}"), &rm)
            .await;
        assert_eq!(r.body["models"]["fraud"]["Staging"][0], 1);
        let r = app
            .get(&format!("/api/v1/models/fraud?as_of={staged}"), &rm)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["versions"][0]["stage"], "Staging");
        let r = app
            .get("/api/v1/models/fraud?as_of=1970-01-01T00:00:00Z", &rm)
            .await;
        assert_eq!(r.status, 404);
        let reader = app.token("rita", &["ml-readers"]);
        let r = app.get("/api/v1/audit/reports/denials", &reader).await;
        assert_eq!(r.status, 403);
        let r = app
            .get("/api/v1/audit/reports/denials?format=csv", &rm)
            .await;
        assert_eq!(r.status, 200);

        let (ok, out) = run(&[
            "audit",
            "report",
            "denials",
            "--database-url",
            &app.database_url,
            "--format",
            "csv",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("rita") && out.contains("production-requires-verified-artifact"),
            "{out}"
        );
    }
);

async fn body_text(app: &TestApp, path: &str, token: &str) -> (u16, String, String) {
    let resp = app
        .client
        .get(format!("{}{}", app.url, path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, resp.text().await.unwrap())
}

both_backends!(
    event_search_filters_pages_and_streams_three_formats,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(engine(&repo_path("policies"))));
        let (_, promoted) = scripted(&service).await;
        let rm = app.token("rm", &["ml-release-managers"]);

        let (status, ct, text) = body_text(
            &app,
            "/api/v1/audit/events?format=ndjson&policy_id=release-managers-release",
            &rm,
        )
        .await;
        assert_eq!(
            (status, ct.as_str()),
            (200, "application/x-ndjson"),
            "{text}"
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["position"], promoted);

        let (_, _, text) = body_text(
            &app,
            "/api/v1/audit/events?format=ndjson&group=ml-release-managers",
            &rm,
        )
        .await;
        assert_eq!(text.lines().count(), 1);
        let (_, _, text) = body_text(
            &app,
            "/api/v1/audit/events?format=ndjson&actor=ana&type=StageTransitioned",
            &rm,
        )
        .await;
        assert_eq!(text.lines().count(), 1);
        let (_, _, text) = body_text(
            &app,
            "/api/v1/audit/events?format=ndjson&version=2&model=fraud",
            &rm,
        )
        .await;
        assert_eq!(
            text.lines().count(),
            2,
            "VersionCreated and the failed verification: {text}"
        );

        // Cursor pagination over JSON pages of 3.
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let r = app
                .get(&format!("/api/v1/audit/events?limit=3&after={after}"), &rm)
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            for e in r.body["events"].as_array().unwrap() {
                seen.push(e["position"].as_i64().unwrap());
            }
            match r.body["next_cursor"].as_i64() {
                Some(c) => after = c,
                None => break,
            }
        }
        assert_eq!(seen, (1..=app.event_count().await).collect::<Vec<_>>());

        let (status, ct, text) = body_text(
            &app,
            "/api/v1/audit/events?format=csv&type=StageTransitioned",
            &rm,
        )
        .await;
        assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
        assert!(
            text.starts_with("position,occurred_at,event_type"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");

        let r = app.get("/api/v1/audit/events?type=Nope", &rm).await;
        assert_eq!(r.status, 400);
        let reader = app.token("rita", &["ml-readers"]);
        let r = app.get("/api/v1/audit/events", &reader).await;
        assert_eq!(r.status, 403);
    }
);

/// A signed promotions report verifies offline against an export, and fails if either the
/// report or the export is edited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_period_report_verifies_against_the_export() {
    let app = spawn_app(Backend::Sqlite).await;
    let service = Service::new(app.store(), Arc::new(engine(&repo_path("policies"))));
    scripted(&service).await;
    let dir = app.data_dir.path();
    let data_dir = dir.display().to_string();
    let db = app.database_url.as_str();
    let (ok, report) = run(&[
        "audit",
        "report",
        "promotions",
        "--sign",
        "--database-url",
        db,
        "--data-dir",
        &data_dir,
    ]);
    assert!(ok, "{report}");
    let export = Process::new(BIN)
        .args(["audit", "export", "--database-url", db])
        .output()
        .unwrap();
    let (_, pem) = run(&["audit", "public-key", "--data-dir", &data_dir]);
    std::fs::write(dir.join("pub.pem"), pem).unwrap();
    std::fs::write(dir.join("export.ndjson"), &export.stdout).unwrap();
    let report_json: String = report
        .lines()
        .filter(|l| !l.starts_with("exported"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("report.json"), &report_json).unwrap();
    let check = || {
        run(&[
            "audit",
            "verify-report",
            dir.join("report.json").to_str().unwrap(),
            "--file",
            dir.join("export.ndjson").to_str().unwrap(),
            "--public-key",
            dir.join("pub.pem").to_str().unwrap(),
        ])
    };
    let (ok, out) = check();
    assert!(ok && out.contains("report OK: 2 rows"), "{out}");

    std::fs::write(
        dir.join("report.json"),
        report_json.replace("\"go\"", "\"GO\""),
    )
    .unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("signature"), "{out}");

    std::fs::write(dir.join("report.json"), &report_json).unwrap();
    let edited = String::from_utf8(export.stdout)
        .unwrap()
        .replace("\"go\"", "\"GO\"");
    std::fs::write(dir.join("export.ndjson"), edited).unwrap();
    let (ok, out) = check();
    assert!(!ok && out.contains("stored hash"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Reporting views

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_views_are_readable_by_the_read_only_role_on_postgres() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Postgres).await;
    let service = Service::new(app.store(), Arc::new(engine(&repo_path("policies"))));
    scripted(&service).await;
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("SET ROLE model_ledger_reporting")
        .execute(&mut conn)
        .await
        .unwrap();
    let rows: Vec<(String, i64, String, String, bool)> = sqlx::query_as(
        "SELECT model_name, version, to_stage, promoted_by, same_person FROM reporting.promotions ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("fraud".into(), 1, "Staging".into(), "ana".into(), true),
            ("fraud".into(), 1, "Production".into(), "rm".into(), false)
        ]
    );
    let denials: (i64,) = sqlx::query_as("SELECT count(*) FROM reporting.denials")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(denials.0, 2);
    for sql in [
        "SELECT count(*) FROM reporting.events",
        "SELECT count(*) FROM reporting.current_stages",
        "SELECT count(*) FROM reporting.verifications",
        "SELECT count(*) FROM reporting.checkpoints",
    ] {
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let err = sqlx::query("SELECT count(*) FROM events")
        .execute(&mut conn)
        .await;
    assert!(err.unwrap_err().to_string().contains("permission denied"));
    let err = sqlx::query("DELETE FROM reporting.events")
        .execute(&mut conn)
        .await;
    assert!(err.is_err(), "the role cannot write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_views_exist_on_sqlite() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Sqlite).await;
    let service = Service::new(app.store(), Arc::new(engine(&repo_path("policies"))));
    scripted(&service).await;
    let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    let rows: Vec<(String, i64, String, String, bool)> = sqlx::query_as(
        "SELECT model_name, version, to_stage, promoted_by, same_person FROM reporting_promotions ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].3, "rm");
    let denials: (i64,) = sqlx::query_as("SELECT count(*) FROM reporting_denials")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(denials.0, 2);
}
