//! Registry reads from the projection tables: lookups, searches and `models:/` resolution.
//!
//! Searches build their `WHERE` clause from typed filters with a query builder, binding every
//! value, so no input ever becomes SQL text. Every order ends in a unique key (name, then
//! version), which keeps offset pages and keyset cursors from skipping or repeating rows.
//! Nothing here is cached: answers are cached above the store, against the commit clock.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::rows::{MODEL_COLUMNS, ModelColumns, VERSION_COLUMNS, VersionColumns};
use super::{Args, Conn, Db, RowOf, SqlStore, like_literal};
use crate::domain::uri::{ModelUri, VersionRef};
use crate::store::dialect::Dialect;
use crate::store::{
    LastChange, ModelFilter, ModelQuery, ModelView, NumberMatch, Page, Paging, RegistryReads,
    SortKey, StoreError, TextMatch, VersionFilter, VersionQuery, VersionView,
};

/// Pushes one text condition for `column` onto a query builder.
pub(super) fn push_text_match<DB>(qb: &mut QueryBuilder<DB>, column: &str, matcher: &TextMatch)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    match matcher {
        TextMatch::Eq(v) => {
            qb.push(column).push(" = ").push_bind(v.clone());
        }
        TextMatch::Ne(v) => {
            qb.push(column).push(" <> ").push_bind(v.clone());
        }
        TextMatch::Like(v) => {
            qb.push(column).push(" LIKE ").push_bind(v.clone());
        }
        TextMatch::ILike(v) => {
            qb.push("lower(")
                .push(column)
                .push(") LIKE lower(")
                .push_bind(v.clone())
                .push(")");
        }
        TextMatch::Prefix(v) => {
            qb.push(column)
                .push(" LIKE ")
                .push_bind(format!("{}%", like_literal(v)))
                .push(" ESCAPE '\\'");
        }
        TextMatch::Contains(v) => {
            qb.push(column)
                .push(" LIKE ")
                .push_bind(format!("%{}%", like_literal(v)))
                .push(" ESCAPE '\\'");
        }
        TextMatch::In(values) => {
            if values.is_empty() {
                qb.push("1 = 0");
            } else {
                qb.push(column).push(" IN (");
                let mut sep = qb.separated(", ");
                for v in values {
                    sep.push_bind(v.clone());
                }
                sep.push_unseparated(")");
            }
        }
    }
}

/// A tag condition: `Ne` matches entities without the tag too (MLflow's semantics, which its
/// client relies on for ``tag.`mlflow.prompt.is_prompt` != 'true'``).
fn push_tag_match<DB>(qb: &mut QueryBuilder<DB>, subquery: &str, key: &str, matcher: &TextMatch)
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    match matcher {
        TextMatch::Ne(v) => {
            qb.push("NOT EXISTS (")
                .push(subquery)
                .push(" AND t.key = ")
                .push_bind(key.to_string());
            qb.push(" AND t.value = ").push_bind(v.clone()).push(")");
        }
        other => {
            qb.push("EXISTS (")
                .push(subquery)
                .push(" AND t.key = ")
                .push_bind(key.to_string());
            qb.push(" AND ");
            push_text_match(qb, "t.value", other);
            qb.push(")");
        }
    }
}

fn push_order<DB: Database>(qb: &mut QueryBuilder<DB>, order: &[(SortKey, bool)], versions: bool) {
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
        qb.push(column)
            .push(if *descending { " DESC" } else { " ASC" });
    }
    // A total order, so offsets and cursors never skip or repeat rows.
    if !has_name {
        qb.push(if first { "m.name ASC" } else { ", m.name ASC" });
        first = false;
    }
    if versions && !has_version {
        qb.push(if first {
            "v.version DESC"
        } else {
            ", v.version DESC"
        });
    }
}

fn next_paging(
    paging: &Paging,
    limit: i64,
    more: bool,
    last_key: Option<String>,
) -> Option<Paging> {
    if !more {
        return None;
    }
    match paging {
        Paging::Offset(offset) => Some(Paging::Offset(offset + limit)),
        Paging::After(_) => last_key.map(Paging::After),
    }
}

/// The `FROM` of every version read: versions with their model's name.
const VERSIONS_FROM: &str =
    "FROM model_versions v JOIN registered_models m ON m.model_id = v.model_id";

