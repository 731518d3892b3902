//! Offline operations on stores, shared by the CLI and the tests: copying a log between
//! backends (verification itself is [`crate::reports::verify::verify_store`]).

use crate::domain::chain::{ChainBreak, ChainVerifier};
use crate::store::{EventQuery, Store, StoreError};

/// Events read per round trip when scanning a whole log.
const PAGE: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Chain(ChainBreak),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Report(#[from] crate::reports::ReportError),
}

/// Copies every event from `source` to an empty `target`, verifying the chain as it goes,
/// then rebuilds the target's projections.
pub async fn migrate_store(
    source: &dyn Store,
    target: &dyn Store,
) -> Result<crate::reports::verify::Verified, ToolError> {
    if target.head().await?.0 != 0 {
        return Err(ToolError::Refused(
            "the target store already has events; migrate-store only fills an empty store".into(),
        ));
    }
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let batch = source
            .read_events(&EventQuery {
                after_position: Some(after),
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            verifier.push(event).map_err(ToolError::Chain)?;
        }
        target.import_events(&batch).await?;
    }
    target.rebuild_projections().await?;
    Ok(crate::reports::verify::verify_store(target, None).await?)
}
