//! The relay's tables (the event and checkpoint outboxes), the audit records, and operating the
//! store (migrations, health, projection dumps).
//!
//! Outbox rows are written by a trigger on `events`, in the append transaction, so an event is
//! committed if and only if it is queued for publishing. A checkpoint is released to the relay
//! only once every event it covers has been published, so subscribers always receive a
//! checkpoint after the events it vouches for.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::rows::{
    CHECKPOINT_COLUMNS, CheckpointRow, DenialRow, EVENT_COLUMNS, EventColumns, MODEL_COLUMNS,
    ModelColumns, SnapshotRow, VERSION_COLUMNS, VersionColumns,
};
use super::{Args, Conn, Db, RowOf, SqlStore};
use crate::domain::chain::canonical_json_string;
use crate::domain::events::EventEnvelope;
use crate::store::dialect::Dialect;
use crate::store::projection::{from_micros, micros};
use crate::store::{
    AccessDenial, Admin, Audit, Backend, CheckpointRecord, DenialQuery, DenialRecord, Outbox,
    RebuildPause, RebuildReport, RelayLease, StoreError,
};

#[async_trait]
impl<D> Outbox for SqlStore<D>
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
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<EventEnvelope>, StoreError> {
        let columns = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM outbox o JOIN events e ON e.position = o.position \
             WHERE o.published_at_us IS NULL ORDER BY o.position LIMIT $1"
        );
        let rows: Vec<EventColumns> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(EventColumns::into_envelope).collect()
    }

    async fn mark_published(&self, positions: &[i64]) -> Result<(), StoreError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::<Db<D>>::new("UPDATE outbox SET published_at_us = ");
        qb.push_bind(micros(&chrono::Utc::now()));
        qb.push(", attempts = attempts + 1 WHERE position IN (");
        let mut sep = qb.separated(", ");
        for p in positions {
            sep.push_bind(*p);
        }
        sep.push_unseparated(")");
        qb.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_lag(&self) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), StoreError> {
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at_us) FROM outbox WHERE published_at_us IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((count, oldest.map(from_micros)))
    }

    async fn checkpoints_to_publish(
        &self,
        limit: i64,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows: Vec<CheckpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} \
             FROM checkpoint_outbox o JOIN checkpoints c ON c.id = o.checkpoint_id \
             WHERE o.published_at_us IS NULL \
               AND o.position < COALESCE((SELECT MIN(position) FROM outbox WHERE published_at_us IS NULL), 9223372036854775807) \
             ORDER BY o.position, c.created_at_us LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(CheckpointRow::into_record).collect())
    }

    async fn mark_checkpoint_published(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE checkpoint_outbox SET published_at_us = $1 WHERE checkpoint_id = $2")
            .bind(micros(&chrono::Utc::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn try_acquire_relay_lease(&self) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        D::try_acquire_relay_lease(&self.pool, &self.lease_spare).await
    }
}

#[async_trait]
impl<D> Audit for SqlStore<D>
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
    async fn record_denial(&self, denial: AccessDenial) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_decisions (id, occurred_at_us, actor_subject, actor_issuer, action, \
             model_name, version, decision, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&denial.id)
        .bind(micros(&denial.occurred_at))
        .bind(&denial.actor.subject)
        .bind(&denial.actor.issuer)
        .bind(&denial.action)
        .bind(&denial.model_name)
        .bind(denial.version)
        .bind(canonical_json_string(&denial.decision))
        .bind(&denial.request_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn add_denial_repeats(
        &self,
        id: &str,
        more: i64,
        last_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_decision_repeats (decision_id, repeats, last_at_us) \
             VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(more)
        .bind(micros(&last_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn read_denials(&self, query: &DenialQuery) -> Result<Vec<DenialRecord>, StoreError> {
        let mut qb = QueryBuilder::<Db<D>>::new(
            "SELECT id, occurred_at_us, actor_subject, actor_issuer, action, model_name, version, \
             decision, request_id, \
             CAST(1 + COALESCE((SELECT SUM(r.repeats) FROM access_decision_repeats r \
                 WHERE r.decision_id = access_decisions.id), 0) AS BIGINT) AS repeats, \
             (SELECT MAX(r.last_at_us) FROM access_decision_repeats r \
                 WHERE r.decision_id = access_decisions.id) AS last_at_us \
             FROM access_decisions WHERE 1 = 1",
        );
        if let Some(from) = query.occurred_from_us {
            qb.push(" AND occurred_at_us >= ").push_bind(from);
        }
        if let Some(before) = query.occurred_before_us {
            qb.push(" AND occurred_at_us < ").push_bind(before);
        }
        if let Some((at, id)) = &query.after {
            qb.push(" AND (occurred_at_us > ").push_bind(*at);
            qb.push(" OR (occurred_at_us = ").push_bind(*at);
            qb.push(" AND id > ").push_bind(id.clone());
            qb.push("))");
        }
        qb.push(" ORDER BY occurred_at_us ASC, id ASC LIMIT ")
            .push_bind(query.limit);
        let rows: Vec<DenialRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(DenialRow::into_record).collect()
    }

    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (id, position, hash, created_at_us, origin, key_id, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&checkpoint.id)
        .bind(checkpoint.position)
        .bind(&checkpoint.hash)
        .bind(micros(&checkpoint.created_at))
        .bind(&checkpoint.origin)
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.note)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        let row: Option<CheckpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints c \
             ORDER BY c.position DESC, c.created_at_us DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(CheckpointRow::into_record))
    }
}

#[async_trait]
impl<D> Admin for SqlStore<D>
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
    fn backend(&self) -> Backend {
        D::BACKEND
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        D::migrate(&self.pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn rebuild_projections_with(
        &self,
        pause: Option<RebuildPause>,
    ) -> Result<RebuildReport, StoreError> {
        self.rebuild_online(pause).await
    }

    async fn projection_dump(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let models: Vec<ModelColumns> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM registered_models m ORDER BY m.model_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        for row in models {
            out.push(format!("model {:?}", row.into_view()?));
        }
        let versions: Vec<VersionColumns> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m \
             ON m.model_id = v.model_id ORDER BY v.model_id, v.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        for row in versions {
            out.push(format!("version {:?}", row.into_view()?));
        }
        let orphan_versions: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM model_versions v WHERE NOT EXISTS \
             (SELECT 1 FROM registered_models m WHERE m.model_id = v.model_id)",
        )
        .fetch_one(&self.pool)
        .await?;
        out.push(format!("orphan versions {}", orphan_versions.0));
        let tags: Vec<(String, String, String)> =
            sqlx::query_as("SELECT model_id, key, value FROM model_tags ORDER BY model_id, key")
                .fetch_all(&self.pool)
                .await?;
        out.extend(tags.iter().map(|t| format!("model tag {t:?}")));
        let vtags: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT model_id, version, key, value FROM version_tags ORDER BY model_id, version, key",
        )
        .fetch_all(&self.pool)
        .await?;
        out.extend(vtags.iter().map(|t| format!("version tag {t:?}")));
        let aliases: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT model_id, alias, version FROM aliases ORDER BY model_id, alias")
                .fetch_all(&self.pool)
                .await?;
        out.extend(aliases.iter().map(|a| format!("alias {a:?}")));
        // Snapshots are compared as the states they load as: a live snapshot may lag its
        // stream by a few events where a rebuilt one does not.
        let snapshots: Vec<SnapshotRow> = sqlx::query_as(
            "SELECT model_id, state, snapshot_version, stream_version FROM model_state ORDER BY model_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in snapshots {
            let (model_id, stream_version) = (row.model_id.clone(), row.stream_version);
            let state = self.materialize(row).await?;
            let state =
                serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(format!("snapshot {:?}", (model_id, stream_version, state)));
        }
        Ok(out)
    }
}
