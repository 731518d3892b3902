//! Is the database reachable? A check on a connection of its own, for `/readyz` and for the
//! "database unreachable" flag that makes requests fail fast while it is down.
//!
//! The check must not share the request pool: under load every pooled connection is busy,
//! and a check waiting its turn would report a busy database as an unreachable one (and so
//! refuse all traffic exactly when there is most of it). PostgreSQL is therefore checked on
//! one dedicated session, reopened after any failure; SQLite, a local file with no network in
//! between, is checked through the pool.

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::Mutex;

use super::{SharedStore, StoreError};

/// A reachability check of one store.
pub struct Probe {
    kind: Kind,
}

enum Kind {
    /// Boxed: a connection's state is hundreds of bytes, the pool handle sixteen.
    Postgres(Box<PgSession>),
    Pool(SharedStore),
}

struct PgSession {
    options: PgConnectOptions,
    /// The open session, if the last check left one; `None` after a failure.
    session: Mutex<Option<PgConnection>>,
}

impl Probe {
    /// The probe for the store at `url` (the same URL `store` was opened with).
    pub fn new(url: &str, store: SharedStore) -> Result<Self, StoreError> {
        let kind = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Kind::Postgres(Box::new(PgSession {
                options: url.parse()?,
                session: Mutex::new(None),
            }))
        } else {
            Kind::Pool(store)
        };
        Ok(Probe { kind })
    }

    /// Whether the database is reached over a network, and so can become unreachable while
    /// this process runs. SQLite cannot (and a check through its busy pool could only mistake
    /// load for an outage), so only PostgreSQL is watched for failing fast.
    pub fn is_remote(&self) -> bool {
        matches!(self.kind, Kind::Postgres(_))
    }

    /// One round trip to the database. Callers bound it with a timeout: a dropped check
    /// leaves no half-open state behind (the session is only kept after it answered).
    pub async fn check(&self) -> Result<(), StoreError> {
        match &self.kind {
            Kind::Pool(store) => store.ping().await,
            Kind::Postgres(pg) => {
                let mut session = pg.session.lock().await;
                let mut connection = match session.take() {
                    Some(connection) => connection,
                    None => PgConnection::connect_with(&pg.options).await?,
                };
                connection.ping().await?;
                *session = Some(connection);
                Ok(())
            }
        }
    }
}
