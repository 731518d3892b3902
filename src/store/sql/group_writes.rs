//! A whole append group's model rows in a handful of multi-row statements.
//!
//! A group commit (see `store::group`) carries up to 64 commands in one transaction. Written
//! one command at a time, each command costs three or more statements (claim the stream,
//! upsert the model row, upsert each touched version), and on PostgreSQL every statement is a
//! round trip with the group's model rows locked throughout, so the transaction's length grew
//! with the group and PostgreSQL round trips were most of a write's time. Here the group's
//! claims are one `UPDATE ... FROM (VALUES ...) RETURNING` (and one `INSERT ... ON CONFLICT DO
//! NOTHING RETURNING` for new streams), and each projection table gets one statement for the
//! whole group, so a group costs about as many round trips as a single command.
//!
//! Two rules keep this exactly equivalent to writing the commands one after another:
//! - A row may appear only once in a multi-row upsert (PostgreSQL refuses to change a row twice
//!   in one statement). Within one process commands for one model are queued, so a group holds
//!   each model at most once; if it ever does not (several names of one stream in flight), the
//!   plans are written one by one instead.
//! - Rows are sent in model-id order, the order the per-command path locked them in.
//!   PostgreSQL's join in the claim does not promise to lock in that order, so two processes
//!   writing the same models at the same instant can deadlock; PostgreSQL then aborts one
//!   transaction, and the group path appends that group's commands one at a time (see
//!   `append_group`), which locks in order.

use std::collections::{BTreeSet, HashSet};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Transaction, Type};

use super::{Args, Conn, Db, RowOf, SqlStore, classify_unique};
use crate::store::dialect::Dialect;
use crate::store::projection::{ProjectionPlan, micros};
use crate::store::{AppendBatch, StoreError};

type Tx<'a, D> = Transaction<'a, Db<D>>;

/// Rows and (roughly) bytes per statement. SQLite allows 32,766 bound values per statement;
/// the widest table here has 19 columns, so 256 rows stay well inside it, and the byte bound
/// keeps a group with large signatures or input examples from building one huge statement.
const MAX_ROWS: usize = 256;
const MAX_BYTES: usize = 256 * 1024;