#[async_trait]
impl<D> RegistryReads for SqlStore<D>
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
    async fn get_model(&self, name: &str) -> Result<Option<ModelView>, StoreError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM registered_models m WHERE m.name = $1");
        let row: Option<ModelColumns> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(ModelColumns::into_view).transpose()
    }

    async fn model_name_by_id(&self, model_id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT name FROM registered_models WHERE model_id = $1")
                .bind(model_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(name,)| name))
    }

    async fn last_model_named(
        &self,
        name: &str,
        except_model_id: &str,
    ) -> Result<Option<String>, StoreError> {
        // events_by_model_name (model_name, position) serves this without a scan.
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT stream_id FROM events WHERE model_name = $1 AND stream_id <> $2 \
             ORDER BY position DESC LIMIT 1",
        )
        .bind(name)
        .bind(except_model_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    async fn search_models(&self, query: &ModelQuery) -> Result<Page<ModelView>, StoreError> {
        let mut qb = QueryBuilder::<Db<D>>::new(format!(
            "SELECT {MODEL_COLUMNS} FROM registered_models m WHERE 1 = 1"
        ));
        for filter in &query.filters {
            qb.push(" AND ");
            match filter {
                ModelFilter::Name(matcher) => push_text_match(&mut qb, "m.name", matcher),
                ModelFilter::Tag { key, matcher } => push_tag_match(
                    &mut qb,
                    "SELECT 1 FROM model_tags t WHERE t.model_id = m.model_id",
                    key,
                    matcher,
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
        let rows: Vec<ModelColumns> = qb.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > query.limit;
        let items = rows
            .into_iter()
            .take(query.limit.max(0) as usize)
            .map(ModelColumns::into_view)
            .collect::<Result<Vec<_>, _>>()?;
        let last = items.last().map(|m| m.name.clone());
        Ok(Page {
            next: next_paging(&query.paging, query.limit, more, last),
            items,
        })
    }

    async fn get_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<VersionView>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} WHERE m.name = $1 AND v.version = $2"
        );
        let row: Option<VersionColumns> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.map(VersionColumns::into_view).transpose()
    }

    async fn search_versions(&self, query: &VersionQuery) -> Result<Page<VersionView>, StoreError> {
        let mut qb = QueryBuilder::<Db<D>>::new(format!(
            "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} WHERE 1 = 1"
        ));
        for filter in &query.filters {
            qb.push(" AND ");
            match filter {
                VersionFilter::Name(matcher) => push_text_match(&mut qb, "m.name", matcher),
                VersionFilter::Version(v) => {
                    qb.push("v.version = ").push_bind(*v);
                }
                VersionFilter::VersionCompare(m) => {
                    let (op, n) = match m {
                        NumberMatch::Ne(n) => (" <> ", *n),
                        NumberMatch::Lt(n) => (" < ", *n),
                        NumberMatch::Le(n) => (" <= ", *n),
                        NumberMatch::Gt(n) => (" > ", *n),
                        NumberMatch::Ge(n) => (" >= ", *n),
                        NumberMatch::In(values) if values.is_empty() => {
                            qb.push("1 = 0");
                            continue;
                        }
                        NumberMatch::In(values) => {
                            qb.push("v.version IN (");
                            let mut sep = qb.separated(", ");
                            for v in values {
                                sep.push_bind(*v);
                            }
                            sep.push_unseparated(")");
                            continue;
                        }
                    };
                    qb.push("v.version").push(op).push_bind(n);
                }
                VersionFilter::RunId(matcher) => push_text_match(&mut qb, "v.run_id", matcher),
                VersionFilter::Source(matcher) => push_text_match(&mut qb, "v.source", matcher),
                VersionFilter::Stage(matcher) => push_text_match(&mut qb, "v.stage", matcher),
                VersionFilter::Tag { key, matcher } => push_tag_match(
                    &mut qb,
                    "SELECT 1 FROM version_tags t WHERE t.model_id = v.model_id AND t.version = v.version",
                    key,
                    matcher,
                ),
                VersionFilter::Alias(alias) => {
                    qb.push(
                        "EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = v.model_id \
                         AND a.version = v.version AND a.alias = ",
                    )
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
        let rows: Vec<VersionColumns> = qb.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > query.limit;
        let items = rows
            .into_iter()
            .take(query.limit.max(0) as usize)
            .map(VersionColumns::into_view)
            .collect::<Result<Vec<_>, _>>()?;
        let last = items.last().map(|v| format!("{}\0{}", v.name, v.version));
        Ok(Page {
            next: next_paging(&query.paging, query.limit, more, last),
            items,
        })
    }

    async fn resolve(&self, uri: &ModelUri) -> Result<Option<VersionView>, StoreError> {
        let base = format!("SELECT {VERSION_COLUMNS} {VERSIONS_FROM}");
        let name = uri.name.as_str();
        let row: Option<VersionColumns> = match &uri.reference {
            VersionRef::Number(n) => {
                let sql = format!("{base} WHERE m.name = $1 AND v.version = $2");
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .bind(*n as i64)
                    .fetch_optional(&self.pool)
                    .await?
            }
            VersionRef::Stage(stage) => {
                let sql = format!(
                    "{base} WHERE m.name = $1 AND v.stage = $2 ORDER BY v.version DESC LIMIT 1"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .bind(stage.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
            VersionRef::Latest => {
                let sql = format!("{base} WHERE m.name = $1 ORDER BY v.version DESC LIMIT 1");
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
            VersionRef::Alias(alias) => {
                let sql = format!(
                    "{base} JOIN aliases a ON a.model_id = v.model_id AND a.version = v.version \
                     WHERE m.name = $1 AND a.alias = $2"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .bind(alias.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.map(VersionColumns::into_view).transpose()
    }

    async fn latest_versions(&self, model_id: &str) -> Result<Vec<VersionView>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} {VERSIONS_FROM} WHERE v.model_id = $1 AND v.version IN \
             (SELECT MAX(version) FROM model_versions WHERE model_id = $1 GROUP BY stage) \
             ORDER BY v.version"
        );
        let rows: Vec<VersionColumns> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(model_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(VersionColumns::into_view).collect()
    }

    async fn latest_versions_many(
        &self,
        model_ids: &[String],
    ) -> Result<Vec<VersionView>, StoreError> {
        // Each id once, remembering where it was first asked for.
        let mut rank: HashMap<&str, usize> = HashMap::with_capacity(model_ids.len());
        let mut wanted: Vec<&str> = Vec::with_capacity(model_ids.len());
        for id in model_ids {
            if !rank.contains_key(id.as_str()) {
                rank.insert(id, wanted.len());
                wanted.push(id);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // Each (model, stage)'s highest version, joined back to its row: one pass for all.
        let mut qb = QueryBuilder::<Db<D>>::new(format!(
            "SELECT {VERSION_COLUMNS} FROM (SELECT model_id, MAX(version) AS version \
             FROM model_versions WHERE model_id IN ("
        ));
        let mut ids = qb.separated(", ");
        for id in &wanted {
            ids.push_bind(id.to_string());
        }
        qb.push(
            ") GROUP BY model_id, stage) l \
             JOIN model_versions v ON v.model_id = l.model_id AND v.version = l.version \
             JOIN registered_models m ON m.model_id = v.model_id",
        );
        let rows: Vec<VersionColumns> = qb.build_query_as().fetch_all(&self.pool).await?;
        let mut views = rows
            .into_iter()
            .map(VersionColumns::into_view)
            .collect::<Result<Vec<_>, _>>()?;
        // In the order asked for, as if `latest_versions` had been called for each.
        views.sort_by_key(|v| (rank.get(v.model_id.as_str()).copied(), v.version));
        Ok(views)
    }

    async fn last_changes_many(&self, model_ids: &[String]) -> Result<Vec<LastChange>, StoreError> {
        if model_ids.is_empty() {
            return Ok(Vec::new());
        }
        // The projection row knows its stream version, and (stream_id, stream_version) is the
        // log's unique key: one index probe per model, however long its history.
        let mut qb = QueryBuilder::<Db<D>>::new(
            "SELECT m.model_id, e.event_type, e.actor_subject, e.actor_issuer, \
             e.actor_display_name, e.occurred_at_us FROM registered_models m \
             JOIN events e ON e.stream_id = m.model_id AND e.stream_version = m.stream_version \
             WHERE m.model_id IN (",
        );
        let mut ids = qb.separated(", ");
        for id in model_ids {
            ids.push_bind(id.clone());
        }
        qb.push(")");
        let rows: Vec<(String, String, String, String, Option<String>, i64)> =
            qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(
                |(model_id, event_type, subject, issuer, display_name, at_us)| LastChange {
                    model_id,
                    event_type,
                    actor: crate::domain::Actor {
                        subject,
                        issuer,
                        display_name,
                    },
                    occurred_at: crate::store::projection::from_micros(at_us),
                },
            )
            .collect())
    }
}
