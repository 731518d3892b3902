//! The store's administration role: schema, health, and rebuilding the projections.
//!
//! Kept apart from the data roles because nothing on a request path uses it: `serve` migrates
//! and pings at start-up, `model-ledger rebuild` and `migrate-store` rebuild, and tests compare
//! live and rebuilt projections through [`Admin::projection_dump`]. How a rebuild runs while the
//! registry keeps serving is told in `store::sql::rebuild`; what it reports is [`RebuildReport`].

use async_trait::async_trait;

use super::{Backend, StoreError};

/// Operating the store: schema, health and projection maintenance.
#[async_trait]
pub trait Admin: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Rebuilds every projection from the log while appends go on (shadow tables, catch-up,
    /// then one swapping transaction; see `store::sql::rebuild`). Returns the events folded.
    async fn rebuild_projections(&self) -> Result<u64, StoreError> {
        Ok(self.rebuild_projections_with(None).await?.events)
    }
    /// [`Admin::rebuild_projections`], reporting its phases; `pause` lets a caller act between
    /// the scan and the catch-up (tests append there).
    async fn rebuild_projections_with(
        &self,
        pause: Option<RebuildPause>,
    ) -> Result<RebuildReport, StoreError>;
    /// Every projection row in a canonical order, for comparing live and rebuilt projections.
    async fn projection_dump(&self) -> Result<Vec<String>, StoreError>;
}

/// A rebuild's phases (see [`Admin::rebuild_projections_with`]).
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// Events folded: the scan's and the catch-up's.
    pub events: u64,
    /// The committed head when the scan began; the scan folded the events up to it.
    pub scanned_through: i64,
    /// Events appended during the rebuild and folded in before the swap.
    pub caught_up: u64,
    /// The head at the swap: the rebuilt projections are exactly the log up to it.
    pub head: i64,
    /// Live projection rows deleted or inserted by the swap. Where the swap writes only the
    /// differences (PostgreSQL), 0 when the projections were already right.
    pub rows_rewritten: u64,
    pub scan_time: std::time::Duration,
    /// How long appends waited: the swapping transaction.
    pub swap_time: std::time::Duration,
    pub total_time: std::time::Duration,
}

/// Lets a caller act between a rebuild's scan and its catch-up: the rebuild sends the scanned
/// position on `scanned`, then waits for `resume` (or for it to be dropped).
pub struct RebuildPause {
    pub scanned: tokio::sync::oneshot::Sender<i64>,
    pub resume: tokio::sync::oneshot::Receiver<()>,
}
