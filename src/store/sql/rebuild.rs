//! Rebuilding the projections from the log, while the server keeps serving and appending.
//!
//! Projections are derived data: every row of `registered_models`, `model_versions` and the
//! rest is what folding a model's events yields. A rebuild proves it, or repairs a table that a
//! bug or a hand edit left wrong, so it has to be cheap at the size of a large registry and must
//! not stop the registry while it runs. It goes in four steps:
//!
//! 1. **Scan.** Note the committed head `P0`. Read the events up to `P0` in stream order
//!    (`stream_id, stream_version`, the log's unique index), page by page, so one model's
//!    events arrive together: each model is folded once, in memory, and its projection rows are
//!    built once, however many events it has. Only the model being folded is held, which keeps
//!    memory bounded whatever the log's size. Reading, folding and writing run as a pipeline:
//!    one task reads the next page while a blocking thread folds the previous one and the
//!    writer inserts the rows before that.
//! 2. **Load shadow tables.** The rows go into `rebuild_*` tables: temporary tables of this
//!    rebuild's own connection, created empty in the live tables' column order and without
//!    indexes or constraints, so the bulk load costs no index maintenance (and, on PostgreSQL,
//!    no write-ahead log). Nobody else sees them; they vanish with the connection, also when
//!    the rebuild fails.
//! 3. **Catch up.** Appends went on during the scan. The events after `P0` are folded onto the
//!    shadow state of their models (the shadow `model_state` holds each model's full state), and
//!    those models' shadow rows rewritten; repeated until the remaining tail is short.
//! 4. **Swap.** One write transaction takes the projection tables from writers and locks the
//!    chain head (appends now wait), catches up the last few events, makes every live
//!    projection table equal its shadow, and commits. PostgreSQL deletes and inserts only the
//!    rows that differ (comparing is cheaper there than rewriting, and leaves no dead rows
//!    behind); SQLite, whose `DELETE` of a whole table is a truncation and whose row
//!    comparison of large snapshots is slow, replaces the rows wholesale. Readers see the old projections
//!    until that commit and the rebuilt ones after it; only appends wait, for the length of the
//!    copy. On PostgreSQL the tables are locked before the head because appends lock in that
//!    order (model rows, then head): the other order would deadlock with an append in between.
//!
//! Both backends run the same code; they differ only in how a write transaction begins, the
//! table lock, and how other processes hear that the projections changed (see [`Dialect`]).

use std::time::{Duration, Instant};

