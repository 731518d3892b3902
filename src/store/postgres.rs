//! The PostgreSQL store: production backend.
//!
//! Appends serialize on one `chain_head` row taken `FOR UPDATE` (see docs/architecture.md for
//! why this, and not a sequence, gives gapless commit-ordered positions). Commits are announced
//! to other processes by `pg_notify` from the outbox trigger; a LISTEN task turns them into
//! [`Store::subscribe`] wake-ups.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::sql::impl_sql_store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The notification channel the outbox trigger signals on.
pub const NOTIFY_CHANNEL: &str = "model_ledger_events";

pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) commits: broadcast::Sender<i64>,
    pub(crate) cache: std::sync::Arc<super::cache::ReadCache>,
}

impl PgStore {
    const BACKEND: Backend = Backend::Postgres;
    const LOCK_HEAD: &'static str = "SELECT position, hash FROM chain_head WHERE id = 1 FOR UPDATE";

    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        let (commits, _) = broadcast::channel(1024);
        // Enabled by the LISTEN task once it is listening: until then another process's commit
        // could not reach this cache.
        let cache = std::sync::Arc::new(super::cache::ReadCache::new(false));
        let store = PgStore {
            pool,
            commits,
            cache,
        };
        store.spawn_listener();
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Tx<'static>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    fn notify(&self, position: i64) {
        self.cache.invalidate();
        // No receivers is normal (nobody streaming); the send result carries no information.
        let _ = self.commits.send(position);
    }

    /// Forwards NOTIFYs from every process's commits; reconnects if the connection drops.
    fn spawn_listener(&self) {
        let pool = self.pool.clone();
        let commits = self.commits.clone();
        let cache = self.cache.clone();
        tokio::spawn(async move {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                            tracing::warn!(error = %e, "LISTEN failed; retrying");
                        } else {
                            cache.set_enabled(true);
                            while let Ok(n) = listener.recv().await {
                                cache.invalidate();
                                if let Ok(position) = n.payload().parse::<i64>() {
                                    let _ = commits.send(position);
                                }
                            }
                            // Notifications may have been lost while reconnecting.
                            cache.set_enabled(false);
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
}

impl_sql_store!(PgStore, sqlx::Postgres);
