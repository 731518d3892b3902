//! Group commit, on both backends: the store writes concurrent commands in shared
//! transactions, which is only safe if grouping is invisible. Each command must still get its
//! own outcome, a group touching every projection table must leave what a rebuild from the
//! log gives, and many concurrent commands must each be written once on a gapless chain.

use std::collections::BTreeMap;
use std::sync::Arc;

use model_ledger::domain::Command;
use model_ledger::domain::chain::ChainVerifier;
use model_ledger::domain::names::{AliasName, ModelName, Stage, TagKey};
use model_ledger::service::{AllowAll, RequestMeta, Service};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};
use crate::store_conformance::{all_events, caller, create_model};

both_backends!(
    a_group_commit_gives_each_command_its_own_outcome,
    |backend: Backend| async move {
        use model_ledger::store::StoreError;
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let who = caller("ana");
        let meta = RequestMeta::default();
        // Two new models and a second creation of one of the names (another stream, same
        // name): that one fails on the name's unique key, which aborts the group transaction;
        // the other two must still be written, each alone.
        let mut batches = Vec::new();
        for name in ["g1", "g2", "g1"] {
            batches.push(
                service
                    .prepare_batch(&who, &meta, &create_model(name))
                    .await
                    .unwrap(),
            );
        }
        let outcomes = app.store.append_group(batches).await;
        assert_eq!(outcomes.len(), 3);
        assert_eq!(
            outcomes[0].as_ref().map(|e| e[0].model_name.as_str()).ok(),
            Some("g1")
        );
        assert_eq!(
            outcomes[1].as_ref().map(|e| e[0].model_name.as_str()).ok(),
            Some("g2")
        );
        assert!(
            matches!(outcomes[2], Err(StoreError::Unique(_))),
            "{:?}",
            outcomes[2]
        );

        // Two commands decided against the same state of g1, and one for g2, in one group: the
        // first for g1 wins, the second lost the race, g2's is independent.
        for model in ["g1", "g2"] {
            service
                .execute(
                    &who,
                    &meta,
                    Command::CreateVersion {
                        name: ModelName::parse(model).unwrap(),
                        source: "s3://b/1".into(),
                        run_id: None,
                        description: String::new(),
                        tags: BTreeMap::new(),
                        metrics: BTreeMap::new(),
                        signature: None,
                        input_example: None,
                        artifact: None,
                        run_evidence: None,
                    },
                )
                .await
                .unwrap();
        }
        let to = |model: &str, stage: Stage| Command::TransitionStage {
            name: ModelName::parse(model).unwrap(),
            version: 1,
            stage,
            comment: None,
            archive_existing_versions: true,
        };
        let head_before = app.store.head().await.unwrap().0;
        let batches = vec![
            service
                .prepare_batch(&who, &meta, &to("g1", Stage::Staging))
                .await
                .unwrap(),
            service
                .prepare_batch(&who, &meta, &to("g1", Stage::Production))
                .await
                .unwrap(),
            service
                .prepare_batch(&who, &meta, &to("g2", Stage::Production))
                .await
                .unwrap(),
        ];
        let outcomes = app.store.append_group(batches).await;
        let first = outcomes[0]
            .as_ref()
            .expect("the first g1 transition is written");
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict { .. })),
            "{:?}",
            outcomes[1]
        );
        let third = outcomes[2].as_ref().expect("g2's transition is written");
        // One commit, consecutive positions in arrival order.
        assert_eq!(first[0].position, head_before + 1);
        assert_eq!(third[0].position, first.last().unwrap().position + 1);
        let g1 = app.store.get_version("g1", 1).await.unwrap().unwrap();
        assert_eq!(g1.stage, "Staging");
        let g2 = app.store.get_version("g2", 1).await.unwrap().unwrap();
        assert_eq!(g2.stage, "Production");

        // A group where every command lost its race writes nothing and leaves the head alone.
        let stale = service
            .prepare_batch(&who, &meta, &to("g2", Stage::Staging))
            .await
            .unwrap();
        service
            .execute(&who, &meta, to("g2", Stage::Staging))
            .await
            .unwrap();
        let head = app.store.head().await.unwrap();
        let outcomes = app.store.append_group(vec![stale]).await;
        assert!(matches!(outcomes[0], Err(StoreError::Conflict { .. })));
        assert_eq!(app.store.head().await.unwrap(), head);

        let events = all_events(&app.store).await;
        let mut verifier = ChainVerifier::new();
        for e in &events {
            verifier.push(e).unwrap();
        }
        assert_eq!(head.1, verifier.head_hash());
        let live = app.store.projection_dump().await.unwrap();
        app.store.rebuild_projections().await.unwrap();
        assert_eq!(live, app.store.projection_dump().await.unwrap());
    }
);