use sqlx::{
    ColumnIndex, Connection as _, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::group_writes::{Tables, runs};
use super::rows::SnapshotRow;
use super::{Args, Conn, Db, RowOf, SqlStore};
use crate::domain::events::{Actor, EventPayload};
use crate::domain::state::{ModelState, fold};
use crate::store::dialect::Dialect;
use crate::store::projection::{ProjectionPlan, from_micros, full_plan};
use crate::store::{RebuildPause, RebuildReport, StoreError};

/// The projection tables, each rebuilt from its `rebuild_` shadow, with their primary keys.
const PROJECTION_TABLES: [(&str, &str); 6] = [
    ("model_state", "model_id"),
    ("registered_models", "model_id"),
    ("model_tags", "model_id, key"),
    ("model_versions", "model_id, version"),
    ("version_tags", "model_id, version, key"),
    ("aliases", "model_id, alias"),
];

/// Events per page read from the log. Large enough that a page costs one round trip per
/// several milliseconds of folding, small enough that the pages in flight stay a few MB.
const SCAN_PAGE: i64 = 10_000;

/// A batch of plans handed to the writer: at most this many models ...
const BATCH_MODELS: usize = 256;
/// ... or about this many bytes of rows and snapshots, whichever comes first.
const BATCH_BYTES: usize = 8 << 20;

/// Catch-up rounds run before the swap while appends go on; the swap then catches up the rest
/// with appends held. A round that finds fewer than [`SHORT_TAIL`] events ends them early.
const CATCH_UP_ROUNDS: usize = 4;
const SHORT_TAIL: i64 = 1_000;

/// The event columns a fold needs, in stream order.
#[derive(sqlx::FromRow)]
struct ScanRow {
    position: i64,
    stream_id: String,
    stream_version: i64,
    payload: String,
    occurred_at_us: i64,
    actor_subject: String,
    actor_issuer: String,
    actor_display_name: Option<String>,
}

const SCAN_COLUMNS: &str = "position, stream_id, stream_version, payload, occurred_at_us, \
                            actor_subject, actor_issuer, actor_display_name";

impl ScanRow {
    /// Folds this event onto `state`. A payload that does not decode is corruption, named by
    /// its position; an event that does not apply (no creation first) leaves no state, as the
    /// live path's fold does.
    fn fold_onto(
        &self,
        state: Option<ModelState>,
        stream: Uuid,
    ) -> Result<Option<ModelState>, StoreError> {
        let payload: EventPayload = serde_json::from_str(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", self.position)))?;
        let actor = Actor {
            subject: self.actor_subject.clone(),
            issuer: self.actor_issuer.clone(),
            display_name: self.actor_display_name.clone(),
        };
        Ok(fold(
            state,
            stream,
            &payload,
            from_micros(self.occurred_at_us),
            &actor,
        ))
    }
}

/// Plans collected for one write, with their approximate size.
#[derive(Default)]
struct PlanBatch {
    plans: Vec<ProjectionPlan>,
    bytes: usize,
}

impl PlanBatch {
    fn push(&mut self, plan: ProjectionPlan) {
        self.bytes += plan_bytes(&plan);
        self.plans.push(plan);
    }

    fn is_full(&self) -> bool {
        self.plans.len() >= BATCH_MODELS || self.bytes >= BATCH_BYTES
    }
}

fn plan_bytes(plan: &ProjectionPlan) -> usize {
    let versions: usize = plan
        .upsert_versions
        .iter()
        .map(|(row, tags)| {
            512 + row.tags_json.len()
                + row.metrics_json.len()
                + row.signature_json.as_ref().map_or(0, String::len)
                + row.input_example_json.as_ref().map_or(0, String::len)
                + row.artifact_json.as_ref().map_or(0, String::len)
                + row.verification_json.len()
                + tags.as_ref().map_or(0, |t| t.len() * 64)
        })
        .sum();
    versions + plan.snapshot_json.as_ref().map_or(0, String::len) + 512
}

/// Folds the scan's pages, which arrive in stream order, into one full plan per model. Runs on
/// a blocking thread: decoding payloads and building rows is the rebuild's CPU work.
fn fold_pages(
    mut pages: mpsc::Receiver<Vec<ScanRow>>,
    batches: mpsc::Sender<PlanBatch>,
) -> Result<u64, StoreError> {
    let mut folded = 0u64;
    let mut batch = PlanBatch::default();
    // The model being folded: its id text, parsed id and state so far.
    let mut current: Option<(String, Uuid, Option<ModelState>)> = None;
    let finish = |model: Option<(String, Uuid, Option<ModelState>)>, batch: &mut PlanBatch| {
        if let Some((_, _, Some(state))) = model {
            batch.push(full_plan(&state));
        }
    };
    while let Some(page) = pages.blocking_recv() {
        for row in page {
            let same = matches!(&current, Some((id, _, _)) if *id == row.stream_id);
            if !same {
                finish(current.take(), &mut batch);
                if batch.is_full() && batches.blocking_send(std::mem::take(&mut batch)).is_err() {
                    // The writer stopped; its error is the one reported.
                    return Ok(folded);
                }
                let id = super::parse_uuid(&row.stream_id)?;
                current = Some((row.stream_id.clone(), id, None));
            }
            if let Some((_, id, state)) = current.as_mut() {
                *state = row.fold_onto(state.take(), *id)?;
            }
            folded += 1;
        }
    }
    finish(current.take(), &mut batch);
    if !batch.plans.is_empty() {
        let _ = batches.blocking_send(batch);
    }
    Ok(folded)
}

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
    /// Rebuilds every projection from the log without stopping appends (see the module docs).
    /// `pause`, when given, is told the scanned position after the scan and awaited before the
    /// catch-up: tests append during that window to prove the catch-up.
    pub(super) async fn rebuild_online(
        &self,
        pause: Option<RebuildPause>,
    ) -> Result<RebuildReport, StoreError> {
        let started = Instant::now();
        // The shadow tables are temporary tables of this connection, so it never goes back to
        // the pool: closing it drops them, whatever way the rebuild ends.
        let mut conn = self.pool.acquire().await?.detach();
        for (table, _) in PROJECTION_TABLES {
            let sql = format!(
                "CREATE TEMPORARY TABLE rebuild_{table} AS SELECT * FROM {table} WHERE 1 = 0"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
        }
        let (scanned_through, _): (i64, String) =
            sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1")
                .fetch_one(&mut conn)
                .await?;
        let events = self.scan_into_shadow(&mut conn, scanned_through).await?;
        let scan_time = started.elapsed();

        if let Some(pause) = pause {
            let _ = pause.scanned.send(scanned_through);
            let _ = pause.resume.await;
        }

        // Catch up while appends go on, so the swap has only a short tail left.
        for (table, _) in PROJECTION_TABLES {
            let sql =
                format!("CREATE INDEX rebuild_{table}_by_model ON rebuild_{table} (model_id)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
        }
        let mut caught_up_to = scanned_through;
        let mut caught_up = 0u64;
        for _ in 0..CATCH_UP_ROUNDS {
            let (head, _): (i64, String) =
                sqlx::query_as("SELECT position, hash FROM chain_head WHERE id = 1")
                    .fetch_one(&mut conn)
                    .await?;
            if head == caught_up_to {
                break;
            }
            caught_up += Self::catch_up(&mut conn, caught_up_to, head).await?;
            let short = head - caught_up_to < SHORT_TAIL;
            caught_up_to = head;
            if short {
                break;
            }
        }

        let swap_started = Instant::now();
        let mut tx = conn.begin_with(D::BEGIN_WRITE).await?;
        for statement in D::PREPARE_SWAP {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let (head, _): (i64, String) = sqlx::query_as(D::LOCK_HEAD).fetch_one(&mut *tx).await?;
        caught_up += Self::catch_up(&mut *tx, caught_up_to, head).await?;
        let mut rows_rewritten = 0u64;
        for (table, key) in PROJECTION_TABLES {
            let statements = if D::SWAP_ONLY_DIFFERENCES {
                // Only the rows that differ are written: a rebuild of correct projections
                // changes nothing (no dead rows, no write-ahead log), one of a damaged table
                // rewrites only the damage. EXCEPT compares whole rows, NULLs equal.
                [
                    format!(
                        "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM \
                         (SELECT * FROM {table} EXCEPT SELECT * FROM rebuild_{table}) AS stale)"
                    ),
                    format!(
                        "INSERT INTO {table} SELECT * FROM rebuild_{table} \
                         EXCEPT SELECT * FROM {table}"
                    ),
                ]
            } else {
                [
                    format!("DELETE FROM {table}"),
                    format!("INSERT INTO {table} SELECT * FROM rebuild_{table}"),
                ]
            };
            for sql in statements {
                let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
                rows_rewritten += D::rows_affected(&result);
            }
        }
        if let Some(announce) = D::ANNOUNCE_REBUILD {
            sqlx::query(announce).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // Cached answers read before the swap are stale now.
        self.clock.advance();
        let swap_time = swap_started.elapsed();
        let _ = conn.close().await;
        Ok(RebuildReport {
            events: events + caught_up,
            scanned_through,
            caught_up,
            head,
            rows_rewritten,
            scan_time,
            swap_time,
            total_time: started.elapsed(),
        })
    }

    /// Step 1 and 2: reads the log up to `through` in stream order and loads every model's
    /// rows into the shadow tables. Returns the number of events folded.
    async fn scan_into_shadow(&self, conn: &mut Conn<D>, through: i64) -> Result<u64, StoreError> {
        let (page_tx, page_rx) = mpsc::channel::<Vec<ScanRow>>(2);
        let (batch_tx, mut batch_rx) = mpsc::channel::<PlanBatch>(2);
        let pool = self.pool.clone();
        let reader = tokio::spawn(async move {
            let sql = format!(
                "SELECT {SCAN_COLUMNS} FROM events WHERE position <= $1 \
                 AND (stream_id, stream_version) > ($2, $3) \
                 ORDER BY stream_id, stream_version LIMIT $4"
            );
            let mut after = (String::new(), 0i64);
            loop {
                let page: Vec<ScanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(through)
                    .bind(after.0.as_str())
                    .bind(after.1)
                    .bind(SCAN_PAGE)
                    .fetch_all(&pool)
                    .await?;
                let Some(last) = page.last() else {
                    return Ok::<(), StoreError>(());
                };
                after = (last.stream_id.clone(), last.stream_version);
                let full = page.len() as i64 == SCAN_PAGE;
                if page_tx.send(page).await.is_err() || !full {
                    return Ok(());
                }
            }
        });
        let folder = tokio::task::spawn_blocking(move || fold_pages(page_rx, batch_tx));
        let mut written: Result<(), StoreError> = Ok(());
        while let Some(batch) = batch_rx.recv().await {
            if written.is_ok() {
                written = Self::write_shadow(conn, &batch.plans).await;
            }
            if written.is_err() {
                // Dropping the receiver stops the folder, which stops the reader.
                break;
            }
        }
        drop(batch_rx);
        let folded = folder
            .await
            .map_err(|e| StoreError::Corrupt(format!("the rebuild's fold task failed: {e}")))?;
        let read = reader
            .await
            .map_err(|e| StoreError::Corrupt(format!("the rebuild's scan task failed: {e}")))?;
        written?;
        read?;
        folded
    }

    /// Writes whole-model plans into the shadow tables, in one transaction (on SQLite a
    /// transaction per batch, not per statement, is what makes the load fast).
    async fn write_shadow(conn: &mut Conn<D>, plans: &[ProjectionPlan]) -> Result<(), StoreError> {
        let plans: Vec<&ProjectionPlan> = plans.iter().collect();
        let mut tx = conn.begin().await?;
        let snapshot_size =
            |p: &&ProjectionPlan| p.snapshot_json.as_ref().map_or(0, String::len) + 64;
        for run in runs(&plans, snapshot_size) {
            let mut qb = QueryBuilder::<Db<D>>::new(
                "INSERT INTO rebuild_model_state (model_id, stream_version, state, snapshot_version) ",
            );
            qb.push_values(run, |mut b, plan| {
                b.push_bind(plan.model_id.as_str())
                    .push_bind(plan.stream_version)
                    .push_bind(plan.snapshot_json.as_deref())
                    .push_bind(plan.stream_version);
            });
            qb.build().execute(&mut *tx).await?;
        }
        Self::write_plans(&mut *tx, &plans, Tables::FreshShadow).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Step 3: folds the events in `(after, through]` onto their models' shadow state and
    /// rewrites those models' shadow rows. Returns the number of events applied.
    async fn catch_up(conn: &mut Conn<D>, after: i64, through: i64) -> Result<u64, StoreError> {
        let mut applied = 0u64;
        let mut from = after;
        while from < through {
            let sql = format!(
                "SELECT {SCAN_COLUMNS} FROM events WHERE position > $1 AND position <= $2 \
                 ORDER BY position LIMIT $3"
            );
            let page: Vec<ScanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(from)
                .bind(through)
                .bind(SCAN_PAGE)
                .fetch_all(&mut *conn)
                .await?;
            let Some(last) = page.last() else { break };
            from = last.position;
            applied += page.len() as u64;

            // The page's models, in first-seen order, with their shadow state. (A set, not a
            // scan of the list: a page may name thousands of models, and the last catch-up
            // runs while appends wait.)
            let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
            let ids: Vec<&str> = page
                .iter()
                .map(|row| row.stream_id.as_str())
                .filter(|id| seen.insert(id))
                .collect();
            let mut states: std::collections::HashMap<String, Option<ModelState>> =
                std::collections::HashMap::new();
            for run in runs(&ids, |id| id.len()) {
                let mut qb = QueryBuilder::<Db<D>>::new(
                    "SELECT model_id, state, snapshot_version, stream_version \
                     FROM rebuild_model_state WHERE model_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in run {
                    list.push_bind(*id);
                }
                qb.push(")");
                let rows: Vec<SnapshotRow> = qb.build_query_as().fetch_all(&mut *conn).await?;
                for row in rows {
                    let state: ModelState = serde_json::from_str(&row.state).map_err(|e| {
                        StoreError::Corrupt(format!("rebuilt state of {}: {e}", row.model_id))
                    })?;
                    states.insert(row.model_id, Some(state));
                }
            }
            // Events in position order are in stream order within each stream.
            for row in &page {
                let id = super::parse_uuid(&row.stream_id)?;
                let state = states.entry(row.stream_id.clone()).or_insert(None);
                *state = row.fold_onto(state.take(), id)?;
            }
            for (table, _) in PROJECTION_TABLES {
                Self::delete_where_model_in(conn, &format!("rebuild_{table}"), &ids).await?;
            }
            let plans: Vec<ProjectionPlan> = states.values().flatten().map(full_plan).collect();
            Self::write_shadow(conn, &plans).await?;
        }
        Ok(applied)
    }
}

/// How long the rebuild took, for the CLI and the benchmark.
impl RebuildReport {
    pub fn describe(&self) -> String {
        fn secs(d: Duration) -> String {
            format!("{:.2}s", d.as_secs_f64())
        }
        format!(
            "rebuilt projections from {} events in {} (scan through position {} in {}; {} events \
             appended meanwhile caught up; swap at head {} in {}, {} projection rows written)",
            self.events,
            secs(self.total_time),
            self.scanned_through,
            secs(self.scan_time),
            self.caught_up,
            self.head,
            secs(self.swap_time),
            self.rows_rewritten
        )
    }
}
