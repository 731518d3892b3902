//! Store guarantees on both backends: immutability, gapless positions, hash chain, and
//! projections equal to a rebuild after a long randomized sequence of commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use model_ledger::domain::chain::ChainVerifier;
use model_ledger::domain::names::{AliasName, ModelName, Stage, TagKey};
use model_ledger::domain::{Actor, Command};
use model_ledger::service::{AllowAll, Caller, RequestMeta, Service};
use model_ledger::store::{EventQuery, RebuildPause, SharedStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

pub(crate) fn caller(subject: &str) -> Caller {
    Caller {
        actor: Actor {
            subject: subject.into(),
            issuer: "test".into(),
            display_name: None,
        },
        groups: vec![],
        service_account: false,
        expires_at: None,
    }
}

/// A command creating an empty model.
pub(crate) fn create_model(name: &str) -> Command {
    Command::CreateModel {
        name: ModelName::parse(name).unwrap(),
        description: String::new(),
        tags: BTreeMap::new(),
    }
}

pub(crate) async fn all_events(store: &SharedStore) -> Vec<model_ledger::domain::EventEnvelope> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = store
            .read_events(&EventQuery {
                after_position: Some(after),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        out.extend(batch);
    }
    out
}

/// A random but valid-looking command over a few model names; many fail in `decide`, which is
/// part of the point (failed commands must leave no trace).
pub(crate) fn random_command(rng: &mut StdRng) -> Command {
    let names = ["alpha", "beta", "gamma", "delta"];
    let name = ModelName::parse(names[rng.gen_range(0..names.len())]).unwrap();
    let version = rng.gen_range(1..8u64);
    let stages = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];
    let alias = AliasName::parse(["champion", "challenger"][rng.gen_range(0..2)]).unwrap();
    let key = TagKey::parse(["team", "tier"][rng.gen_range(0..2)]).unwrap();
    match rng.gen_range(0..15) {
        0 => Command::CreateModel {
            name,
            description: "d".into(),
            tags: BTreeMap::new(),
        },
        1..=3 => Command::CreateVersion {
            name,
            source: format!("s3://b/{}", rng.gen_range(0..100)),
            run_id: Some("run".into()),
            description: String::new(),
            tags: BTreeMap::from([(key, "x".into())]),
            metrics: BTreeMap::from([("f1".into(), rng.gen_range(0.0..1.0))]),
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        },
        4..=6 => Command::TransitionStage {
            name,
            version,
            stage: stages[rng.gen_range(0..4)],
            comment: Some("c".into()),
            archive_existing_versions: rng.gen_bool(0.5),
        },
        7 => Command::SetAlias {
            name,
            alias,
            version,
        },
        8 => Command::DeleteAlias { name, alias },
        9 => Command::SetModelTag {
            name,
            key,
            value: rng.gen_range(0..9).to_string(),
        },
        10 => Command::SetVersionTag {
            name,
            version,
            key,
            value: "v".into(),
        },
        11 => Command::DeleteVersion { name, version },
        12 => Command::RollbackStage {
            name,
            stage: [Stage::Staging, Stage::Production][rng.gen_range(0..2)],
            comment: None,
        },
        13 => Command::DeleteModel { name },
        _ => Command::UpdateModel {
            name,
            description: format!("v{}", rng.gen_range(0..9)),
        },
    }
}

both_backends!(
    projections_equal_a_rebuild_after_random_commands,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut ok = 0;
        for i in 0..600 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            if service
                .execute(&who, &RequestMeta::default(), random_command(&mut rng))
                .await
                .is_ok()
            {
                ok += 1;
            }
        }
        assert!(ok > 100, "the sequence should mostly succeed, got {ok}");
        let live = app.store.projection_dump().await.unwrap();
        let replayed = app.store.rebuild_projections().await.unwrap();
        let rebuilt = app.store.projection_dump().await.unwrap();
        assert_eq!(replayed as i64, app.event_count().await);
        assert_eq!(live.len(), rebuilt.len());
        for (a, b) in live.iter().zip(&rebuilt) {
            assert_eq!(a, b, "live and rebuilt projections differ");
        }

        // The log is gapless, commit-ordered and chained.
        let events = all_events(&app.store).await;
        let mut verifier = ChainVerifier::new();
        for e in &events {
            verifier.push(e).unwrap();
        }
        let (head, hash) = app.store.head().await.unwrap();
        assert_eq!(head, events.len() as i64);
        assert_eq!(hash, verifier.head_hash());
        // Per stream, versions are 1..n without gaps.
        let mut per_stream: BTreeMap<uuid::Uuid, Vec<i64>> = BTreeMap::new();
        for e in &events {
            per_stream
                .entry(e.stream_id)
                .or_default()
                .push(e.stream_version);
        }
        for versions in per_stream.values() {
            assert_eq!(*versions, (1..=versions.len() as i64).collect::<Vec<_>>());
        }
    }
);

