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
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let port = options.get_port();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |_, _| {
                Box::pin(async move {
                    set_nodelay_on_sockets_to(port);
                    Ok(())
                })
            })
            .connect_with(options)
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

/// Sets TCP_NODELAY on this process's TCP sockets whose peer port is `port` (the database's).
///
/// sqlx does not set it. Without it, a statement bigger than a socket's initial send buffer
/// (16 KiB on Linux) goes out in two writes, and Nagle's algorithm holds the second until the
/// server's delayed ACK arrives, 40 ms later: measured here, a 32 KiB INSERT took 45 ms instead
/// of under 1 ms, and so would every write to a model whose snapshot row is that large. sqlx
/// offers no hook on its socket, so after each connect the process's descriptors are looked
/// through for the new one. Setting the option again on older connections is harmless.
#[cfg(target_os = "linux")]
fn set_nodelay_on_sockets_to(port: u16) {
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the next three calls. If another thread
        // closed it meanwhile they fail with EBADF; if the number was reused, the option lands
        // on another socket, and only on a TCP one talking to the database port.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let is_database = socket
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if is_database && socket.r#type().ok() == Some(socket2::Type::STREAM) {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_nodelay_on_sockets_to(_port: u16) {}

impl_sql_store!(PgStore, sqlx::Postgres);
