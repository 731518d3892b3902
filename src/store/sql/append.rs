//! The write path and the event log: appends (alone or grouped), imports, rebuilds, and reads
//! of the log itself.
//!
//! An append group is one transaction. The group's model rows are written first, in a few
//! multi-row statements for the whole group (`group_writes`, which also says how lock order
//! and deadlocks are handled); only then is the single chain head locked, the events numbered
//! and chained, and inserted. The head is so held only for the short tail of the transaction.
//! What a command rewrites in the projections (its plan) is computed from its decided state
//! before the transaction begins, so no CPU work happens under any lock.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type};
use tokio::sync::broadcast;

use super::rows::{EVENT_COLUMNS, EventColumns, FoldRow, SnapshotRow};
use super::{Args, Conn, Db, RowOf, SqlStore, classify_unique};
use crate::domain::chain::{GENESIS_HASH, canonical_json_string, compute_hash};
use crate::domain::events::{Actor, CURRENT_SCHEMA_VERSION, EventEnvelope, EventPayload};
use crate::domain::state::{ModelState, fold};
use crate::store::dialect::Dialect;
use crate::store::projection::{ProjectionPlan, from_micros, micros, plan};
use crate::store::{
    AppendBatch, CommitClock, EventLog, EventQuery, IdempotencyRecord, ModelHead, StoreError,
    TextMatch,
};

type Tx<'a, D> = Transaction<'a, Db<D>>;

/// One command's outcome in a group.
type Outcome = Result<Vec<EventEnvelope>, StoreError>;

impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> i32: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>>,
    for<'q> Option<&'q str>: Encode<'q, Db<D>>,
{
    /// Appends a group of commands in one transaction, under one chain-head lock and one commit
    /// (group commit; see docs/architecture.md). A command whose stream moved is answered
    /// `Conflict` and the rest go on; a statement error fails the whole transaction.
    async fn commit_group(
        &self,
        batches: &[&AppendBatch],
        plans: &[&ProjectionPlan],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let written = Self::write_commands(&mut tx, batches, plans).await?;
        let mut outcomes = Vec::with_capacity(batches.len());
        if !written.contains(&true) {
            // Nothing to chain: leave the head alone (and unlocked).
            tx.rollback().await?;
        } else {
            // Everything above touched only these models' rows. From here to commit the single
            // chain head is held, so positions are assigned in commit order.
            let (mut position, mut prev_hash): (i64, String) =
                sqlx::query_as(D::LOCK_HEAD).fetch_one(&mut *tx).await?;
            for (batch, written) in batches.iter().zip(&written) {
                if *written {
                    outcomes.push(chain_events(batch, &mut position, &mut prev_hash)?);
                }
            }
            let written_batches = batches
                .iter()
                .zip(&written)
                .filter(|(_, w)| **w)
                .map(|(b, _)| b);
            let rows: Vec<(&EventEnvelope, Option<u64>)> = outcomes
                .iter()
                .zip(written_batches)
                .flat_map(|(stored, batch)| {
                    stored
                        .iter()
                        .zip(batch.events.iter().map(|e| e.payload.version()))
                })
                .collect();
            Self::insert_events(&mut tx, &rows)
                .await
                .map_err(classify_unique)?;
            sqlx::query("UPDATE chain_head SET position = $1, hash = $2 WHERE id = 1")
                .bind(position)
                .bind(&prev_hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.committed(position);
        }
        let mut stored = outcomes.into_iter();
        Ok(batches
            .iter()
            .zip(written)
            .map(|(batch, written)| {
                if written {
                    stored
                        .next()
                        .ok_or_else(|| StoreError::Corrupt("group outcome missing".into()))
                } else {
                    Err(StoreError::Conflict {
                        stream_id: batch.stream_id,
                        expected: batch.expected_version,
                        actual: -1,
                    })
                }
            })
            .collect())
    }

    /// Inserts stored events, each with the version it concerns (its outbox row follows by
    /// trigger), several per statement. Payload and decision are written as canonical JSON
    /// text, exactly the bytes the hash covers.
    async fn insert_events(
        tx: &mut Tx<'_, D>,
        events: &[(&EventEnvelope, Option<u64>)],
    ) -> Result<(), sqlx::Error> {
        struct Row<'a> {
            event: &'a EventEnvelope,
            version: Option<u64>,
            payload: String,
            decision: Option<String>,
        }
        let rows: Vec<Row<'_>> = events
            .iter()
            .map(|(event, version)| Row {
                event,
                version: *version,
                payload: canonical_json_string(&event.payload),
                decision: event.decision.as_ref().map(canonical_json_string),
            })
            .collect();
        // The bound values plus about 512 bytes of per-row overhead (ids, hashes, names).
        let size =
            |row: &Row<'_>| row.payload.len() + row.decision.as_ref().map_or(0, String::len) + 512;
        for run in super::group_writes::runs(&rows, size) {
            let mut qb = QueryBuilder::<Db<D>>::new(
                "INSERT INTO events (position, event_id, stream_id, stream_version, model_name, \
                 event_type, schema_version, payload, occurred_at_us, actor_subject, actor_issuer, \
                 actor_display_name, request_id, correlation_id, decision, version, prev_hash, hash) ",
            );
            qb.push_values(run, |mut b, row| {
                let event = row.event;
                b.push_bind(event.position)
                    .push_bind(event.event_id.to_string())
                    .push_bind(event.stream_id.to_string())
                    .push_bind(event.stream_version)
                    .push_bind(event.model_name.clone())
                    .push_bind(event.event_type.clone())
                    .push_bind(event.schema_version)
                    .push_bind(row.payload.clone())
                    .push_bind(micros(&event.occurred_at))
                    .push_bind(event.actor.subject.clone())
                    .push_bind(event.actor.issuer.clone())
                    .push_bind(event.actor.display_name.clone())
                    .push_bind(event.request_id.clone())
                    .push_bind(event.correlation_id.clone())
                    .push_bind(row.decision.clone())
                    .push_bind(row.version.map(|v| v as i64))
                    .push_bind(event.prev_hash.clone())
                    .push_bind(event.hash.clone());
            });
            qb.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// A model's current state from its snapshot row: the snapshot, with the stream's events
    /// after `snapshot_version` folded onto it.
    pub(super) async fn materialize(&self, row: SnapshotRow) -> Result<ModelState, StoreError> {
        let model_id = row.model_id.as_str();
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("model {model_id} {what}: {e}"))
        };
        let mut state: ModelState =
            serde_json::from_str(&row.state).map_err(|e| corrupt("snapshot", e))?;
        if row.snapshot_version < row.stream_version {
            let id = uuid::Uuid::parse_str(model_id)
                .map_err(|e| StoreError::Corrupt(format!("model id {model_id}: {e}")))?;
            let events: Vec<FoldRow> = sqlx::query_as(
                "SELECT payload, occurred_at_us, actor_subject, actor_issuer, actor_display_name \
                 FROM events WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
            )
            .bind(model_id)
            .bind(state.stream_version)
            .fetch_all(&self.pool)
            .await?;
            for event in events {
                let payload: EventPayload =
                    serde_json::from_str(&event.payload).map_err(|e| corrupt("event", e))?;
                let actor = Actor {
                    subject: event.actor_subject,
                    issuer: event.actor_issuer,
                    display_name: event.actor_display_name,
                };
                state = fold(
                    Some(state),
                    id,
                    &payload,
                    from_micros(event.occurred_at_us),
                    &actor,
                )
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("model {model_id}: an event does not apply"))
                })?;
            }
        }
        Ok(state)
    }
}