both_backends!(
    a_rebuild_while_commands_append_equals_a_rebuild_from_scratch,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let service = Arc::new(Service::new(app.store(), Arc::new(AllowAll)));
        let mut rng = StdRng::seed_from_u64(0xfeed);
        for i in 0..300 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            let _ = service
                .execute(&who, &RequestMeta::default(), random_command(&mut rng))
                .await;
        }

        // A writer that appends throughout: during the scan, the catch-up and the swap.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let background = {
            let (service, stop) = (service.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0xbead);
                let mut ok = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let command = random_command(&mut rng);
                    if service
                        .execute(&caller("cy"), &RequestMeta::default(), command)
                        .await
                        .is_ok()
                    {
                        ok += 1;
                    }
                }
                ok
            })
        };

        let (scanned_tx, scanned_rx) = tokio::sync::oneshot::channel();
        let (resume_tx, resume_rx) = tokio::sync::oneshot::channel();
        let rebuild = {
            let store = app.store.clone();
            tokio::spawn(async move {
                store
                    .rebuild_projections_with(Some(RebuildPause {
                        scanned: scanned_tx,
                        resume: resume_rx,
                    }))
                    .await
            })
        };
        let scanned_through = scanned_rx.await.unwrap();
        // Between the scan and the swap: new models, deletions, tags, stages, all of which the
        // catch-up must fold onto the shadow state.
        let mut appended = 0;
        for i in 0..200 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            if service
                .execute(&who, &RequestMeta::default(), random_command(&mut rng))
                .await
                .is_ok()
            {
                appended += 1;
            }
        }
        assert!(
            appended > 20,
            "the sequence should mostly succeed, got {appended}"
        );
        resume_tx.send(()).unwrap();
        let report = rebuild.await.unwrap().unwrap();
        assert_eq!(report.scanned_through, scanned_through);
        assert!(
            report.head >= scanned_through + appended,
            "the swap happened after the appends: {report:?}"
        );
        assert_eq!(
            report.events as i64, report.head,
            "every event up to the swap is folded"
        );
        assert!(report.caught_up >= appended as u64, "{report:?}");

        // More appends after the swap build on the rebuilt rows.
        for i in 0..100 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            let _ = service
                .execute(&who, &RequestMeta::default(), random_command(&mut rng))
                .await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let background_ok = background.await.unwrap();
        assert!(background_ok > 0, "the background writer appended nothing");

        // A model with a tag and a version, whatever the random commands left.
        let name = ModelName::parse("damage-target").unwrap();
        let setup = [
            Command::CreateModel {
                name: name.clone(),
                description: String::new(),
                tags: BTreeMap::from([(TagKey::parse("team").unwrap(), "a".into())]),
            },
            Command::CreateVersion {
                name,
                source: "s3://bucket/m".into(),
                run_id: None,
                description: String::new(),
                tags: BTreeMap::new(),
                metrics: BTreeMap::new(),
                signature: None,
                input_example: None,
                artifact: None,
                run_evidence: None,
            },
        ];
        for command in setup {
            service
                .execute(&caller("ana"), &RequestMeta::default(), command)
                .await
                .unwrap();
        }

        let live = app.store.projection_dump().await.unwrap();
        let from_scratch = app.store.rebuild_projections_with(None).await.unwrap();
        assert_eq!(from_scratch.events as i64, app.event_count().await);
        if backend == Backend::Postgres {
            // Live snapshots lag their streams by up to the snapshot interval and rebuilt ones
            // do not, so only a second rebuild finds nothing to write.
            let again = app.store.rebuild_projections_with(None).await.unwrap();
            assert_eq!(
                again.rows_rewritten, 0,
                "nothing changed since the last rebuild"
            );
        }
        let rebuilt = app.store.projection_dump().await.unwrap();
        assert_eq!(live.len(), rebuilt.len());
        for (a, b) in live.iter().zip(&rebuilt) {
            assert_eq!(
                a, b,
                "projections after an online rebuild differ from a fresh one"
            );
        }

        // Damage two projection rows by hand; a rebuild repairs exactly those.
        let (changed, dropped) = damage_projections(backend, &app.database_url).await;
        assert_eq!((changed, dropped), (1, 1), "rows to damage");
        assert_ne!(app.store.projection_dump().await.unwrap(), rebuilt);
        let repair = app.store.rebuild_projections_with(None).await.unwrap();
        assert_eq!(app.store.projection_dump().await.unwrap(), rebuilt);
        if backend == Backend::Postgres {
            // The changed row is deleted and reinserted, the dropped one reinserted.
            assert_eq!(repair.rows_rewritten, 2 * changed + dropped, "{repair:?}");
        }
    }
);

