//! The SQL both backends share, written once as a macro expanded for PostgreSQL and SQLite.
//!
//! The schema is identical in both (text ids, microsecond integers, JSON as text) and every
//! statement uses `$n` placeholders, which SQLite accepts too, so one body serves both. What
//! differs is supplied by each backend: how a write transaction starts (SQLite needs
//! `BEGIN IMMEDIATE` to take the write lock up front), how the chain head is locked (PostgreSQL
//! `FOR UPDATE`; SQLite's write lock already serializes), and the migrator.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::chain;
use crate::domain::events::{Actor, EventEnvelope};
use crate::store::StoreError;
use crate::store::projection::from_micros;
use crate::store::views::{ModelView, Principal, VersionView};

pub(crate) const EVENT_COLUMNS: &str = "position, event_id, stream_id, stream_version, model_name, event_type, schema_version, payload, occurred_at_us, actor_subject, actor_issuer, actor_display_name, request_id, correlation_id, decision, prev_hash, hash";
pub(crate) const MODEL_COLUMNS: &str = "m.model_id, m.name, m.description, m.tags, m.aliases, m.created_at_us, m.updated_at_us, m.created_by_subject, m.created_by_issuer, m.last_version, m.stream_version";
pub(crate) const VERSION_COLUMNS: &str = "v.model_id, m.name, v.version, v.source, v.run_id, v.description, v.stage, v.tags, v.metrics, v.signature, v.input_example, v.artifact, v.verification_status, v.verification, v.aliases, v.created_at_us, v.updated_at_us, v.created_by_subject, v.created_by_issuer";

/// An event row as stored, in `EVENT_COLUMNS` order: payload and decision are the canonical
/// JSON text the hash covers. Decoded by each backend's row type.
#[derive(Debug, Clone)]
pub struct EventColumns {
    pub position: i64,
    pub event_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub model_name: String,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: String,
    pub occurred_at_us: i64,
    pub actor_subject: String,
    pub actor_issuer: String,
    pub actor_display_name: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub decision: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

fn parse_json(what: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id '{text}': {e}")))
}

impl EventColumns {
    /// The stored fields as hash input, without decoding the JSON columns.
    pub fn text(&self) -> crate::domain::chain::EventText<'_> {
        use crate::domain::chain::Json;
        crate::domain::chain::EventText {
            position: self.position,
            event_id: &self.event_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            model_name: &self.model_name,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: Json::Canonical(&self.payload),
            occurred_at: from_micros(self.occurred_at_us),
            actor_subject: &self.actor_subject,
            actor_issuer: &self.actor_issuer,
            actor_display_name: self.actor_display_name.as_deref(),
            request_id: self.request_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            decision: self.decision.as_deref().map(Json::Canonical),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }

