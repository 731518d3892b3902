//! Open artifact upload sessions, kept in the database so every process sees them.
//!
//! One upload is several requests (start, one PUT per file, commit) and a load balancer may send
//! each to a different process. The session row therefore carries everything the steps must
//! agree on: its owner and model (checked on every step), how many files are still streaming
//! (`inflight`) and whether a commit has frozen it (`committing`). Both guards are single-row
//! `UPDATE ... WHERE` statements: in PostgreSQL the second of two racing updates waits for the
//! first and re-checks its condition on the row the first wrote, and SQLite runs one write
//! transaction at a time, so "a file starts streaming" and "a commit freezes the session" can
//! never both succeed against the same old row.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

use super::{Args, Conn, Db, RowOf, SqlStore};
use crate::domain::events::{Actor, ManifestFile};
use crate::store::dialect::Dialect;
use crate::store::projection::micros;
use crate::store::{
    FileUploadStart, NewUploadSession, StoreError, UploadCommitStart, UploadSessions,
};

/// Matches the session only for its own model and owner: anyone else is told it does not exist.
const SESSION_IS: &str = "id = $1 AND model_name = $2 AND owner_issuer = $3 AND owner_subject = $4";

#[async_trait]
impl<D> UploadSessions for SqlStore<D>
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
    async fn create_upload_session(&self, session: &NewUploadSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upload_sessions (id, model_name, owner_issuer, owner_subject, store_name, \
             created_at_us) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.id.to_string())
        .bind(&session.model)
        .bind(&session.owner.issuer)
        .bind(&session.owner.subject)
        .bind(&session.store)
        .bind(micros(&session.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn begin_file_upload(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
        path: &str,
    ) -> Result<FileUploadStart, StoreError> {
        let id = id.to_string();
        let mut tx = D::begin_write(&self.pool).await?;
        // RETURNING hands back the store in the same statement that claims the session.
        let claimed: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE upload_sessions SET inflight = inflight + 1 \
             WHERE {SESSION_IS} AND committing = 0 RETURNING store_name"
        )))
        .bind(&id)
        .bind(model)
        .bind(&owner.issuer)
        .bind(&owner.subject)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((store,)) = claimed else {
            let exists: Option<(i32,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT committing FROM upload_sessions WHERE {SESSION_IS}"
            )))
            .bind(&id)
            .bind(model)
            .bind(&owner.issuer)
            .bind(&owner.subject)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(match exists {
                Some(_) => FileUploadStart::Committing,
                None => FileUploadStart::NoSession,
            });
        };
        // A path already stored may be replaced; one still streaming may not (the conflict
        // update's WHERE leaves it alone, so no row is touched).
        let marked = sqlx::query(
            "INSERT INTO upload_session_files (session_id, path, state) VALUES ($1, $2, 'uploading') \
             ON CONFLICT (session_id, path) DO UPDATE SET state = 'uploading' \
             WHERE upload_session_files.state = 'stored'",
        )
        .bind(&id)
        .bind(path)
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&marked) == 0 {
            tx.rollback().await?;
            return Ok(FileUploadStart::PathBusy);
        }
        tx.commit().await?;
        Ok(FileUploadStart::Started { store })
    }

    async fn finish_file_upload(
        &self,
        id: Uuid,
        path: &str,
        stored: Option<&ManifestFile>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let mut tx = D::begin_write(&self.pool).await?;
        sqlx::query(
            "UPDATE upload_sessions SET inflight = inflight - 1 WHERE id = $1 AND inflight > 0",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        match stored {
            Some(file) => {
                sqlx::query(
                    "UPDATE upload_session_files SET state = 'stored', size = $3, sha256 = $4 \
                     WHERE session_id = $1 AND path = $2",
                )
                .bind(&id)
                .bind(path)
                .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
                .bind(&file.sha256)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM upload_session_files WHERE session_id = $1 AND path = $2")
                    .bind(&id)
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn begin_upload_commit(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<UploadCommitStart, StoreError> {
        let id = id.to_string();
        let mut tx = D::begin_write(&self.pool).await?;
        let frozen: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE upload_sessions SET committing = 1 \
             WHERE {SESSION_IS} AND committing = 0 AND inflight = 0 RETURNING store_name"
        )))
        .bind(&id)
        .bind(model)
        .bind(&owner.issuer)
        .bind(&owner.subject)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((store,)) = frozen else {
            let exists: Option<(i32,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT committing FROM upload_sessions WHERE {SESSION_IS}"
            )))
            .bind(&id)
            .bind(model)
            .bind(&owner.issuer)
            .bind(&owner.subject)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(match exists {
                Some(_) => UploadCommitStart::Busy,
                None => UploadCommitStart::NoSession,
            });
        };
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT path, size, sha256 FROM upload_session_files \
             WHERE session_id = $1 AND state = 'stored' ORDER BY path",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let files = rows
            .into_iter()
            .map(|(path, size, sha256)| ManifestFile {
                path,
                size: u64::try_from(size).unwrap_or(0),
                sha256,
            })
            .collect();
        Ok(UploadCommitStart::Frozen { store, files })
    }

    async fn finish_upload_commit(&self, id: Uuid, created: bool) -> Result<(), StoreError> {
        let id = id.to_string();
        let mut tx = D::begin_write(&self.pool).await?;
        if created {
            sqlx::query("DELETE FROM upload_session_files WHERE session_id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE upload_sessions SET committing = 0 WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_upload_session(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let id = id.to_string();
        let mut tx = D::begin_write(&self.pool).await?;
        let open: Option<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT store_name FROM upload_sessions WHERE {SESSION_IS} AND committing = 0"
        )))
        .bind(&id)
        .bind(model)
        .bind(&owner.issuer)
        .bind(&owner.subject)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((store,)) = open else {
            tx.rollback().await?;
            return Ok(None);
        };
        let paths: Vec<(String,)> = sqlx::query_as(
            "SELECT path FROM upload_session_files WHERE session_id = $1 AND state = 'stored'",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM upload_session_files WHERE session_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM upload_sessions WHERE id = $1 AND committing = 0")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((store, paths.into_iter().map(|(p,)| p).collect())))
    }
}