/// Changes one version row and deletes one model tag row behind the store's back; returns how
/// many rows each statement touched.
async fn damage_projections(backend: Backend, url: &str) -> (u64, u64) {
    use sqlx::Connection as _;
    const CHANGE: &str = "UPDATE model_versions SET stage = 'Damaged' WHERE (model_id, version) = \
         (SELECT model_id, version FROM model_versions ORDER BY model_id, version LIMIT 1)";
    const DROP: &str = "DELETE FROM model_tags WHERE (model_id, key) IN \
         (SELECT model_id, key FROM model_tags ORDER BY model_id, key LIMIT 1)";
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let changed = sqlx::query(CHANGE).execute(&mut conn).await.unwrap();
            let dropped = sqlx::query(DROP).execute(&mut conn).await.unwrap();
            (changed.rows_affected(), dropped.rows_affected())
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            let changed = sqlx::query(CHANGE).execute(&mut conn).await.unwrap();
            let dropped = sqlx::query(DROP).execute(&mut conn).await.unwrap();
            (changed.rows_affected(), dropped.rows_affected())
        }
    }
}

both_backends!(
    failed_commands_write_nothing,
    |backend: Backend| async move {
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let who = caller("ana");
        let name = ModelName::parse("m").unwrap();
        service
            .execute(&who, &RequestMeta::default(), create_model(name.as_str()))
            .await
            .unwrap();
        let before = app.store.projection_dump().await.unwrap();
        let head = app.store.head().await.unwrap();
        let err = service
            .execute(
                &who,
                &RequestMeta::default(),
                Command::TransitionStage {
                    name,
                    version: 9,
                    stage: Stage::Staging,
                    comment: None,
                    archive_existing_versions: false,
                },
            )
            .await;
        assert!(err.is_err());
        assert_eq!(app.store.head().await.unwrap(), head);
        assert_eq!(app.store.projection_dump().await.unwrap(), before);
    }
);

/// UPDATE, DELETE and TRUNCATE on the event log are refused by the database itself.
#[tokio::test]
async fn postgres_rejects_changes_to_the_event_log() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Postgres).await;
    app.create_model("m").await;
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}' WHERE position = 1",
        "DELETE FROM events WHERE position = 1",
        "TRUNCATE events CASCADE",
        "DELETE FROM access_decisions",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await;
        if sql.starts_with("DELETE FROM access") {
            // Nothing to delete still runs the row trigger zero times; it must not error or remove rows.
            assert!(err.is_ok());
            continue;
        }
        let message = err.expect_err(sql).to_string();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn sqlite_rejects_changes_to_the_event_log() {
    use sqlx::Connection;
    let app = spawn_app(Backend::Sqlite).await;
    app.create_model("m").await;
    let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}' WHERE position = 1",
        "DELETE FROM events WHERE position = 1",
        "DELETE FROM events",
    ] {
        let message = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect_err(sql)
            .to_string();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    let count: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count.0, 1);
}