/// Splits `items` into runs of at most [`MAX_ROWS`] items and about [`MAX_BYTES`] bytes (a
/// single oversized item still gets a run of its own). The event inserts in append.rs use it
/// too, so every multi-row statement the store writes has the same bounds.
pub(super) fn runs<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        let mut bytes = size(&items[start]);
        while end < items.len() && end - start < MAX_ROWS {
            let more = size(&items[end]);
            if bytes + more > MAX_BYTES {
                break;
            }
            bytes += more;
            end += 1;
        }
        out.push(&items[start..end]);
        start = end;
    }
    out
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
    /// Claims every command's stream (the optimistic check on its snapshot row, which also
    /// row-locks it) and writes the claimed commands' projections and idempotency keys. The
    /// answer says, per command, whether it was written; a command whose stream moved is not,
    /// and nothing of it is. A statement error aborts the whole transaction.
    pub(super) async fn write_commands(
        tx: &mut Tx<'_, D>,
        batches: &[&AppendBatch],
        plans: &[&ProjectionPlan],
    ) -> Result<Vec<bool>, StoreError> {
        let distinct: HashSet<&str> = plans.iter().map(|p| p.model_id.as_str()).collect();
        if distinct.len() != plans.len() {
            // The same stream twice: claim and write one after another, in stream order, so
            // the second sees the first's version (and usually loses the race, as it would
            // have alone).
            let mut order: Vec<usize> = (0..batches.len()).collect();
            order.sort_by_key(|&i| batches[i].stream_id);
            let mut written = vec![false; batches.len()];
            for i in order {
                written[i] = Self::write_commands_once(tx, &[batches[i]], &[plans[i]])
                    .await?
                    .first()
                    .copied()
                    .unwrap_or(false);
            }
            return Ok(written);
        }
        Self::write_commands_once(tx, batches, plans).await
    }

    /// [`Self::write_commands`] for a group that names each stream once.
    async fn write_commands_once(
        tx: &mut Tx<'_, D>,
        batches: &[&AppendBatch],
        plans: &[&ProjectionPlan],
    ) -> Result<Vec<bool>, StoreError> {
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by(|&a, &b| plans[a].model_id.cmp(&plans[b].model_id));
        let (new_streams, moved_streams): (Vec<usize>, Vec<usize>) = order
            .iter()
            .partition(|&&i| batches[i].expected_version == 0);
        let mut claimed: HashSet<String> = HashSet::new();
        for run in runs(&new_streams, |&i| snapshot_size(plans[i])) {
            let mut qb = QueryBuilder::<Db<D>>::new(
                "INSERT INTO model_state (model_id, stream_version, state, snapshot_version) ",
            );
            qb.push_values(run, |mut b, &i| {
                let plan = plans[i];
                b.push_bind(plan.model_id.as_str())
                    .push_bind(plan.stream_version)
                    .push_bind(plan.snapshot_json.as_deref())
                    .push_bind(plan.stream_version);
            });
            qb.push(" ON CONFLICT (model_id) DO NOTHING RETURNING model_id");
            let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut **tx).await?;
            claimed.extend(ids.into_iter().map(|(id,)| id));
        }
        for run in runs(&moved_streams, |&i| snapshot_size(plans[i])) {
            // VALUES columns are named column1.. on both databases. The snapshot itself is only
            // rewritten when the plan carries one; an unchanged TOASTed value is not copied.
            let mut qb = QueryBuilder::<Db<D>>::new(
                "UPDATE model_state SET stream_version = v.column2, \
                 state = COALESCE(v.column3, model_state.state), \
                 snapshot_version = CASE WHEN v.column3 IS NULL \
                 THEN model_state.snapshot_version ELSE v.column2 END FROM (",
            );
            qb.push_values(run, |mut b, &i| {
                let plan = plans[i];
                b.push_bind(plan.model_id.as_str())
                    .push_bind(plan.stream_version)
                    .push_bind(plan.snapshot_json.as_deref())
                    .push_bind(batches[i].expected_version);
            });
            qb.push(
                ") AS v WHERE model_state.model_id = v.column1 \
                 AND model_state.stream_version = v.column4 RETURNING model_state.model_id",
            );
            let ids: Vec<(String,)> = qb.build_query_as().fetch_all(&mut **tx).await?;
            claimed.extend(ids.into_iter().map(|(id,)| id));
        }
        let written: Vec<bool> = plans
            .iter()
            .map(|p| claimed.contains(&p.model_id))
            .collect();
        let mut claimed_plans: Vec<&ProjectionPlan> = order
            .iter()
            .filter(|&&i| written[i])
            .map(|&i| plans[i])
            .collect();
        claimed_plans.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        Self::write_plans(&mut **tx, &claimed_plans, Tables::Live).await?;
        let keys: Vec<_> = order
            .iter()
            .filter(|&&i| written[i])
            .filter_map(|&i| batches[i].idempotency.as_ref())
            .collect();
        let now = micros(&chrono::Utc::now());
        for run in runs(&keys, |r| r.body.len() + r.key.len() + r.scope.len()) {
            let mut qb = QueryBuilder::<Db<D>>::new(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at_us) ",
            );
            qb.push_values(run, |mut b, record| {
                b.push_bind(record.scope.as_str())
                    .push_bind(record.key.as_str())
                    .push_bind(record.request_hash.as_str())
                    .push_bind(record.status as i32)
                    .push_bind(record.body.as_str())
                    .push_bind(now);
            });
            qb.build()
                .execute(&mut **tx)
                .await
                .map_err(classify_unique)?;
        }
        Ok(written)
    }

    /// Writes what the plans say into the projection tables: per table one statement for all
    /// of them (in runs, see [`runs`]). Each plan must name a different model.
    pub(super) async fn write_plans(
        conn: &mut Conn<D>,
        plans: &[&ProjectionPlan],
        tables: Tables,
    ) -> Result<(), StoreError> {
        if plans.is_empty() {
            return Ok(());
        }
        let fresh = matches!(tables, Tables::FreshShadow);
        // A deleted model loses all its rows; rare, so one statement per table and model.
        // (Fresh shadow tables hold nothing of the model to delete.)
        for plan in plans.iter().filter(|p| p.model.is_none() && !fresh) {
            for table in [
                "registered_models",
                "model_tags",
                "model_versions",
                "version_tags",
                "aliases",
            ] {
                let sql = format!("DELETE FROM {} WHERE model_id = $1", tables.name(table));
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(plan.model_id.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let live: Vec<&ProjectionPlan> = plans
            .iter()
            .copied()
            .filter(|p| p.model.is_some())
            .collect();
        let models: Vec<_> = live.iter().filter_map(|p| p.model.as_ref()).collect();
        for run in runs(&models, |m| m.description.len() + m.tags_json.len() + 256) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "INSERT INTO {} (model_id, name, description, tags, aliases, \
                 created_at_us, updated_at_us, created_by_subject, created_by_issuer, last_version, \
                 stream_version) ",
                tables.name("registered_models")
            ));
            qb.push_values(run, |mut b, model| {
                b.push_bind(model.model_id.as_str())
                    .push_bind(model.name.as_str())
                    .push_bind(model.description.as_str())
                    .push_bind(model.tags_json.as_str())
                    .push_bind(model.aliases_json.as_str())
                    .push_bind(model.created_at_us)
                    .push_bind(model.updated_at_us)
                    .push_bind(model.created_by_subject.as_str())
                    .push_bind(model.created_by_issuer.as_str())
                    .push_bind(model.last_version)
                    .push_bind(model.stream_version);
            });
            if !fresh {
                qb.push(
                    " ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, \
                     description = excluded.description, tags = excluded.tags, \
                     aliases = excluded.aliases, updated_at_us = excluded.updated_at_us, \
                     last_version = excluded.last_version, stream_version = excluded.stream_version",
                );
            }
            qb.build()
                .execute(&mut *conn)
                .await
                .map_err(classify_unique)?;
        }

        // Model tags and aliases: the changed sets are replaced whole.
        let tag_owners: Vec<&str> = live
            .iter()
            .filter(|p| p.model_tags.is_some())
            .map(|p| p.model_id.as_str())
            .collect();
        if !fresh {
            Self::delete_where_model_in(conn, "model_tags", &tag_owners).await?;
        }
        let model_tags: Vec<(&str, &str, &str)> = live
            .iter()
            .filter_map(|p| p.model_tags.as_ref().map(|t| (p.model_id.as_str(), t)))
            .flat_map(|(id, tags)| tags.iter().map(move |(k, v)| (id, k.as_str(), v.as_str())))
            .collect();
        for run in runs(&model_tags, |(_, k, v)| k.len() + v.len() + 64) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "INSERT INTO {} (model_id, key, value) ",
                tables.name("model_tags")
            ));
            qb.push_values(run, |mut b, (id, key, value)| {
                b.push_bind(*id).push_bind(*key).push_bind(*value);
            });
            qb.build().execute(&mut *conn).await?;
        }
        let alias_owners: Vec<&str> = live
            .iter()
            .filter(|p| p.aliases.is_some())
            .map(|p| p.model_id.as_str())
            .collect();
        if !fresh {
            Self::delete_where_model_in(conn, "aliases", &alias_owners).await?;
        }
        let aliases: Vec<(&str, &str, i64)> = live
            .iter()
            .filter_map(|p| p.aliases.as_ref().map(|a| (p.model_id.as_str(), a)))
            .flat_map(|(id, aliases)| aliases.iter().map(move |(a, v)| (id, a.as_str(), *v)))
            .collect();
        for run in runs(&aliases, |(_, a, _)| a.len() + 64) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "INSERT INTO {} (model_id, alias, version) ",
                tables.name("aliases")
            ));
            qb.push_values(run, |mut b, (id, alias, version)| {
                b.push_bind(*id).push_bind(*alias).push_bind(*version);
            });
            qb.build().execute(&mut *conn).await?;
        }

        // Versions: deletions first (a plan never deletes and upserts one version, but the
        // order is the per-command path's), then one upsert for every touched version.
        let deleted: Vec<(&str, i64)> = live
            .iter()
            .flat_map(|p| p.delete_versions.iter().map(|v| (p.model_id.as_str(), *v)))
            .collect();
        if !fresh {
            Self::delete_versions_in(conn, "model_versions", &deleted).await?;
            Self::delete_versions_in(conn, "version_tags", &deleted).await?;
        }
        let versions: Vec<_> = live.iter().flat_map(|p| p.upsert_versions.iter()).collect();
        let mut seen: BTreeSet<(&str, i64)> = BTreeSet::new();
        if !versions
            .iter()
            .all(|(row, _)| seen.insert((row.model_id.as_str(), row.version)))
        {
            return Err(StoreError::Corrupt(
                "a projection plan touches one version twice".into(),
            ));
        }
        let version_size = |(row, _): &&(_, _)| {
            let row: &crate::store::projection::VersionRow = row;
            row.tags_json.len()
                + row.metrics_json.len()
                + row.signature_json.as_ref().map_or(0, String::len)
                + row.input_example_json.as_ref().map_or(0, String::len)
                + row.artifact_json.as_ref().map_or(0, String::len)
                + row.verification_json.len()
                + row.description.len()
                + row.source.len()
                + 256
        };
        for run in runs(&versions, version_size) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "INSERT INTO {} (model_id, version, source, run_id, description, stage, \
                 tags, metrics, signature, input_example, artifact, artifact_digest, \
                 verification_status, verification, aliases, created_at_us, updated_at_us, \
                 created_by_subject, created_by_issuer) ",
                tables.name("model_versions")
            ));
            qb.push_values(run, |mut b, (row, _)| {
                b.push_bind(row.model_id.as_str())
                    .push_bind(row.version)
                    .push_bind(row.source.as_str())
                    .push_bind(row.run_id.as_deref())
                    .push_bind(row.description.as_str())
                    .push_bind(row.stage.as_str())
                    .push_bind(row.tags_json.as_str())
                    .push_bind(row.metrics_json.as_str())
                    .push_bind(row.signature_json.as_deref())
                    .push_bind(row.input_example_json.as_deref())
                    .push_bind(row.artifact_json.as_deref())
                    .push_bind(row.artifact_digest.as_deref())
                    .push_bind(row.verification_status.as_str())
                    .push_bind(row.verification_json.as_str())
                    .push_bind(row.aliases_json.as_str())
                    .push_bind(row.created_at_us)
                    .push_bind(row.updated_at_us)
                    .push_bind(row.created_by_subject.as_str())
                    .push_bind(row.created_by_issuer.as_str());
            });
            if !fresh {
                qb.push(
                    " ON CONFLICT (model_id, version) DO UPDATE SET description = excluded.description, \
                     stage = excluded.stage, tags = excluded.tags, metrics = excluded.metrics, \
                     artifact = excluded.artifact, \
                     artifact_digest = excluded.artifact_digest, \
                     verification_status = excluded.verification_status, \
                     verification = excluded.verification, aliases = excluded.aliases, \
                     updated_at_us = excluded.updated_at_us",
                );
            }
            qb.build().execute(&mut *conn).await?;
        }
        let retagged: Vec<(&str, i64)> = versions
            .iter()
            .filter(|(_, tags)| tags.is_some())
            .map(|(row, _)| (row.model_id.as_str(), row.version))
            .collect();
        if !fresh {
            Self::delete_versions_in(conn, "version_tags", &retagged).await?;
        }
        let version_tags: Vec<(&str, i64, &str, &str)> = versions
            .iter()
            .filter_map(|(row, tags)| tags.as_ref().map(|t| (row, t)))
            .flat_map(|(row, tags)| {
                tags.iter()
                    .map(move |(k, v)| (row.model_id.as_str(), row.version, k.as_str(), v.as_str()))
            })
            .collect();
        for run in runs(&version_tags, |(_, _, k, v)| k.len() + v.len() + 64) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "INSERT INTO {} (model_id, version, key, value) ",
                tables.name("version_tags")
            ));
            qb.push_values(run, |mut b, (id, version, key, value)| {
                b.push_bind(*id)
                    .push_bind(*version)
                    .push_bind(*key)
                    .push_bind(*value);
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// `DELETE FROM table WHERE model_id IN (...)`, in runs. `table` is one of the store's
    /// literals, never input.
    pub(super) async fn delete_where_model_in(
        conn: &mut Conn<D>,
        table: &str,
        model_ids: &[&str],
    ) -> Result<(), StoreError> {
        for run in runs(model_ids, |id| id.len()) {
            let mut qb =
                QueryBuilder::<Db<D>>::new(format!("DELETE FROM {table} WHERE model_id IN ("));
            let mut list = qb.separated(", ");
            for id in run {
                list.push_bind(*id);
            }
            qb.push(")");
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// `DELETE FROM table WHERE (model_id, version) IN (VALUES ...)`, in runs.
    async fn delete_versions_in(
        conn: &mut Conn<D>,
        table: &'static str,
        versions: &[(&str, i64)],
    ) -> Result<(), StoreError> {
        for run in runs(versions, |(id, _)| id.len() + 8) {
            let mut qb = QueryBuilder::<Db<D>>::new(format!(
                "DELETE FROM {table} WHERE (model_id, version) IN ("
            ));
            qb.push_values(run, |mut b, (id, version)| {
                b.push_bind(*id).push_bind(*version);
            });
            qb.push(")");
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Which projection tables [`SqlStore::write_plans`] writes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tables {
    /// The live tables: rows are upserted, and the sets a plan replaces are deleted first.
    Live,
    /// A rebuild's shadow tables (`rebuild_` + the live name; see `rebuild`), which start empty
    /// and receive each model once: plain inserts, with nothing to delete or conflict with.
    /// They have no unique indexes, which is what makes the bulk load cheap.
    FreshShadow,
}

impl Tables {
    /// The table to write for a live table's name.
    pub(super) fn name(self, live: &'static str) -> std::borrow::Cow<'static, str> {
        match self {
            Tables::Live => live.into(),
            Tables::FreshShadow => format!("rebuild_{live}").into(),
        }
    }
}

/// Bytes a claim statement carries for a plan: its snapshot, when it rewrites one.
fn snapshot_size(plan: &ProjectionPlan) -> usize {
    plan.snapshot_json.as_ref().map_or(0, String::len) + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_respect_the_row_and_byte_bounds_and_keep_every_item_once() {
        let items: Vec<usize> = (0..1000).collect();
        let by_rows = runs(&items, |_| 1);
        assert_eq!(by_rows.len(), 4);
        assert!(by_rows.iter().all(|r| r.len() <= MAX_ROWS));
        let big: Vec<usize> = vec![MAX_BYTES / 2 + 1; 5];
        let by_bytes = runs(&big, |s| *s);
        assert_eq!(by_bytes.len(), 5, "two half-bound items do not fit one run");
        let oversized = vec![MAX_BYTES * 3];
        assert_eq!(runs(&oversized, |s| *s).len(), 1);
        let flattened: Vec<usize> = by_rows.iter().flat_map(|r| r.iter().copied()).collect();
        assert_eq!(flattened, items);
        assert!(runs(&Vec::<usize>::new(), |_| 1).is_empty());
    }
}
