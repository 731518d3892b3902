//! The PostgreSQL dialect: the production backend.
//!
//! Appends serialize on one `chain_head` row taken `FOR UPDATE` (see docs/architecture.md for
//! why this, and not a sequence, gives gapless commit-ordered positions). Several server
//! processes may share one database, so two things need the server's help: commits are
//! announced to the other processes by `pg_notify` from the outbox trigger, which a LISTEN task
//! turns into [`EventLog::subscribe`](super::EventLog::subscribe) wake-ups and commit-clock
//! ticks; and exactly one process publishes, the one holding a session-level advisory lock on a
//! dedicated connection (when that process dies, its session ends and the lock is free).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgQueryResult, Postgres,
};
use sqlx::{Connection, Pool, Transaction};
use tokio::sync::broadcast;

use super::dialect::{Dialect, NewBody, NewDelivery};
use super::nodelay::set_nodelay_on_sockets_to;
use super::sql::SqlStore;
use super::{Backend, CommitClock, RelayLease, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The notification channel the outbox trigger signals on.
pub const NOTIFY_CHANNEL: &str = "model_ledger_events";

/// Key of the advisory lock the publishing relay holds ("ml_relay" in ASCII).
pub const RELAY_LOCK_KEY: i64 = 0x6d6c_5f72_656c_6179;

/// What PostgreSQL needs told differently.
pub struct PgDialect;

pub type PgStore = SqlStore<PgDialect>;

/// How long a pooled connection is waited for when no `--db-acquire-timeout` is given (the
/// offline commands, which would rather wait than fail).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl SqlStore<PgDialect> {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`Self::connect`] with the longest wait for a pooled connection (which includes
    /// reconnecting to a database that went away).
    pub async fn connect_with_timeout(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let port = options.get_port();
        let pool: PgPool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |_, _| {
                Box::pin(async move {
                    set_nodelay_on_sockets_to(port);
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(SqlStore::open(pool))
    }
}

/// The session holding the relay's advisory lock: the lock lives exactly as long as it.
struct AdvisoryLease {
    connection: PgConnection,
}

#[async_trait::async_trait]
impl RelayLease for AdvisoryLease {
    async fn still_held(&mut self) -> Result<(), StoreError> {
        Ok(self.connection.ping().await?)
    }
}

impl Dialect for PgDialect {
    type Db = Postgres;
    const BACKEND: Backend = Backend::Postgres;
    const LOCK_HEAD: &'static str = "SELECT position, hash FROM chain_head WHERE id = 1 FOR UPDATE";
    // Other processes may write: until LISTEN is up their commits would go unnoticed.
    const COMMITS_ARE_LOCAL: bool = false;

    const BEGIN_WRITE: &'static str = "BEGIN";
    // Not a position: listeners advance their commit clock and forward nothing.
    const ANNOUNCE_REBUILD: Option<&'static str> =
        Some("SELECT pg_notify('model_ledger_events', 'rebuild')");
    const REFRESH_QUEUE_STATISTICS: Option<&'static str> = Some("ANALYZE webhook_deliveries");
    // NOWAIT: a lease holding one of these rows gives up the adoption (for this window)
    // instead of waiting for it, since the two lock rows in different orders.
    const LOCK_DELIVERIES_READ: &'static str = " FOR UPDATE OF d NOWAIT";
    // EXCEPT over a large table hashes in memory instead of sorting on disk; EXCLUSIVE lets
    // plain SELECTs through and waits for appends already writing model rows.
    const PREPARE_SWAP: &'static [&'static str] = &[
        "SET LOCAL work_mem = '256MB'",
        "LOCK TABLE model_state, registered_models, model_tags, model_versions, version_tags, \
         aliases IN EXCLUSIVE MODE",
    ];
    const SWAP_ONLY_DIFFERENCES: bool = true;

    async fn begin_write(
        pool: &Pool<Postgres>,
    ) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin().await
    }

    async fn insert_fan_out_rows(
        tx: &mut Transaction<'static, Postgres>,
        bodies: &[NewBody<'_>],
        deliveries: &[NewDelivery<'_>],
    ) -> Result<(), sqlx::Error> {
        super::sql::webhooks::insert_fan_out_rows_postgres(tx, bodies, deliveries).await
    }

    async fn migrate(pool: &Pool<Postgres>) -> Result<(), StoreError> {
        MIGRATOR.run(pool).await?;
        Ok(())
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Forwards NOTIFYs from every process's commits; reconnects if the connection drops.
    fn listen_for_commits(
        pool: &Pool<Postgres>,
        commits: broadcast::Sender<i64>,
        clock: Arc<CommitClock>,
    ) {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                            tracing::warn!(error = %e, "LISTEN failed; retrying");
                        } else {
                            clock.set_reliable(true);
                            while let Ok(n) = listener.recv().await {
                                clock.advance();
                                if let Ok(position) = n.payload().parse::<i64>() {
                                    let _ = commits.send(position);
                                }
                            }
                            // Notifications may have been lost while reconnecting.
                            clock.set_reliable(false);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot open LISTEN connection; retrying"),
                }
                if pool.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn try_acquire_relay_lease(
        pool: &Pool<Postgres>,
        spare: &tokio::sync::Mutex<Option<PgConnection>>,
    ) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        let mut spare = spare.lock().await;
        let mut connection = match spare.take() {
            Some(connection) => connection,
            None => PgConnection::connect_with(&pool.connect_options()).await?,
        };
        // On an error the connection is dropped here, and the next attempt opens a new one.
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        if acquired {
            Ok(Some(Box::new(AdvisoryLease { connection })))
        } else {
            *spare = Some(connection);
            Ok(None)
        }
    }
}
