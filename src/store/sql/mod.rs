//! The SQL both backends share, written once as generic code over a [`Dialect`].
//!
//! [`SqlStore<D>`] holds a connection pool of `D`'s database and implements every role trait
//! with the same statements for PostgreSQL and SQLite; `D` is asked only where the two differ
//! (see [`crate::store::dialect`]). Rows decode into the typed structs of [`rows`] by column
//! name. The submodules follow the roles: [`append`] is the write path and the event log
//! (with [`group_writes`], which writes a whole append group's model rows in a few statements),
//! [`reads`] the projection reads, [`outbox`] the relay's tables, the audit records and
//! administration.
//!
//! Generic sqlx code has to state which driver capabilities it uses (that a `&mut Connection`
//! executes queries, that `i64` and `String` bind and decode, ...). Rust does not carry such
//! bounds along with a trait, so each generic `impl` block repeats the same list; it is the
//! list both drivers satisfy, spelled out once in [`SqlStore`]'s documentation below and
//! nowhere different.

mod append;
mod console_sessions;
mod group_writes;
mod outbox;
mod reads;
mod rebuild;
mod rows;
mod uploads;
pub(crate) mod webhooks;

use std::sync::Arc;

use sqlx::{Database, Pool};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::dialect::Dialect;
use super::{CommitClock, StoreError};
pub use rows::EventColumns;

/// The driver of a dialect, and its connection, row and argument types (shorthands for the
/// bounds below).
pub(crate) type Db<D> = <D as Dialect>::Db;
pub(crate) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
pub(crate) type RowOf<D> = <<D as Dialect>::Db as Database>::Row;
pub(crate) type Args<D> = <<D as Dialect>::Db as Database>::Arguments;

/// The store over one database, for either dialect.
///
/// Its generic `impl` blocks all carry these bounds, which both drivers meet:
/// ```text
/// for<'c> &'c mut Conn<D>: Executor<'c, Database = Db<D>>,   // connections run queries
/// Args<D>: IntoArguments<Db<D>>,                             // built queries can be sent
/// for<'r> &'r str: ColumnIndex<RowOf<D>>,                    // FromRow by column name
/// usize: ColumnIndex<RowOf<D>>,                              // tuples by position
/// for<'q> i64 / i32 / String: Encode<'q, Db<D>> + Decode<'q, Db<D>> + Type<Db<D>>,
/// for<'q> &'q str: Encode<'q, Db<D>>, str: Type<Db<D>>,      // borrowed text binds
/// for<'q> Option<i64 / String / &'q str>: Encode<'q, Db<D>>,  // NULLable binds
/// ```
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D::Db>,
    commits: broadcast::Sender<i64>,
    clock: Arc<CommitClock>,
    /// A connection kept between failed attempts at the relay lease (see
    /// [`Dialect::try_acquire_relay_lease`]).
    lease_spare: tokio::sync::Mutex<Option<Conn<D>>>,
    /// When the webhook fan-out last refreshed the queue's statistics, and how many rows it
    /// queued since (see `webhooks::refresh_queue_statistics`).
    pub(crate) queue_statistics: Arc<std::sync::Mutex<webhooks::QueueStatistics>>,
}

impl<D: Dialect> SqlStore<D> {
    /// Wraps a pool and starts listening for other processes' commits, if the dialect can.
    pub(crate) fn open(pool: Pool<D::Db>) -> Self {
        let (commits, _) = broadcast::channel(1024);
        let clock = Arc::new(CommitClock::new(D::COMMITS_ARE_LOCAL));
        D::listen_for_commits(&pool, commits.clone(), clock.clone());
        SqlStore {
            pool,
            commits,
            clock,
            lease_spare: tokio::sync::Mutex::new(None),
            queue_statistics: Default::default(),
        }
    }

    pub fn pool(&self) -> &Pool<D::Db> {
        &self.pool
    }

    /// Announces a local commit: the clock first, so a reader woken by the broadcast, or the
    /// writer once answered, never finds an older generation.
    fn committed(&self, position: i64) {
        self.clock.advance();
        // No receivers is normal (nobody streaming); the send result carries no information.
        let _ = self.commits.send(position);
    }
}

impl From<sqlx::Error> for StoreError {
    /// Sorts driver errors into what callers act on: `Unavailable` (retry later, 503) for the
    /// database being out of reach, `Config` for options it refused, `Backend` for the rest.
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if connection_lost(db.code().as_deref()) => {
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Configuration(_) => StoreError::Config(err.to_string()),
            _ => StoreError::Backend(err.to_string()),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean the server is going away or refusing connections: class 08
/// (connection exception), 57P01-57P03 (shutdown, cannot connect now) and 53300 (too many
/// connections).
fn connection_lost(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300"))
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => match StoreError::from(e) {
                StoreError::Backend(m) => StoreError::Migrate(m),
                unavailable => unavailable,
            },
            other => StoreError::Migrate(other.to_string()),
        }
    }
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
    StoreError::from(err)
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

pub(crate) fn parse_json(what: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id '{text}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_are_classified_by_what_callers_do_about_them() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(refused)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
        assert!(connection_lost(Some("08006")));
        assert!(!connection_lost(Some("23505")));
    }
}
