//! Web console sessions, one row per signed-in browser, shared by every process on the
//! database so a balancer may send each page to any of them.
//!
//! The row is looked up by the SHA-256 of the cookie value (computed by the caller), and an
//! expired row is treated as absent by the same statement that reads it: there is no window
//! in which a session past its end still answers.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::{Args, Conn, Db, RowOf, SqlStore};
use crate::store::dialect::Dialect;
use crate::store::{ConsoleSessionRecord, ConsoleSessions, StoreError};

#[async_trait]
impl<D> ConsoleSessions for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,
    Args<D>: IntoArguments<Db<D>>,
    for<'r> &'r str: ColumnIndex<RowOf<D>>,
    usize: ColumnIndex<RowOf<D>>,
    for<'q> i64: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
    for<'q> &'q str: Encode<'q, Db<D>>,
    str: Type<Db<D>>,
{
    async fn create_console_session(&self, s: &ConsoleSessionRecord) -> Result<(), StoreError> {
        // Expired rows go when a new one arrives: sign-ins are rare enough for this to be the
        // whole clean-up, and the expiry index keeps it one range delete.
        sqlx::query("DELETE FROM console_sessions WHERE expires_at_us <= $1")
            .bind(s.created_at_us)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, csrf_token, principal, created_at_us, \
             expires_at_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_sha256)
        .bind(&s.csrf_token)
        .bind(&s.principal)
        .bind(s.created_at_us)
        .bind(s.expires_at_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn console_session(
        &self,
        id_sha256: &str,
        now_us: i64,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT csrf_token, principal, created_at_us, expires_at_us FROM console_sessions \
             WHERE id_sha256 = $1 AND expires_at_us > $2",
        )
        .bind(id_sha256)
        .bind(now_us)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(csrf_token, principal, created_at_us, expires_at_us)| ConsoleSessionRecord {
                id_sha256: id_sha256.to_string(),
                csrf_token,
                principal,
                created_at_us,
                expires_at_us,
            },
        ))
    }

    async fn delete_console_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
