//! Offline operations on stores, shared by the CLI and the tests: chain verification over a
//! database and copying a log between backends.

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
}

/// The verified head of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHead {
    pub count: u64,
    pub head_hash: String,
}

/// Recomputes every hash and link in position order and checks the recorded chain head, so a
/// truncated tail is caught as well as an altered event.
pub async fn verify_store(store: &dyn Store) -> Result<VerifiedHead, ToolError> {
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let batch = store
            .read_events(&EventQuery {
                after_position: Some(after),
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        verifier.push_batch(&batch).map_err(ToolError::Chain)?;
    }
    let (head_position, head_hash) = store.head().await?;
    if head_position != verifier.count() as i64 || head_hash != verifier.head_hash() {
        return Err(ToolError::Refused(format!(
            "the recorded chain head is position {head_position} hash {head_hash}, but the events end at position {} hash {} (events were removed or added outside the append path)",
            verifier.count(),
            verifier.head_hash()
        )));
    }
    Ok(VerifiedHead {
        count: verifier.count(),
        head_hash: verifier.head_hash().to_string(),
    })
}

/// Copies every event from `source` to an empty `target`, verifying the chain as it goes,
/// then rebuilds the target's projections.
pub async fn migrate_store(
    source: &dyn Store,
    target: &dyn Store,
) -> Result<VerifiedHead, ToolError> {
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
    verify_store(target).await
}
