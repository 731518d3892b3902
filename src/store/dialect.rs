//! What PostgreSQL and SQLite do differently, and nothing else.
//!
//! The store's SQL is written once, generic over a [`Dialect`] (see `sql/`): the schema is the
//! same in both databases (text ids, microsecond integers, JSON as text) and every statement
//! uses `$n` placeholders, which SQLite accepts too. A dialect supplies the sqlx driver type
//! and the few places where the two databases must be told different things: how a write
//! transaction begins (SQLite needs `BEGIN IMMEDIATE` so the write lock is taken before
//! anything is read), how the single chain-head row is locked (PostgreSQL `FOR UPDATE`; in
//! SQLite the write lock already serializes appends), the embedded migrations, how commits by
//! other processes are heard of (PostgreSQL LISTEN/NOTIFY; SQLite has one writing process), and
//! the relay's leader lease (a PostgreSQL advisory lock; SQLite's single process always leads),
//! and the fan-out's bulk insert (arrays in PostgreSQL, `VALUES` lists in SQLite).

use std::future::Future;
use std::sync::Arc;

use sqlx::{Database, Pool, Transaction};
use tokio::sync::broadcast;

use super::{Backend, CommitClock, RelayLease, StoreError};

pub trait Dialect: Send + Sync + Sized + 'static {
    /// The sqlx driver.
    type Db: Database;

    const BACKEND: Backend;

    /// Reads `(position, hash)` of the chain head and holds it until the transaction ends.
    const LOCK_HEAD: &'static str;

    /// The statement that begins a write transaction on a connection ([`Dialect::begin_write`]
    /// does the same on a pool).
    const BEGIN_WRITE: &'static str;

    /// Run first in a rebuild's swap, before the chain head is locked. On PostgreSQL: memory
    /// for the row comparisons, and the live projection tables taken from writers (readers go
    /// on) in the order appends lock (model rows first, then the head), so an append caught
    /// between the two cannot deadlock with the swap. Nothing where one write lock already
    /// serializes writers.
    const PREPARE_SWAP: &'static [&'static str];

    /// Whether a rebuild's swap writes only the rows that differ from the rebuilt ones (else it
    /// replaces every row; see `store::sql::rebuild`).
    const SWAP_ONLY_DIFFERENCES: bool;

    /// A statement, run in the committing transaction, that tells every other process the
    /// projections were replaced (a rebuild's swap) so their read caches drop what they hold;
    /// `None` where no other process is told of commits.
    const ANNOUNCE_REBUILD: Option<&'static str>;

    /// A statement that refreshes the planner's statistics of the webhook delivery queue, run
    /// by the fan-out as the queue grows (see `store::sql::webhooks`); `None` where the
    /// planner does not rely on them.
    const REFRESH_QUEUE_STATISTICS: Option<&'static str>;

    /// Appended to the fan-out's read of the queues it adopts (`d` is the delivery table):
    /// locks the rows read until the transaction ends, or fails at once if another holds one
    /// (PostgreSQL `FOR UPDATE … NOWAIT`); nothing where the write transaction already
    /// excludes every other writer.
    const LOCK_DELIVERIES_READ: &'static str;

    /// Writes a fan-out's bodies and delivery rows (see `store::sql::webhooks`) in as few
    /// statements as the database allows: the one place where the SQL differs by database,
    /// because PostgreSQL takes whole columns as arrays and SQLite has no arrays.
    fn insert_fan_out_rows(
        tx: &mut Transaction<'static, Self::Db>,
        bodies: &[NewBody<'_>],
        deliveries: &[NewDelivery<'_>],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Starts a transaction that will write.
    fn begin_write(
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;

    /// How many rows a statement changed (the driver's result type has no common trait).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Applies the embedded migrations for this database.
    fn migrate(pool: &Pool<Self::Db>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts forwarding other processes' commits to `commits`, advancing `clock` for each and
    /// whenever announcements may have been missed. The clock starts out reliable only if
    /// every commit is local ([`Dialect::COMMITS_ARE_LOCAL`]).
    fn listen_for_commits(
        pool: &Pool<Self::Db>,
        commits: broadcast::Sender<i64>,
        clock: Arc<CommitClock>,
    );

    /// Whether one process owns the database, so every commit is made (and heard of) here.
    const COMMITS_ARE_LOCAL: bool;

    /// One attempt at the relay's leader lease. `spare` keeps a connection between failed
    /// attempts, so a waiting process does not reconnect every time it asks.
    fn try_acquire_relay_lease(
        pool: &Pool<Self::Db>,
        spare: &tokio::sync::Mutex<Option<<Self::Db as Database>::Connection>>,
    ) -> impl Future<Output = Result<Option<Box<dyn RelayLease>>, StoreError>> + Send;
}

/// One body in `webhook_payloads`, as the fan-out writes it.
pub struct NewBody<'a> {
    pub key: String,
    pub payload: &'a str,
}

/// One `webhook_deliveries` row, as the fan-out writes it.
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub webhook_id: &'a str,
    pub position: i64,
    pub event_name: &'a str,
    pub order_key: &'a str,
    pub payload_key: String,
    pub status: &'static str,
    pub next_attempt_at_us: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub checkpoint_id: Option<&'a str>,
    pub lease_owner: Option<&'a str>,
    pub lease_until_us: Option<i64>,
    pub attempts: i64,
    pub first_attempt_at_us: Option<i64>,
    pub last_response_code: Option<i32>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<&'a str>,
}