both_backends!(
    a_lagging_snapshot_loads_as_the_full_state,
    |backend: Backend| async move {
        use model_ledger::store::SNAPSHOT_EVERY;
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let who = caller("ana");
        let meta = RequestMeta::default();
        let name = ModelName::parse("big").unwrap();
        service
            .execute(&who, &meta, create_model("big"))
            .await
            .unwrap();
        let n = SNAPSHOT_EVERY + SNAPSHOT_EVERY / 2;
        for i in 0..n {
            service
                .execute(
                    &who,
                    &meta,
                    Command::SetModelTag {
                        name: name.clone(),
                        key: TagKey::parse(format!("k{i}")).unwrap(),
                        value: format!("v{i}"),
                    },
                )
                .await
                .unwrap();
        }
        let head = app.store.model_head("big").await.unwrap().unwrap();
        assert_eq!(head.stream_version, n + 1);
        assert!(
            head.snapshot_version < head.stream_version
                && head.stream_version - head.snapshot_version < SNAPSHOT_EVERY,
            "the snapshot is rewritten every {SNAPSHOT_EVERY} events, not on each: {head:?}"
        );
        // Loaded without any cache: the snapshot plus the events after it.
        let loaded = app.store.load_model("big").await.unwrap().unwrap();
        assert_eq!(loaded.stream_version, n + 1);
        assert_eq!(loaded.tags.len() as i64, n);
        app.store.rebuild_projections().await.unwrap();
        let rebuilt_head = app.store.model_head("big").await.unwrap().unwrap();
        assert_eq!(rebuilt_head.snapshot_version, rebuilt_head.stream_version);
        assert_eq!(app.store.load_model("big").await.unwrap().unwrap(), loaded);
    }
);

both_backends!(
    latest_versions_many_equals_latest_versions_per_model,
    |backend: Backend| async move {
        use model_ledger::store::{ModelQuery, Paging};
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let mut rng = StdRng::seed_from_u64(0x1a7e57);
        for i in 0..400 {
            let who = caller(if i % 2 == 0 { "ana" } else { "bo" });
            let _ = service
                .execute(&who, &RequestMeta::default(), random_command(&mut rng))
                .await;
        }
        let models = app
            .store
            .search_models(&ModelQuery {
                filters: vec![],
                order: vec![],
                paging: Paging::Offset(0),
                limit: 100,
            })
            .await
            .unwrap()
            .items;
        assert!(models.len() >= 2, "the sequence should leave a few models");
        // Reversed, with an unknown id and a repeat, to check order and duplicates too.
        let mut ids: Vec<String> = models.iter().rev().map(|m| m.model_id.clone()).collect();
        ids.insert(1, "no-such-model".into());
        ids.push(ids[0].clone());
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for id in &ids {
            if !seen.contains(id) {
                seen.push(id.clone());
                expected.extend(app.store.latest_versions(id).await.unwrap());
            }
        }
        assert!(
            !expected.is_empty(),
            "some model should have versions in some stage"
        );
        let many = app.store.latest_versions_many(&ids).await.unwrap();
        assert_eq!(many, expected);
        assert!(
            app.store
                .latest_versions_many(&[])
                .await
                .unwrap()
                .is_empty()
        );
    }
);

both_backends!(
    a_commit_advances_the_commit_clock,
    |backend: Backend| async move {
        use std::time::{Duration, Instant};
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        // A second store on the same database stands for another server process.
        let other = model_ledger::store::connect(&app.database_url, 2)
            .await
            .unwrap();
        let clock = app.store.commit_clock();
        let other_clock = other.commit_clock();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(clock.reliable() && other_clock.reliable()) {
            assert!(
                Instant::now() < deadline,
                "the commit clocks never became reliable"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = clock.generation();
        let other_before = other_clock.generation();
        service
            .execute(
                &caller("ana"),
                &RequestMeta::default(),
                create_model("ticks"),
            )
            .await
            .unwrap();
        // Advanced before the append returned to the writer.
        assert!(clock.generation() > before);
        if backend == Backend::Postgres {
            // The other process hears of it through NOTIFY.
            while other_clock.generation() == other_before {
                assert!(
                    Instant::now() < deadline,
                    "NOTIFY never advanced the other clock"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
);