/// The stored envelopes of one command's events, continuing the chain from
/// `(position, prev_hash)`, which it advances.
fn chain_events(
    batch: &AppendBatch,
    position: &mut i64,
    prev_hash: &mut String,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let mut stored = Vec::with_capacity(batch.events.len());
    for event in &batch.events {
        *position += 1;
        let payload = serde_json::to_value(&event.payload)
            .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
        let mut envelope = EventEnvelope {
            position: *position,
            event_id: event.event_id,
            stream_id: batch.stream_id,
            stream_version: event.stream_version,
            model_name: batch.model_name.clone(),
            event_type: event.payload.event_type().to_string(),
            schema_version: CURRENT_SCHEMA_VERSION,
            payload,
            occurred_at: event.occurred_at,
            actor: batch.actor.clone(),
            request_id: batch.request_id.clone(),
            correlation_id: batch.correlation_id.clone(),
            decision: batch.decision.clone(),
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        envelope.hash = compute_hash(prev_hash, &envelope);
        *prev_hash = envelope.hash.clone();
        stored.push(envelope);
    }
    Ok(stored)
}

/// What a batch rewrites in the projections, derived from its decided state and events.
fn plan_of(batch: &AppendBatch) -> ProjectionPlan {
    plan(
        &batch.state,
        batch.events.iter().map(|e| &e.payload),
        batch.write_snapshot,
    )
}

#[async_trait]
impl<D> EventLog for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> i32: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
    for<'q> Option<i64>: Encode<'q, Db<D>>,
    for<'q> Option<String>: Encode<'q, Db<D>>,
    for<'q> Option<&'q str>: Encode<'q, Db<D>>,
{
    async fn load_model(&self, name: &str) -> Result<Option<ModelState>, StoreError> {
        let row: Option<SnapshotRow> = sqlx::query_as(
            "SELECT s.model_id, s.state, s.snapshot_version, s.stream_version FROM model_state s \
             JOIN registered_models m ON m.model_id = s.model_id WHERE m.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => self.materialize(row).await.map(Some),
            None => Ok(None),
        }
    }

    async fn model_head(&self, name: &str) -> Result<Option<ModelHead>, StoreError> {
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT s.model_id, s.stream_version, s.snapshot_version FROM model_state s \
             JOIN registered_models m ON m.model_id = s.model_id WHERE m.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(model_id, stream_version, snapshot_version)| ModelHead {
                model_id,
                stream_version,
                snapshot_version,
            }),
        )
    }

    async fn append(&self, batch: AppendBatch) -> Outcome {
        self.append_group(vec![batch])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("an append produced no outcome".into())))
    }

    async fn append_group(&self, batches: Vec<AppendBatch>) -> Vec<Outcome> {
        // Planned before the transaction begins, so no lock is held while rows are built.
        let plans: Vec<ProjectionPlan> = batches.iter().map(plan_of).collect();
        let batch_refs: Vec<&AppendBatch> = batches.iter().collect();
        let plan_refs: Vec<&ProjectionPlan> = plans.iter().collect();
        match self.commit_group(&batch_refs, &plan_refs).await {
            Ok(outcomes) => outcomes,
            Err(e) if batches.len() == 1 => vec![Err(e)],
            // The group's transaction failed as a whole, so none of it was written: one
            // command's statement error (a name taken, a concurrent idempotency key) must not
            // fail the others, so each is appended alone and gets its own outcome.
            Err(_) => {
                let mut outcomes = Vec::with_capacity(batches.len());
                for (batch, plan) in batch_refs.iter().zip(&plan_refs) {
                    let outcome = match self.commit_group(&[*batch], &[*plan]).await {
                        Ok(mut single) => single.pop().unwrap_or_else(|| {
                            Err(StoreError::Corrupt("an append produced no outcome".into()))
                        }),
                        Err(e) => Err(e),
                    };
                    outcomes.push(outcome);
                }
                outcomes
            }
        }
    }

    async fn find_idempotency(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<(String, i32, String)> = sqlx::query_as(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(request_hash, status, body)| IdempotencyRecord {
            scope: scope.to_string(),
            key: key.to_string(),
            request_hash,
            status: u16::try_from(status).unwrap_or(200),
            body,
        }))
    }

    async fn read_events(&self, query: &EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
        let mut qb =
            QueryBuilder::<Db<D>>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
        if let Some(stream) = query.stream_id {
            qb.push(" AND stream_id = ").push_bind(stream.to_string());
        }
        if let Some(after) = query.after_position {
            qb.push(" AND position > ").push_bind(after);
        }
        if let Some(before) = query.before_position {
            qb.push(" AND position < ").push_bind(before);
        }
        if let Some(name) = &query.model_name {
            qb.push(" AND model_name = ").push_bind(name.clone());
        }
        if let Some(version) = query.version {
            qb.push(" AND version = ").push_bind(version);
        }
        if let Some(from) = query.occurred_from_us {
            qb.push(" AND occurred_at_us >= ").push_bind(from);
        }
        if let Some(before) = query.occurred_before_us {
            qb.push(" AND occurred_at_us < ").push_bind(before);
        }
        if let Some(subject) = &query.actor_subject {
            qb.push(" AND actor_subject = ").push_bind(subject.clone());
        }
        if !query.event_types.is_empty() {
            qb.push(" AND ");
            super::reads::push_text_match(
                &mut qb,
                "event_type",
                &TextMatch::In(query.event_types.clone()),
            );
        }
        qb.push(if query.descending {
            " ORDER BY position DESC"
        } else {
            " ORDER BY position ASC"
        });
        qb.push(" LIMIT ").push_bind(query.limit);
        let rows: Vec<EventColumns> = qb.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(EventColumns::into_envelope).collect()
    }

    async fn read_stored_events(
        &self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<EventColumns>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        )))
        .bind(after_position)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn head(&self) -> Result<(i64, String), StoreError> {
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(head.unwrap_or((0, GENESIS_HASH.to_string())))
    }

    async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut tx = D::begin_write(&self.pool).await?;
        let (head, head_hash): (i64, String) =
            sqlx::query_as(D::LOCK_HEAD).fetch_one(&mut *tx).await?;
        let mut expected_prev = head_hash;
        let mut rows = Vec::with_capacity(events.len());
        for (expected_position, event) in (head + 1..).zip(events) {
            if event.position != expected_position || event.prev_hash != expected_prev {
                return Err(StoreError::Corrupt(format!(
                    "imported event at position {} does not continue the target chain (expected position {expected_position})",
                    event.position
                )));
            }
            let payload = event
                .typed_payload()
                .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
            rows.push((event, payload.version()));
            expected_prev = event.hash.clone();
        }
        Self::insert_events(&mut tx, &rows).await?;
        sqlx::query(
            "UPDATE outbox SET published_at_us = $1 WHERE position <= $2 AND published_at_us IS NULL",
        )
        .bind(micros(&chrono::Utc::now()))
        .bind(last.position)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE chain_head SET position = $1, hash = $2 WHERE id = 1")
            .bind(last.position)
            .bind(&last.hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.commits.subscribe()
    }

    fn commit_clock(&self) -> std::sync::Arc<CommitClock> {
        self.clock.clone()
    }
}
