//! Verification of the hash chain in an NDJSON export (offline, no database) or in a store,
//! optionally against a signed checkpoint to catch a truncated tail.
//!
//! Both paths feed the same [`ChainVerifier`] the live `audit verify` uses, one event at a time,
//! so verifying a million-event export needs memory for one line.

use std::io::BufRead;

use super::ReportError;
use super::checkpoint::Checkpoint;
use crate::domain::chain::ChainVerifier;
use crate::domain::events::EventEnvelope;
use crate::store::{EventQuery, Store};

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub count: u64,
    pub head_hash: String,
    /// The checkpoint position that was matched, if one was given.
    pub checkpoint_position: Option<i64>,
}

/// A chain verifier that also compares the event at a checkpoint's position with it.
pub struct CheckedChain {
    verifier: ChainVerifier,
    checkpoint: Option<Checkpoint>,
}

impl CheckedChain {
    pub fn new(checkpoint: Option<Checkpoint>) -> Self {
        CheckedChain {
            verifier: ChainVerifier::new(),
            checkpoint,
        }
    }

    pub fn push(&mut self, event: &EventEnvelope) -> Result<(), ReportError> {
        self.verifier.push(event).map_err(ReportError::Chain)?;
        if let Some(c) = &self.checkpoint
            && c.position == event.position
            && c.hash != event.hash
        {
            return Err(ReportError::Checkpoint(format!(
                "position {}: hash {} differs from the checkpoint's {} (the log was rewritten up to here)",
                event.position, event.hash, c.hash
            )));
        }
        Ok(())
    }

    /// [`CheckedChain::push`] for consecutive events, hashing them on all cores.
    pub fn push_batch(&mut self, events: &[EventEnvelope]) -> Result<(), ReportError> {
        self.verifier
            .push_batch(events)
            .map_err(ReportError::Chain)?;
        if let Some(c) = &self.checkpoint
            && let Some(event) = events.iter().find(|e| e.position == c.position)
            && c.hash != event.hash
        {
            return Err(ReportError::Checkpoint(format!(
                "position {}: hash {} differs from the checkpoint's {} (the log was rewritten up to here)",
                event.position, event.hash, c.hash
            )));
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.verifier.count()
    }

    pub fn head_hash(&self) -> &str {
        self.verifier.head_hash()
    }

    /// Fails if the chain ended before the checkpoint's position.
    pub fn finish(self) -> Result<Verified, ReportError> {
        let count = self.verifier.count();
        if let Some(c) = &self.checkpoint
            && c.position > count as i64
        {
            return Err(ReportError::Checkpoint(format!(
                "position {}: the log ends at position {count} but the checkpoint of {} covers position {} (events after position {count} were removed)",
                count + 1,
                crate::domain::chain::canonical_time(&c.time),
                c.position
            )));
        }
        Ok(Verified {
            count,
            head_hash: self.verifier.head_hash().to_string(),
            checkpoint_position: self.checkpoint.as_ref().map(|c| c.position),
        })
    }
}

/// Verifies an NDJSON export read from `reader`. Blank lines are ignored; any other line must
/// be one event envelope.
pub fn verify_ndjson<R: BufRead>(
    reader: R,
    checkpoint: Option<Checkpoint>,
) -> Result<Verified, ReportError> {
    let mut chain = CheckedChain::new(checkpoint);
    let mut lines = reader.lines();
    let mut number = 0u64;
    // Lines are read in batches, parsed and hashed on all cores, then linked in order: memory
    // stays bounded by one batch however long the export is.
    loop {
        let mut batch: Vec<(u64, String)> = Vec::with_capacity(VERIFY_BATCH);
        for line in lines.by_ref() {
            number += 1;
            let line = line.map_err(|e| ReportError::io(format!("reading line {number}"), e))?;
            if !line.trim().is_empty() {
                batch.push((number, line));
            }
            if batch.len() == VERIFY_BATCH {
                break;
            }
        }
        if batch.is_empty() {
            return chain.finish();
        }
        let events = parse_batch(&batch)?;
        chain.push_batch(&events)?;
    }
}

/// Lines verified per batch.
const VERIFY_BATCH: usize = 4096;

fn parse_batch(lines: &[(u64, String)]) -> Result<Vec<EventEnvelope>, ReportError> {
    let parse = |part: &[(u64, String)]| -> Result<Vec<EventEnvelope>, ReportError> {
        part.iter()
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|e| ReportError::Export {
                    line: *number,
                    message: format!("not an event envelope: {e}"),
                })
            })
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || lines.len() < 256 {
        return parse(lines);
    }
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| scope.spawn(move || parse(part)))
            .collect();
        let mut events = Vec::with_capacity(lines.len());
        for handle in handles {
            let part = handle.join().map_err(|_| ReportError::Export {
                line: 0,
                message: "a parser thread failed".into(),
            })??;
            events.extend(part);
        }
        Ok(events)
    })
}

/// Parses an NDJSON export line by line, handing each event to `visit`.
pub fn for_each_export_event<R: BufRead, F>(mut reader: R, mut visit: F) -> Result<u64, ReportError>
where
    F: FnMut(&EventEnvelope) -> Result<(), ReportError>,
{
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| ReportError::io(format!("reading line {}", number + 1), e))?;
        if n == 0 {
            return Ok(number);
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let event: EventEnvelope =
            serde_json::from_str(&line).map_err(|e| ReportError::Export {
                line: number,
                message: format!("not an event envelope: {e}"),
            })?;
        visit(&event)?;
    }
}

/// Events read per query when verifying a store.
const STORE_PAGE: i64 = 5_000;

/// Verifies a store's log (and its recorded head, so a truncated tail is caught) against an
/// optional checkpoint. The one store verification: `audit verify` and `migrate-store` use it.
pub async fn verify_store(
    store: &dyn Store,
    checkpoint: Option<Checkpoint>,
) -> Result<Verified, ReportError> {
    let mut chain = CheckedChain::new(checkpoint);
    let mut after = 0;
    loop {
        let query = EventQuery {
            after_position: Some(after),
            limit: STORE_PAGE,
            ..Default::default()
        };
        let page = store.read_events(&query).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        chain.push_batch(&page)?;
    }
    let (head_position, head_hash) = store.head().await?;
    if head_position != chain.count() as i64 || head_hash != chain.head_hash() {
        // Checked before the recorded head, whose own mismatch would hide the better message.
        let count = chain.count();
        let head = chain.head_hash().to_string();
        chain.finish()?;
        return Err(ReportError::Checkpoint(format!(
            "the recorded chain head is position {head_position} hash {head_hash}, but the events end at position {count} hash {head} (events were removed or added outside the append path)"
        )));
    }
    chain.finish()
}