both_backends!(
    one_group_writing_every_projection_table_equals_a_rebuild,
    |backend: Backend| async move {
        // A group's model rows go in multi-row statements per table (store/sql/group_writes):
        // one group here touches every table, for different models, and the projection must
        // be exactly what a rebuild from the log gives.
        let app = spawn_app(backend).await;
        let service = Service::new(app.store(), Arc::new(AllowAll));
        let who = caller("ana");
        let meta = RequestMeta::default();
        let name = |n: &str| ModelName::parse(n).unwrap();
        let create_version = |model: &str, tag: &str| Command::CreateVersion {
            name: name(model),
            source: format!("s3://b/{model}"),
            run_id: None,
            description: "first".into(),
            tags: BTreeMap::from([(TagKey::parse("team").unwrap(), tag.to_string())]),
            metrics: BTreeMap::from([("f1".to_string(), 0.9)]),
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        };
        for model in ["t1", "t2", "t3", "t4", "t5"] {
            service
                .execute(&who, &meta, create_model(model))
                .await
                .unwrap();
            for tag in ["a", "b"] {
                service
                    .execute(&who, &meta, create_version(model, tag))
                    .await
                    .unwrap();
            }
        }
        service
            .execute(
                &who,
                &meta,
                Command::SetAlias {
                    name: name("t2"),
                    alias: AliasName::parse("old").unwrap(),
                    version: 1,
                },
            )
            .await
            .unwrap();
        let commands = vec![
            Command::SetModelTag {
                name: name("t1"),
                key: TagKey::parse("owner").unwrap(),
                value: "ml-platform".into(),
            },
            Command::SetAlias {
                name: name("t2"),
                alias: AliasName::parse("champion").unwrap(),
                version: 2,
            },
            Command::DeleteVersion {
                name: name("t3"),
                version: 1,
            },
            Command::SetVersionTag {
                name: name("t4"),
                version: 2,
                key: TagKey::parse("team").unwrap(),
                value: "changed".into(),
            },
            Command::DeleteModel { name: name("t5") },
            create_model("t6"),
        ];
        let mut batches = Vec::new();
        for command in &commands {
            batches.push(service.prepare_batch(&who, &meta, command).await.unwrap());
        }
        let outcomes = app.store.append_group(batches).await;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");

        // t1 twice in one group (a version, then a tag decided on the state before it): the
        // group is written one command at a time, and the second loses its race, exactly as
        // it would have alone.
        let batches = vec![
            service
                .prepare_batch(&who, &meta, &create_version("t1", "c"))
                .await
                .unwrap(),
            service
                .prepare_batch(
                    &who,
                    &meta,
                    &Command::DeleteAlias {
                        name: name("t2"),
                        alias: AliasName::parse("old").unwrap(),
                    },
                )
                .await
                .unwrap(),
            service
                .prepare_batch(&who, &meta, &create_version("t6", "d"))
                .await
                .unwrap(),
            service
                .prepare_batch(
                    &who,
                    &meta,
                    &Command::SetModelTag {
                        name: name("t1"),
                        key: TagKey::parse("stale").unwrap(),
                        value: "x".into(),
                    },
                )
                .await
                .unwrap(),
        ];
        let outcomes = app.store.append_group(batches).await;
        let failed: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, vec![3], "{outcomes:?}");
        assert!(
            !app.store
                .get_model("t1")
                .await
                .unwrap()
                .unwrap()
                .tags
                .contains_key("stale")
        );
        assert_eq!(
            app.store
                .get_model("t1")
                .await
                .unwrap()
                .unwrap()
                .last_version,
            3
        );

        let t1 = app.store.get_model("t1").await.unwrap().unwrap();
        assert_eq!(
            t1.tags.get("owner").map(String::as_str),
            Some("ml-platform")
        );
        assert!(app.store.get_version("t3", 1).await.unwrap().is_none());
        assert!(app.store.get_model("t5").await.unwrap().is_none());
        let t4 = app.store.get_version("t4", 2).await.unwrap().unwrap();
        assert_eq!(t4.tags.get("team").map(String::as_str), Some("changed"));
        let t6 = app.store.get_version("t6", 1).await.unwrap().unwrap();
        assert_eq!(t6.tags.get("team").map(String::as_str), Some("d"));

        let live = app.store.projection_dump().await.unwrap();
        app.store.rebuild_projections().await.unwrap();
        assert_eq!(live, app.store.projection_dump().await.unwrap());
    }
);

/// Many concurrent commands through one service share transactions, and the result is what
/// one-at-a-time appends would give: every command written once, a gapless chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_are_grouped_and_each_written_once() {
    let app = spawn_app(Backend::Postgres).await;
    let service = Arc::new(Service::new(app.store(), Arc::new(AllowAll)));
    let tasks: Vec<_> = (0..96)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .execute(
                        &caller("ana"),
                        &RequestMeta::default(),
                        create_model(&format!("c{i}")),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(
        service.appender.largest_group() > 1,
        "96 concurrent commands should have shared a transaction"
    );
    let events = all_events(&app.store).await;
    assert_eq!(events.len(), 96);
    let mut verifier = ChainVerifier::new();
    for e in &events {
        verifier.push(e).unwrap();
    }
    let names: std::collections::BTreeSet<_> =
        events.iter().map(|e| e.model_name.clone()).collect();
    assert_eq!(names.len(), 96);
}
