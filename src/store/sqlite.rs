//! The SQLite dialect: the embedded default, same schema and SQL as PostgreSQL.
//!
//! SQLite allows one writer at a time; appends start with `BEGIN IMMEDIATE` so the write lock is
//! taken before anything is read, which makes the chain head read-then-update safe without
//! `FOR UPDATE` and avoids SQLITE_BUSY upgrades mid-transaction. WAL mode lets reads proceed
//! while a write is in progress. One server process owns a database file (see
//! docs/architecture.md), so every commit is local: the commit clock is always reliable and
//! that process always leads the relay.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Pool, Transaction};
use tokio::sync::broadcast;

use super::dialect::{Dialect, NewBody, NewDelivery};
use super::sql::SqlStore;
use super::{Backend, CommitClock, RelayLease, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// What SQLite needs told differently.
pub struct SqliteDialect;

pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqlStore<SqliteDialect> {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed event survives power loss, as in PostgreSQL.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // LIKE must be case-sensitive, as in PostgreSQL (ILIKE is spelled lower() LIKE lower()).
            .pragma("case_sensitive_like", "ON")
            // Each connection's worker thread hands rows over through a channel; sqlx's default
            // of 50 rows makes a long read (a rebuild's scan, `audit verify`) stop and wake the
            // worker every 50 rows, and the context switches cost more than the reading. 2,048
            // rows of event text are at most a few MB.
            .row_buffer_size(2048);
        let pool: SqlitePool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .connect_with(options)
            .await?;
        Ok(SqlStore::open(pool))
    }
}

/// The single process always leads; there is nothing to lose.
struct SoleProcess;

#[async_trait::async_trait]
impl RelayLease for SoleProcess {
    async fn still_held(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    const BACKEND: Backend = Backend::Sqlite;
    const LOCK_HEAD: &'static str = "SELECT position, hash FROM chain_head WHERE id = 1";
    const COMMITS_ARE_LOCAL: bool = true;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const ANNOUNCE_REBUILD: Option<&'static str> = None;
    // SQLite plans these statements from their indexes alone; it never ran ANALYZE here.
    const REFRESH_QUEUE_STATISTICS: Option<&'static str> = None;
    const LOCK_DELIVERIES_READ: &'static str = "";
    const PREPARE_SWAP: &'static [&'static str] = &[];
    const SWAP_ONLY_DIFFERENCES: bool = false;

    async fn begin_write(pool: &Pool<Sqlite>) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with(Self::BEGIN_WRITE).await
    }

    async fn insert_fan_out_rows(
        tx: &mut Transaction<'static, Sqlite>,
        bodies: &[NewBody<'_>],
        deliveries: &[NewDelivery<'_>],
    ) -> Result<(), sqlx::Error> {
        super::sql::webhooks::insert_fan_out_rows_sqlite(tx, bodies, deliveries).await
    }

    async fn migrate(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
        MIGRATOR.run(pool).await?;
        Ok(())
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn listen_for_commits(
        _pool: &Pool<Sqlite>,
        _commits: broadcast::Sender<i64>,
        _clock: Arc<CommitClock>,
    ) {
    }

    async fn try_acquire_relay_lease(
        _pool: &Pool<Sqlite>,
        _spare: &tokio::sync::Mutex<Option<SqliteConnection>>,
    ) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        Ok(Some(Box::new(SoleProcess)))
    }
}
