//! The SQLite store: the embedded default, same schema and SQL as PostgreSQL.
//!
//! SQLite allows one writer at a time; appends start with `BEGIN IMMEDIATE` so the write lock is
//! taken before anything is read, which makes the chain head read-then-update safe without
//! `FOR UPDATE` and avoids SQLITE_BUSY upgrades mid-transaction. WAL mode lets reads proceed
//! while a write is in progress. Commits are announced in-process only.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::broadcast;

use super::sql::impl_sql_store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) commits: broadcast::Sender<i64>,
    pub(crate) cache: std::sync::Arc<super::cache::ReadCache>,
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    const LOCK_HEAD: &'static str = "SELECT position, hash FROM chain_head WHERE id = 1";

    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed event survives power loss, as in PostgreSQL.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // LIKE must be case-sensitive, as in PostgreSQL (ILIKE is spelled lower() LIKE lower()).
            .pragma("case_sensitive_like", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .connect_with(options)
            .await?;
        let (commits, _) = broadcast::channel(1024);
        // One process writes an SQLite store (see docs/architecture.md), so local invalidation is
        // complete.
        let cache = std::sync::Arc::new(super::cache::ReadCache::new(true));
        Ok(SqliteStore {
            pool,
            commits,
            cache,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Tx<'static>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    fn notify(&self, position: i64) {
        self.cache.invalidate();
        let _ = self.commits.send(position);
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