    pub fn into_envelope(self) -> Result<EventEnvelope, StoreError> {
        Ok(EventEnvelope {
            position: self.position,
            event_id: parse_uuid(&self.event_id)?,
            stream_id: parse_uuid(&self.stream_id)?,
            stream_version: self.stream_version,
            model_name: self.model_name,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: parse_json("event payload", &self.payload)?,
            occurred_at: from_micros(self.occurred_at_us),
            actor: Actor {
                subject: self.actor_subject,
                issuer: self.actor_issuer,
                display_name: self.actor_display_name,
            },
            request_id: self.request_id,
            correlation_id: self.correlation_id,
            decision: self
                .decision
                .as_deref()
                .map(|d| parse_json("decision", d))
                .transpose()?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

pub(crate) struct ModelColumns {
    pub model_id: String,
    pub name: String,
    pub description: String,
    pub tags: String,
    pub aliases: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
    pub last_version: i64,
    pub stream_version: i64,
}

impl ModelColumns {
    pub fn into_view(self) -> Result<ModelView, StoreError> {
        Ok(ModelView {
            model_id: self.model_id,
            name: self.name,
            description: self.description,
            tags: serde_json::from_str(&self.tags)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            aliases: serde_json::from_str(&self.aliases)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            created_at: from_micros(self.created_at_us),
            updated_at: from_micros(self.updated_at_us),
            created_by: Principal {
                subject: self.created_by_subject,
                issuer: self.created_by_issuer,
            },
            last_version: self.last_version.max(0) as u64,
            stream_version: self.stream_version,
        })
    }
}

pub(crate) struct VersionColumns {
    pub model_id: String,
    pub name: String,
    pub version: i64,
    pub source: String,
    pub run_id: Option<String>,
    pub description: String,
    pub stage: String,
    pub tags: String,
    pub metrics: String,
    pub signature: Option<String>,
    pub input_example: Option<String>,
    pub artifact: Option<String>,
    pub verification_status: String,
    pub verification: String,
    pub aliases: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
}

impl VersionColumns {
    pub fn into_view(self) -> Result<VersionView, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        Ok(VersionView {
            model_id: self.model_id,
            name: self.name,
            version: self.version.max(0) as u64,
            source: self.source,
            run_id: self.run_id,
            description: self.description,
            stage: self.stage,
            status: "READY",
            tags: serde_json::from_str::<BTreeMap<String, String>>(&self.tags).map_err(corrupt)?,
            metrics: serde_json::from_str(&self.metrics).map_err(corrupt)?,
            signature: self
                .signature
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            input_example: self
                .input_example
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            artifact: self
                .artifact
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            artifact_verified: self.verification_status == "verified",
            verification: serde_json::from_str(&self.verification).map_err(corrupt)?,
            aliases: serde_json::from_str(&self.aliases).map_err(corrupt)?,
            created_at: from_micros(self.created_at_us),
            updated_at: from_micros(self.updated_at_us),
            created_by: Principal {
                subject: self.created_by_subject,
                issuer: self.created_by_issuer,
            },
        })
    }
}

/// Escapes `%`, `_` and `\` so a literal prefix or substring can be matched with LIKE.
pub(crate) fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a unique violation is interpreted: a lost race on the stream (retry the command) or a
/// taken name.
pub(crate) fn classify_unique(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        let what = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
        if what.contains("registered_models") {
            return StoreError::Unique("registered model name".into());
        }
        return StoreError::Conflict {
            stream_id: Uuid::nil(),
            expected: -1,
            actual: -1,
        };
    }
    StoreError::Database(err)
}

/// Genesis hash re-exported for the backends.
pub(crate) const GENESIS: &str = chain::GENESIS_HASH;

/// Pushes one text condition for `column` onto a query builder.
macro_rules! push_text_match {
    ($qb:expr, $column:expr, $matcher:expr) => {{
        let column: &str = $column;
        match $matcher {
            TextMatch::Eq(v) => {
                $qb.push(column).push(" = ").push_bind(v.clone());
            }
            TextMatch::Ne(v) => {
                $qb.push(column).push(" <> ").push_bind(v.clone());
            }
            TextMatch::Like(v) => {
                $qb.push(column).push(" LIKE ").push_bind(v.clone());
            }
            TextMatch::ILike(v) => {
                $qb.push("lower(")
                    .push(column)
                    .push(") LIKE lower(")
                    .push_bind(v.clone())
                    .push(")");
            }
            TextMatch::Prefix(v) => {
                $qb.push(column)
                    .push(" LIKE ")
                    .push_bind(format!("{}%", $crate::store::sql::like_literal(v)))
                    .push(" ESCAPE '\\'");
            }
            TextMatch::Contains(v) => {
                $qb.push(column)
                    .push(" LIKE ")
                    .push_bind(format!("%{}%", $crate::store::sql::like_literal(v)))
                    .push(" ESCAPE '\\'");
            }
            TextMatch::In(values) => {
                if values.is_empty() {
                    $qb.push("1 = 0");
                } else {
                    $qb.push(column).push(" IN (");
                    let mut sep = $qb.separated(", ");
                    for v in values {
                        sep.push_bind(v.clone());
                    }
                    sep.push_unseparated(")");
                }
            }
        }
    }};
}
pub(crate) use push_text_match;

/// A tag condition: `Ne` matches entities without the tag too (MLflow's semantics, which its
/// client relies on for ``tag.`mlflow.prompt.is_prompt` != 'true'``).
macro_rules! push_tag_match {
    ($qb:expr, $subquery:expr, $key:expr, $matcher:expr) => {{
        match $matcher {
            TextMatch::Ne(v) => {
                $qb.push("NOT EXISTS (")
                    .push($subquery)
                    .push(" AND t.key = ")
                    .push_bind($key.clone());
                $qb.push(" AND t.value = ").push_bind(v.clone()).push(")");
            }
            other => {
                $qb.push("EXISTS (")
                    .push($subquery)
                    .push(" AND t.key = ")
                    .push_bind($key.clone());
                $qb.push(" AND ");
                push_text_match!($qb, "t.value", other);
                $qb.push(")");
            }
        }
    }};
}
pub(crate) use push_tag_match;

/// The store implementation shared by both backends. `$store` must provide `pool`,
/// `begin_write()`, `LOCK_HEAD`, `notify`, `BACKEND` and `run_migrations()`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        use futures::TryStreamExt as _;
        use sqlx::Row as _;

        use crate::domain::chain::{canonical_json_string, compute_hash};
        use crate::domain::events::{Actor, EventEnvelope, EventPayload, CURRENT_SCHEMA_VERSION};
        use crate::domain::state::{fold, ModelState};
        use crate::domain::uri::{ModelUri, VersionRef};
        use crate::store::projection::{from_micros, full_plan, micros, ProjectionPlan};
        use crate::store::sql::{
            classify_unique, push_tag_match, push_text_match, EventColumns, ModelColumns,
            VersionColumns, EVENT_COLUMNS, GENESIS, MODEL_COLUMNS, VERSION_COLUMNS,
        };
        use crate::store::{
            AccessDenial, AppendBatch, Backend, CheckpointRecord, ModelHead, DenialQuery, DenialRecord, EventQuery, IdempotencyRecord, ModelFilter,
            ModelQuery, ModelView, Page, Paging, SortKey, Store, StoreError, TextMatch,
            VersionFilter, VersionQuery, VersionView,
        };

        type Row = <$db as sqlx::Database>::Row;
        type Tx<'a> = sqlx::Transaction<'a, $db>;

        fn event_from_row(row: &Row) -> Result<EventEnvelope, StoreError> {
            stored_event_from_row(row)?.into_envelope()
        }

        fn stored_event_from_row(row: &Row) -> Result<EventColumns, StoreError> {
            Ok(EventColumns {
                position: row.try_get(0)?,
                event_id: row.try_get(1)?,
                stream_id: row.try_get(2)?,
                stream_version: row.try_get(3)?,
                model_name: row.try_get(4)?,
                event_type: row.try_get(5)?,
                schema_version: row.try_get(6)?,
                payload: row.try_get(7)?,
                occurred_at_us: row.try_get(8)?,
                actor_subject: row.try_get(9)?,
                actor_issuer: row.try_get(10)?,
                actor_display_name: row.try_get(11)?,
                request_id: row.try_get(12)?,
                correlation_id: row.try_get(13)?,
                decision: row.try_get(14)?,
                prev_hash: row.try_get(15)?,
                hash: row.try_get(16)?,
            })
        }

        fn model_from_row(row: &Row) -> Result<ModelView, StoreError> {
            ModelColumns {
                model_id: row.try_get(0)?,
                name: row.try_get(1)?,
                description: row.try_get(2)?,
                tags: row.try_get(3)?,
                aliases: row.try_get(4)?,
                created_at_us: row.try_get(5)?,
                updated_at_us: row.try_get(6)?,
                created_by_subject: row.try_get(7)?,
                created_by_issuer: row.try_get(8)?,
                last_version: row.try_get(9)?,
                stream_version: row.try_get(10)?,
            }
            .into_view()
        }

        fn version_from_row(row: &Row) -> Result<VersionView, StoreError> {
            VersionColumns {
                model_id: row.try_get(0)?,
                name: row.try_get(1)?,
                version: row.try_get(2)?,
                source: row.try_get(3)?,
                run_id: row.try_get(4)?,
                description: row.try_get(5)?,
                stage: row.try_get(6)?,
                tags: row.try_get(7)?,
                metrics: row.try_get(8)?,
                signature: row.try_get(9)?,
                input_example: row.try_get(10)?,
                artifact: row.try_get(11)?,
                verification_status: row.try_get(12)?,
                verification: row.try_get(13)?,
                aliases: row.try_get(14)?,
                created_at_us: row.try_get(15)?,
                updated_at_us: row.try_get(16)?,
                created_by_subject: row.try_get(17)?,
                created_by_issuer: row.try_get(18)?,
            }
            .into_view()
        }

        /// Rows and bytes per INSERT statement: a group's events go in a few statements of
        /// moderate size rather than one per event or one huge one.
        const INSERT_MAX_ROWS: usize = 256;
        const INSERT_MAX_BYTES: usize = 64 * 1024;

        /// Inserts stored events, each with the version it concerns (its outbox row follows by
        /// trigger), several per statement. Payload and decision are written as canonical JSON
        /// text, exactly the bytes the hash covers.
        async fn insert_events(tx: &mut Tx<'_>, events: &[(&EventEnvelope, Option<u64>)]) -> Result<(), sqlx::Error> {
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
            let mut start = 0;
            while start < rows.len() {
                // At least one row per statement, then as many as fit the bounds.
                let mut end = start + 1;
                let mut bytes = rows[start].payload.len() + rows[start].decision.as_ref().map_or(0, String::len);
                while end < rows.len() && end - start < INSERT_MAX_ROWS {
                    let more = rows[end].payload.len() + rows[end].decision.as_ref().map_or(0, String::len) + 512;
                    if bytes + more > INSERT_MAX_BYTES {
                        break;
                    }
                    bytes += more;
                    end += 1;
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (position, event_id, stream_id, stream_version, model_name, event_type, schema_version, payload, occurred_at_us, \
                     actor_subject, actor_issuer, actor_display_name, request_id, correlation_id, decision, version, prev_hash, hash) ",
                );
                qb.push_values(&rows[start..end], |mut b, row| {
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
                start = end;
            }
            Ok(())
        }

        /// Writes what a plan says into the projection tables.
        async fn write_plan(tx: &mut Tx<'_>, plan: &ProjectionPlan) -> Result<(), StoreError> {
            let id = plan.model_id.as_str();
            let Some(model) = &plan.model else {
                for sql in [
                    "DELETE FROM registered_models WHERE model_id = $1",
                    "DELETE FROM model_tags WHERE model_id = $1",
                    "DELETE FROM model_versions WHERE model_id = $1",
                    "DELETE FROM version_tags WHERE model_id = $1",
                    "DELETE FROM aliases WHERE model_id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut **tx).await?;
                }
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO registered_models (model_id, name, description, tags, aliases, created_at_us, updated_at_us, created_by_subject, created_by_issuer, last_version, stream_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, description = excluded.description, tags = excluded.tags, aliases = excluded.aliases, \
                 updated_at_us = excluded.updated_at_us, last_version = excluded.last_version, stream_version = excluded.stream_version",
            )
            .bind(&model.model_id)
            .bind(&model.name)
            .bind(&model.description)
            .bind(&model.tags_json)
            .bind(&model.aliases_json)
            .bind(model.created_at_us)
            .bind(model.updated_at_us)
            .bind(&model.created_by_subject)
            .bind(&model.created_by_issuer)
            .bind(model.last_version)
            .bind(model.stream_version)
            .execute(&mut **tx)
            .await
            .map_err(classify_unique)?;
            if let Some(tags) = &plan.model_tags {
                sqlx::query("DELETE FROM model_tags WHERE model_id = $1").bind(id).execute(&mut **tx).await?;
                for (key, value) in tags {
                    sqlx::query("INSERT INTO model_tags (model_id, key, value) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(key)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            if let Some(aliases) = &plan.aliases {
                sqlx::query("DELETE FROM aliases WHERE model_id = $1").bind(id).execute(&mut **tx).await?;
                for (alias, version) in aliases {
                    sqlx::query("INSERT INTO aliases (model_id, alias, version) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(alias)
                        .bind(*version)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            for version in &plan.delete_versions {
                sqlx::query("DELETE FROM model_versions WHERE model_id = $1 AND version = $2")
                    .bind(id)
                    .bind(*version)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM version_tags WHERE model_id = $1 AND version = $2")
                    .bind(id)
                    .bind(*version)
                    .execute(&mut **tx)
                    .await?;
            }
            for (row, tags) in &plan.upsert_versions {
                sqlx::query(
                    "INSERT INTO model_versions (model_id, version, source, run_id, description, stage, tags, metrics, signature, input_example, artifact, artifact_digest, \
                     verification_status, verification, aliases, created_at_us, updated_at_us, created_by_subject, created_by_issuer) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                     ON CONFLICT (model_id, version) DO UPDATE SET description = excluded.description, stage = excluded.stage, tags = excluded.tags, \
                     artifact = excluded.artifact, artifact_digest = excluded.artifact_digest, verification_status = excluded.verification_status, \
                     verification = excluded.verification, aliases = excluded.aliases, updated_at_us = excluded.updated_at_us",
                )
                .bind(&row.model_id)
                .bind(row.version)
                .bind(&row.source)
                .bind(&row.run_id)
                .bind(&row.description)
                .bind(&row.stage)
                .bind(&row.tags_json)
                .bind(&row.metrics_json)
                .bind(&row.signature_json)
                .bind(&row.input_example_json)
                .bind(&row.artifact_json)
                .bind(&row.artifact_digest)
                .bind(&row.verification_status)
                .bind(&row.verification_json)
                .bind(&row.aliases_json)
                .bind(row.created_at_us)
                .bind(row.updated_at_us)
                .bind(&row.created_by_subject)
                .bind(&row.created_by_issuer)
                .execute(&mut **tx)
                .await?;
                let Some(tags) = tags else { continue };
                sqlx::query("DELETE FROM version_tags WHERE model_id = $1 AND version = $2")
                    .bind(id)
                    .bind(row.version)
                    .execute(&mut **tx)
                    .await?;
                for (key, value) in tags {
                    sqlx::query("INSERT INTO version_tags (model_id, version, key, value) VALUES ($1, $2, $3, $4)")
                        .bind(id)
                        .bind(row.version)
                        .bind(key)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }

        /// A model's current state from its snapshot row: the snapshot, with the stream's events
        /// after `snapshot_version` folded onto it.
        async fn materialize(
            pool: &sqlx::Pool<$db>,
            model_id: &str,
            snapshot: &str,
            snapshot_version: i64,
            stream_version: i64,
        ) -> Result<ModelState, StoreError> {
            let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("model {model_id} {what}: {e}"));
            let mut state: ModelState = serde_json::from_str(snapshot).map_err(|e| corrupt("snapshot", e))?;
            if snapshot_version < stream_version {
                let id = uuid::Uuid::parse_str(model_id).map_err(|e| StoreError::Corrupt(format!("model id {model_id}: {e}")))?;
                let rows: Vec<(String, i64, String, String, Option<String>)> = sqlx::query_as(
                    "SELECT payload, occurred_at_us, actor_subject, actor_issuer, actor_display_name FROM events \
                     WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
                )
                .bind(model_id)
                .bind(state.stream_version)
                .fetch_all(pool)
                .await?;
                for (payload, at, subject, issuer, display_name) in rows {
                    let payload: EventPayload = serde_json::from_str(&payload).map_err(|e| corrupt("event", e))?;
                    let actor = Actor { subject, issuer, display_name };
                    state = fold(Some(state), id, &payload, from_micros(at), &actor)
                        .ok_or_else(|| StoreError::Corrupt(format!("model {model_id}: an event does not apply")))?;
                }
            }
            Ok(state)
        }

        /// `id, position, hash, created_at_us, origin, key_id, note` of a `checkpoints` row.
        type CheckpointRow = (String, i64, String, i64, String, String, String);

        fn checkpoint_from_row((id, position, hash, at, origin, key_id, note): CheckpointRow) -> CheckpointRecord {
            CheckpointRecord { id, position, hash, created_at: from_micros(at), origin, key_id, note }
        }

        /// Writes one command's model rows: the optimistic check on the snapshot row, the
        /// projections and the idempotency key. `Ok(false)` is a lost race (the stream moved);
        /// nothing was written then, so the rest of a group can go on. A statement error aborts
        /// the whole transaction.
        async fn write_command(tx: &mut Tx<'_>, batch: &AppendBatch) -> Result<bool, StoreError> {
            let stream_id = batch.stream_id.to_string();
            // The snapshot row carries the stream version. The conditional UPDATE also
            // row-locks it, so two writers of one model queue here and the second sees the
            // first's version; a new stream's INSERT does nothing if another created it first.
            let claimed = if batch.expected_version == 0 {
                sqlx::query("INSERT INTO model_state (model_id, stream_version, state, snapshot_version) VALUES ($1, $2, $3, $2) ON CONFLICT (model_id) DO NOTHING")
                    .bind(&stream_id)
                    .bind(batch.plan.stream_version)
                    .bind(batch.plan.snapshot_json.as_deref())
                    .execute(&mut **tx)
                    .await?
            } else {
                // The snapshot itself is only rewritten when the plan carries one (every
                // SNAPSHOT_EVERY events; see `materialize`); an unchanged TOASTed value is not
                // copied by the UPDATE.
                sqlx::query(
                    "UPDATE model_state SET stream_version = $2, state = COALESCE($3, state), \
                     snapshot_version = CASE WHEN $3 IS NULL THEN snapshot_version ELSE $2 END \
                     WHERE model_id = $1 AND stream_version = $4",
                )
                .bind(&stream_id)
                .bind(batch.plan.stream_version)
                .bind(batch.plan.snapshot_json.as_deref())
                .bind(batch.expected_version)
                .execute(&mut **tx)
                .await?
            };
            if claimed.rows_affected() != 1 {
                return Ok(false);
            }
            write_plan(tx, &batch.plan).await?;
            if let Some(record) = &batch.idempotency {
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at_us) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&record.scope)
                .bind(&record.key)
                .bind(&record.request_hash)
                .bind(record.status as i32)
                .bind(&record.body)
                .bind(micros(&chrono::Utc::now()))
                .execute(&mut **tx)
                .await
                .map_err(classify_unique)?;
            }
            Ok(true)
        }

        /// The stored envelopes of one command's events, continuing the chain from
        /// `(position, prev_hash)`, which it advances.
        fn chain_events(batch: &AppendBatch, position: &mut i64, prev_hash: &mut String) -> Result<Vec<EventEnvelope>, StoreError> {
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

        fn push_order(qb: &mut sqlx::QueryBuilder<$db>, order: &[(SortKey, bool)], versions: bool) {
            qb.push(" ORDER BY ");
            let mut first = true;
            let mut has_name = false;
            let mut has_version = false;
            for (key, descending) in order {
                let column = match key {
                    SortKey::Name => {
                        has_name = true;
                        "m.name"
                    }
                    SortKey::Version if versions => {
                        has_version = true;
                        "v.version"
                    }
                    SortKey::Version => continue,
                    SortKey::CreatedAt if versions => "v.created_at_us",
                    SortKey::CreatedAt => "m.created_at_us",
                    SortKey::UpdatedAt if versions => "v.updated_at_us",
                    SortKey::UpdatedAt => "m.updated_at_us",
                };
                if !first {
                    qb.push(", ");
                }
                first = false;
                qb.push(column).push(if *descending { " DESC" } else { " ASC" });
            }
            // A total order, so offsets and cursors never skip or repeat rows.
            if !has_name {
                qb.push(if first { "m.name ASC" } else { ", m.name ASC" });
                first = false;
            }
            if versions && !has_version {
                qb.push(if first { "v.version DESC" } else { ", v.version DESC" });
            }
        }

        fn next_paging(paging: &Paging, limit: i64, more: bool, last_key: Option<String>) -> Option<Paging> {
            if !more {
                return None;
            }
            match paging {
                Paging::Offset(offset) => Some(Paging::Offset(offset + limit)),
                Paging::After(_) => last_key.map(Paging::After),
            }
        }

        impl $store {
            /// Appends a group of commands in one transaction, under one chain-head lock and one
            /// commit (group commit; see docs/architecture.md). Each command's model rows are
            /// written first, in stream-id order so two groups touching the same models lock
            /// them in the same order and cannot deadlock; a command whose stream moved is
            /// answered `Conflict` and the rest go on. Then the head is locked once and every
            /// written command's events are chained and inserted, in arrival order.
            async fn commit_group(&self, batches: &[AppendBatch]) -> Result<Vec<Result<Vec<EventEnvelope>, StoreError>>, StoreError> {
                let mut tx = self.begin_write().await?;
                let mut order: Vec<usize> = (0..batches.len()).collect();
                order.sort_by_key(|&i| batches[i].stream_id);
                let mut written = vec![false; batches.len()];
                for &i in &order {
                    written[i] = write_command(&mut tx, &batches[i]).await?;
                }
                let mut outcomes = Vec::with_capacity(batches.len());
                if !written.contains(&true) {
                    // Nothing to chain: leave the head alone (and unlocked).
                    tx.rollback().await?;
                } else {
                    // Everything above touched only these models' rows. From here to commit the
                    // single chain head is held, so positions are assigned in commit order.
                    let (mut position, mut prev_hash): (i64, String) =
                        sqlx::query_as(Self::LOCK_HEAD).fetch_one(&mut *tx).await?;
                    for (batch, written) in batches.iter().zip(&written) {
                        if *written {
                            outcomes.push(chain_events(batch, &mut position, &mut prev_hash)?);
                        }
                    }
                    let written_batches = batches.iter().zip(&written).filter(|(_, w)| **w).map(|(b, _)| b);
                    let rows: Vec<(&EventEnvelope, Option<u64>)> = outcomes
                        .iter()
                        .zip(written_batches)
                        .flat_map(|(stored, batch)| stored.iter().zip(batch.events.iter().map(|e| e.payload.version())))
                        .collect();
                    insert_events(&mut tx, &rows).await.map_err(classify_unique)?;
                    sqlx::query("UPDATE chain_head SET position = $1, hash = $2 WHERE id = 1")
                        .bind(position)
                        .bind(&prev_hash)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    self.notify(position);
                }
                let mut stored = outcomes.into_iter();
                Ok(batches
                    .iter()
                    .zip(written)
                    .map(|(batch, written)| {
                        if written {
                            stored.next().ok_or_else(|| StoreError::Corrupt("group outcome missing".into()))
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

            async fn get_version_uncached(&self, name: &str, version: i64) -> Result<Option<VersionView>, StoreError> {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id WHERE m.name = $1 AND v.version = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(version_from_row).transpose()
            }

            async fn resolve_uncached(&self, uri: &ModelUri) -> Result<Option<VersionView>, StoreError> {
                let base = format!(
                    "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id"
                );
                let name = uri.name.as_str();
                let row = match &uri.reference {
                    VersionRef::Number(n) => {
                        let sql = format!("{base} WHERE m.name = $1 AND v.version = $2");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(*n as i64).fetch_optional(&self.pool).await?
                    }
                    VersionRef::Stage(stage) => {
                        let sql = format!("{base} WHERE m.name = $1 AND v.stage = $2 ORDER BY v.version DESC LIMIT 1");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(stage.as_str()).fetch_optional(&self.pool).await?
                    }
                    VersionRef::Latest => {
                        let sql = format!("{base} WHERE m.name = $1 ORDER BY v.version DESC LIMIT 1");
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?
                    }
                    VersionRef::Alias(alias) => {
                        let sql = format!(
                            "{base} JOIN aliases a ON a.model_id = v.model_id AND a.version = v.version WHERE m.name = $1 AND a.alias = $2"
                        );
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(alias.as_str()).fetch_optional(&self.pool).await?
                    }
                };
                row.as_ref().map(version_from_row).transpose()
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                Self::BACKEND
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                self.run_migrations().await
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn load_model(&self, name: &str) -> Result<Option<ModelState>, StoreError> {
                let row: Option<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT s.model_id, s.state, s.snapshot_version, s.stream_version FROM model_state s \
                     JOIN registered_models m ON m.model_id = s.model_id WHERE m.name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                let Some((model_id, snapshot, snapshot_version, stream_version)) = row else {
                    return Ok(None);
                };
                materialize(&self.pool, &model_id, &snapshot, snapshot_version, stream_version).await.map(Some)
            }

            async fn append(&self, batch: AppendBatch) -> Result<Vec<EventEnvelope>, StoreError> {
                self.append_group(vec![batch])
                    .await
                    .pop()
                    .unwrap_or_else(|| Err(StoreError::Corrupt("an append produced no outcome".into())))
            }

            async fn append_group(&self, batches: Vec<AppendBatch>) -> Vec<Result<Vec<EventEnvelope>, StoreError>> {
                match self.commit_group(&batches).await {
                    Ok(outcomes) => outcomes,
                    Err(e) if batches.len() == 1 => vec![Err(e)],
                    // The group's transaction failed as a whole, so none of it was written: one
                    // command's statement error (a name taken, a concurrent idempotency key)
                    // must not fail the others, so each is appended alone and gets its own
                    // outcome.
                    Err(_) => {
                        let mut outcomes = Vec::with_capacity(batches.len());
                        for batch in &batches {
                            let outcome = match self.commit_group(std::slice::from_ref(batch)).await {
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
            async fn model_head(&self, name: &str) -> Result<Option<ModelHead>, StoreError> {
                let row: Option<(String, i64, i64)> = sqlx::query_as(
                    "SELECT s.model_id, s.stream_version, s.snapshot_version FROM model_state s \
                     JOIN registered_models m ON m.model_id = s.model_id WHERE m.name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(model_id, stream_version, snapshot_version)| ModelHead { model_id, stream_version, snapshot_version }))
            }

            async fn find_idempotency(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
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

            async fn record_denial(&self, denial: AccessDenial) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO access_decisions (id, occurred_at_us, actor_subject, actor_issuer, action, model_name, version, decision, request_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
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

            async fn get_model(&self, name: &str) -> Result<Option<ModelView>, StoreError> {
                let sql = format!("SELECT {MODEL_COLUMNS} FROM registered_models m WHERE m.name = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?;
                row.as_ref().map(model_from_row).transpose()
            }

            async fn model_name_by_id(&self, model_id: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> = sqlx::query_as("SELECT name FROM registered_models WHERE model_id = $1")
                    .bind(model_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(name,)| name))
            }

            async fn search_models(&self, query: &ModelQuery) -> Result<Page<ModelView>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {MODEL_COLUMNS} FROM registered_models m WHERE 1 = 1"
                ));
                for filter in &query.filters {
                    qb.push(" AND ");
                    match filter {
                        ModelFilter::Name(matcher) => push_text_match!(qb, "m.name", matcher),
                        ModelFilter::Tag { key, matcher } => push_tag_match!(
                            qb,
                            "SELECT 1 FROM model_tags t WHERE t.model_id = m.model_id",
                            key,
                            matcher
                        ),
                    }
                }
                if let Paging::After(after) = &query.paging {
                    qb.push(" AND m.name > ").push_bind(after.clone());
                }
                push_order(&mut qb, &query.order, false);
                qb.push(" LIMIT ").push_bind(query.limit + 1);
                if let Paging::Offset(offset) = query.paging {
                    qb.push(" OFFSET ").push_bind(offset);
                }
                let rows = qb.build().fetch_all(&self.pool).await?;
                let more = rows.len() as i64 > query.limit;
                let items = rows
                    .iter()
                    .take(query.limit.max(0) as usize)
                    .map(model_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let last = items.last().map(|m| m.name.clone());
                Ok(Page { next: next_paging(&query.paging, query.limit, more, last), items })
            }

            async fn get_version(&self, name: &str, version: i64) -> Result<Option<VersionView>, StoreError> {
                let key = format!("v\0{name}\0{version}");
                if let Some(hit) = self.cache.get(&key) {
                    return Ok(hit);
                }
                let generation = self.cache.generation();
                let found = self.get_version_uncached(name, version).await?;
                self.cache.put(generation, key, found.clone());
                Ok(found)
            }

            async fn resolve(&self, uri: &ModelUri) -> Result<Option<VersionView>, StoreError> {
                let key = format!("r\0{}\0{:?}", uri.name.as_str(), uri.reference);
                if let Some(hit) = self.cache.get(&key) {
                    return Ok(hit);
                }
                let generation = self.cache.generation();
                let found = self.resolve_uncached(uri).await?;
                self.cache.put(generation, key, found.clone());
                Ok(found)
            }


            async fn search_versions(&self, query: &VersionQuery) -> Result<Page<VersionView>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id WHERE 1 = 1"
                ));
                for filter in &query.filters {
                    qb.push(" AND ");
                    match filter {
                        VersionFilter::Name(matcher) => push_text_match!(qb, "m.name", matcher),
                        VersionFilter::Version(v) => {
                            qb.push("v.version = ").push_bind(*v);
                        }
                        VersionFilter::RunId(matcher) => push_text_match!(qb, "v.run_id", matcher),
                        VersionFilter::Source(matcher) => push_text_match!(qb, "v.source", matcher),
                        VersionFilter::Stage(matcher) => push_text_match!(qb, "v.stage", matcher),
                        VersionFilter::Tag { key, matcher } => push_tag_match!(
                            qb,
                            "SELECT 1 FROM version_tags t WHERE t.model_id = v.model_id AND t.version = v.version",
                            key,
                            matcher
                        ),
                        VersionFilter::Alias(alias) => {
                            qb.push("EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = v.model_id AND a.version = v.version AND a.alias = ")
                                .push_bind(alias.clone())
                                .push(")");
                        }
                    }
                }
                if let Paging::After(after) = &query.paging {
                    // Cursor for the default order (name ASC, version DESC): "name\0version".
                    let (name, version) = after.rsplit_once('\0').unwrap_or((after.as_str(), "0"));
                    let version: i64 = version.parse().unwrap_or(0);
                    qb.push(" AND (m.name > ").push_bind(name.to_string());
                    qb.push(" OR (m.name = ").push_bind(name.to_string());
                    qb.push(" AND v.version < ").push_bind(version).push("))");
                }
                push_order(&mut qb, &query.order, true);
                qb.push(" LIMIT ").push_bind(query.limit + 1);
                if let Paging::Offset(offset) = query.paging {
                    qb.push(" OFFSET ").push_bind(offset);
                }
                let rows = qb.build().fetch_all(&self.pool).await?;
                let more = rows.len() as i64 > query.limit;
                let items = rows
                    .iter()
                    .take(query.limit.max(0) as usize)
                    .map(version_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let last = items.last().map(|v| format!("{}\0{}", v.name, v.version));
                Ok(Page { next: next_paging(&query.paging, query.limit, more, last), items })
            }


            async fn latest_versions(&self, model_id: &str) -> Result<Vec<VersionView>, StoreError> {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id \
                     WHERE v.model_id = $1 AND v.version IN (SELECT MAX(version) FROM model_versions WHERE model_id = $1 GROUP BY stage) \
                     ORDER BY v.version"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model_id).fetch_all(&self.pool).await?;
                rows.iter().map(version_from_row).collect()
            }

            async fn read_events(&self, query: &EventQuery) -> Result<Vec<EventEnvelope>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
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
                    push_text_match!(qb, "event_type", &TextMatch::In(query.event_types.clone()));
                }
                qb.push(if query.descending { " ORDER BY position DESC" } else { " ORDER BY position ASC" });
                qb.push(" LIMIT ").push_bind(query.limit);
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter().map(event_from_row).collect()
            }

            async fn read_stored_events(&self, after_position: i64, limit: i64) -> Result<Vec<EventColumns>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
                )))
                .bind(after_position)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(stored_event_from_row).collect()
            }

            async fn head(&self) -> Result<(i64, String), StoreError> {
                let head: Option<(i64, String)> = sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(head.unwrap_or((0, GENESIS.to_string())))
            }

            async fn read_denials(&self, query: &DenialQuery) -> Result<Vec<DenialRecord>, StoreError> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, occurred_at_us, actor_subject, actor_issuer, action, model_name, version, decision, request_id \
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
                qb.push(" ORDER BY occurred_at_us ASC, id ASC LIMIT ").push_bind(query.limit);
                let rows = qb.build().fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let decision: String = row.try_get(7)?;
                        Ok(DenialRecord {
                            id: row.try_get(0)?,
                            occurred_at: crate::store::projection::from_micros(row.try_get(1)?),
                            actor: crate::domain::events::Actor {
                                subject: row.try_get(2)?,
                                issuer: row.try_get(3)?,
                                display_name: None,
                            },
                            action: row.try_get(4)?,
                            model_name: row.try_get(5)?,
                            version: row.try_get(6)?,
                            decision: serde_json::from_str(&decision)
                                .map_err(|e| StoreError::Corrupt(format!("access decision: {e}")))?,
                            request_id: row.try_get(8)?,
                        })
                    })
                    .collect()
            }

            async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO checkpoints (id, position, hash, created_at_us, origin, key_id, note) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                let row: Option<CheckpointRow> = sqlx::query_as(
                    "SELECT id, position, hash, created_at_us, origin, key_id, note FROM checkpoints \
                     ORDER BY position DESC, created_at_us DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(checkpoint_from_row))
            }

            async fn checkpoints_to_publish(&self, limit: i64) -> Result<Vec<CheckpointRecord>, StoreError> {
                let rows: Vec<CheckpointRow> = sqlx::query_as(
                    "SELECT c.id, c.position, c.hash, c.created_at_us, c.origin, c.key_id, c.note \
                     FROM checkpoint_outbox o JOIN checkpoints c ON c.id = o.checkpoint_id \
                     WHERE o.published_at_us IS NULL \
                       AND o.position < COALESCE((SELECT MIN(position) FROM outbox WHERE published_at_us IS NULL), 9223372036854775807) \
                     ORDER BY o.position, c.created_at_us LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(checkpoint_from_row).collect())
            }

            async fn mark_checkpoint_published(&self, id: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE checkpoint_outbox SET published_at_us = $1 WHERE checkpoint_id = $2")
                    .bind(micros(&chrono::Utc::now()))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
                let Some(last) = events.last() else { return Ok(()) };
                let mut tx = self.begin_write().await?;
                let (head, head_hash): (i64, String) = sqlx::query_as(Self::LOCK_HEAD).fetch_one(&mut *tx).await?;
                let mut expected_position = head + 1;
                let mut expected_prev = head_hash;
                let mut rows = Vec::with_capacity(events.len());
                for event in events {
                    if event.position != expected_position || event.prev_hash != expected_prev {
                        return Err(StoreError::Corrupt(format!(
                            "imported event at position {} does not continue the target chain (expected position {expected_position})",
                            event.position
                        )));
                    }
                    let payload = event.typed_payload().map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
                    rows.push((event, payload.version()));
                    expected_position += 1;
                    expected_prev = event.hash.clone();
                }
                insert_events(&mut tx, &rows).await?;
                sqlx::query("UPDATE outbox SET published_at_us = $1 WHERE position <= $2 AND published_at_us IS NULL")
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

            async fn rebuild_projections(&self) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                // Holding the chain head keeps appends out while the tables are rewritten.
                let _: (i64, String) = sqlx::query_as(Self::LOCK_HEAD).fetch_one(&mut *tx).await?;
                for table in ["model_state", "registered_models", "model_tags", "model_versions", "version_tags", "aliases"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut *tx).await?;
                }
                let mut states: std::collections::HashMap<uuid::Uuid, ModelState> = std::collections::HashMap::new();
                let mut count = 0u64;
                {
                    let sql = format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY position");
                    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        let event = event_from_row(&row)?;
                        let payload = event
                            .typed_payload()
                            .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
                        let previous = states.remove(&event.stream_id);
                        if let Some(next) = fold(previous, event.stream_id, &payload, event.occurred_at, &event.actor) {
                            states.insert(event.stream_id, next);
                        }
                        count += 1;
                    }
                }
                for state in states.values() {
                    let plan = full_plan(state);
                    sqlx::query("INSERT INTO model_state (model_id, stream_version, state, snapshot_version) VALUES ($1, $2, $3, $2)")
                        .bind(&plan.model_id)
                        .bind(plan.stream_version)
                        .bind(&plan.snapshot_json)
                        .execute(&mut *tx)
                        .await?;
                    write_plan(&mut tx, &plan).await?;
                }
                tx.commit().await?;
                Ok(count)
            }

            async fn projection_dump(&self) -> Result<Vec<String>, StoreError> {
                let mut out = Vec::new();
                let models = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {MODEL_COLUMNS} FROM registered_models m ORDER BY m.model_id"
                )))
                .fetch_all(&self.pool)
                .await?;
                for row in &models {
                    out.push(format!("model {:?}", model_from_row(row)?));
                }
                let versions = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {VERSION_COLUMNS} FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id ORDER BY v.model_id, v.version"
                )))
                .fetch_all(&self.pool)
                .await?;
                for row in &versions {
                    out.push(format!("version {:?}", version_from_row(row)?));
                }
                let orphan_versions: (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM model_versions v WHERE NOT EXISTS (SELECT 1 FROM registered_models m WHERE m.model_id = v.model_id)",
                )
                .fetch_one(&self.pool)
                .await?;
                out.push(format!("orphan versions {}", orphan_versions.0));
                let tags: Vec<(String, String, String)> =
                    sqlx::query_as("SELECT model_id, key, value FROM model_tags ORDER BY model_id, key").fetch_all(&self.pool).await?;
                out.extend(tags.iter().map(|t| format!("model tag {t:?}")));
                let vtags: Vec<(String, i64, String, String)> = sqlx::query_as(
                    "SELECT model_id, version, key, value FROM version_tags ORDER BY model_id, version, key",
                )
                .fetch_all(&self.pool)
                .await?;
                out.extend(vtags.iter().map(|t| format!("version tag {t:?}")));
                let aliases: Vec<(String, String, i64)> =
                    sqlx::query_as("SELECT model_id, alias, version FROM aliases ORDER BY model_id, alias").fetch_all(&self.pool).await?;
                out.extend(aliases.iter().map(|a| format!("alias {a:?}")));
                // Snapshots are compared as the states they load as: a live snapshot may lag its
                // stream by a few events where a rebuilt one does not.
                let snapshots: Vec<(String, i64, String, i64)> =
                    sqlx::query_as("SELECT model_id, stream_version, state, snapshot_version FROM model_state ORDER BY model_id").fetch_all(&self.pool).await?;
                for (model_id, stream_version, snapshot, snapshot_version) in snapshots {
                    let state = materialize(&self.pool, &model_id, &snapshot, snapshot_version, stream_version).await?;
                    let state = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    out.push(format!("snapshot {:?}", (model_id, stream_version, state)));
                }
                Ok(out)
            }

            async fn outbox_pending(&self, limit: i64) -> Result<Vec<EventEnvelope>, StoreError> {
                let columns = EVENT_COLUMNS
                    .split(", ")
                    .map(|c| format!("e.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT {columns} FROM outbox o JOIN events e ON e.position = o.position WHERE o.published_at_us IS NULL ORDER BY o.position LIMIT $1"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?;
                rows.iter().map(event_from_row).collect()
            }

            async fn mark_published(&self, positions: &[i64]) -> Result<(), StoreError> {
                if positions.is_empty() {
                    return Ok(());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE outbox SET published_at_us = ");
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
                Ok((count, oldest.map(crate::store::projection::from_micros)))
            }

            fn subscribe(&self) -> tokio::sync::broadcast::Receiver<i64> {
                self.commits.subscribe()
            }
        }
    };
}
pub(crate) use impl_sql_store;
