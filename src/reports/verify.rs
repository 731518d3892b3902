//! Verification of the hash chain in an NDJSON export (offline, no database) or in a store,
//! optionally against a signed checkpoint to catch a truncated tail.
//!
//! Both paths feed the same [`ChainVerifier`] the live `audit verify` uses, one event at a time,
//! so verifying a million-event export needs memory for one line.

use std::borrow::Cow;
use std::io::{BufRead, Read};

use serde_json::value::RawValue;

use super::ReportError;
use super::checkpoint::Checkpoint;
use crate::domain::chain::{ChainVerifier, EventText, Json, compute_hash};
use crate::domain::events::EventEnvelope;
use crate::store::{Store, StoredEvent};

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
        self.check_checkpoint(event.position, &event.hash)
    }

    /// Links events whose hashes were already recomputed, in order.
    pub fn push_links(&mut self, links: &[Link]) -> Result<(), ReportError> {
        for link in links {
            self.verifier
                .push_link(
                    link.position,
                    &link.prev_hash,
                    &link.hash,
                    link.computed.clone(),
                )
                .map_err(ReportError::Chain)?;
            self.check_checkpoint(link.position, &link.hash)?;
        }
        Ok(())
    }

    /// At the checkpoint's position, the event's hash must be the checkpoint's.
    fn check_checkpoint(&self, position: i64, hash: &str) -> Result<(), ReportError> {
        match &self.checkpoint {
            Some(c) if c.position == position && c.hash != hash => {
                Err(ReportError::Checkpoint(format!(
                    "position {position}: hash {hash} differs from the checkpoint's {} (the log was rewritten up to here)",
                    c.hash
                )))
            }
            _ => Ok(()),
        }
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
///
/// A reader thread cuts the input into blocks of whole lines while the previous block's lines
/// are parsed and hashed on all cores; links are then checked in order. Memory stays bounded by
/// a few blocks however long the export is.
pub fn verify_ndjson<R: Read + Send>(
    reader: R,
    checkpoint: Option<Checkpoint>,
) -> Result<Verified, ReportError> {
    verify_ndjson_in_blocks(reader, checkpoint, BLOCK)
}

fn verify_ndjson_in_blocks<R: Read + Send>(
    reader: R,
    checkpoint: Option<Checkpoint>,
    block_size: usize,
) -> Result<Verified, ReportError> {
    let mut chain = CheckedChain::new(checkpoint);
    std::thread::scope(|scope| {
        let (blocks_tx, blocks_rx) =
            std::sync::mpsc::sync_channel::<Result<Vec<u8>, ReportError>>(2);
        scope.spawn(move || read_blocks(reader, &blocks_tx, block_size));
        let mut first_line = 1u64;
        for block in blocks_rx {
            let block = block?;
            let lines: Vec<(u64, &[u8])> = block
                .split(|b| *b == b'\n')
                .enumerate()
                .map(|(i, line)| (first_line + i as u64, line))
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .collect();
            // Every block ends with a newline (or is the unterminated tail), so the split's last
            // piece is empty or the final line.
            first_line += block.iter().filter(|b| **b == b'\n').count() as u64;
            let links = check_lines(&lines)?;
            chain.push_links(&links)?;
        }
        chain.finish()
    })
}

/// Target size of one block of lines.
const BLOCK: usize = 4 << 20;

/// Sends `reader`'s content as blocks of whole lines (each about [`BLOCK`] bytes of new input)
/// until EOF or the receiver hangs up.
fn read_blocks<R: Read>(
    mut reader: R,
    blocks: &std::sync::mpsc::SyncSender<Result<Vec<u8>, ReportError>>,
    block_size: usize,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut want = block_size;
    loop {
        let mut eof = false;
        while pending.len() < want {
            let start = pending.len();
            pending.resize(start + (block_size >> 2).max(64), 0);
            match reader.read(&mut pending[start..]) {
                Ok(0) => {
                    pending.truncate(start);
                    eof = true;
                    break;
                }
                Ok(n) => pending.truncate(start + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => pending.truncate(start),
                Err(e) => {
                    let _ = blocks.send(Err(ReportError::io("reading the export", e)));
                    return;
                }
            }
        }
        let cut = if eof {
            pending.len()
        } else {
            match pending.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                // One line longer than a block: read on until it ends.
                None => {
                    want = pending.len() + block_size;
                    continue;
                }
            }
        };
        let rest = pending.split_off(cut);
        let block = std::mem::replace(&mut pending, rest);
        want = pending.len() + block_size;
        if !block.is_empty() && blocks.send(Ok(block)).is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

/// One event after its hash was recomputed: what linking needs.
pub struct Link {
    pub position: i64,
    pub prev_hash: String,
    pub hash: String,
    pub computed: String,
}

/// An export line read without decoding payload and decision (see [`EventText`]).
#[derive(serde::Deserialize)]
struct ExportLine<'a> {
    position: i64,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    stream_id: Cow<'a, str>,
    stream_version: i64,
    #[serde(borrow)]
    model_name: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: i32,
    #[serde(borrow)]
    payload: &'a RawValue,
    occurred_at: chrono::DateTime<chrono::Utc>,
    #[serde(borrow)]
    actor: ExportActor<'a>,
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<&'a RawValue>,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct ExportActor<'a> {
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    issuer: Cow<'a, str>,
    #[serde(default, borrow)]
    display_name: Option<Cow<'a, str>>,
}

impl ExportLine<'_> {
    fn text(&self) -> EventText<'_> {
        EventText {
            position: self.position,
            event_id: &self.event_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            model_name: &self.model_name,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: Json::Canonical(self.payload.get()),
            occurred_at: self.occurred_at,
            actor_subject: &self.actor.subject,
            actor_issuer: &self.actor.issuer,
            actor_display_name: self.actor.display_name.as_deref(),
            request_id: self.request_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            decision: self.decision.map(|d| Json::Canonical(d.get())),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

/// Recomputes one line's hash. The shortcut hashes the line's JSON members as written (an
/// export writes them canonically); only if that does not reproduce the stored hash, or the
/// ids are not UUIDs, is the line decoded in full and hashed by the definition, whose answer
/// then stands. So the shortcut can only accept what the definition accepts, short of a
/// SHA-256 collision.
fn check_line(number: u64, line: &[u8]) -> Result<Link, ReportError> {
    if let Ok(fast) = serde_json::from_slice::<ExportLine<'_>>(line) {
        let computed = fast.text().hash_as_stored();
        if computed == fast.hash
            && uuid::Uuid::try_parse(&fast.event_id).is_ok()
            && uuid::Uuid::try_parse(&fast.stream_id).is_ok()
        {
            return Ok(Link {
                position: fast.position,
                prev_hash: fast.prev_hash.into_owned(),
                hash: fast.hash.into_owned(),
                computed,
            });
        }
    }
    let event: EventEnvelope = serde_json::from_slice(line).map_err(|e| ReportError::Export {
        line: number,
        message: format!("not an event envelope: {e}"),
    })?;
    Ok(Link {
        computed: compute_hash(&event.prev_hash, &event),
        position: event.position,
        prev_hash: event.prev_hash,
        hash: event.hash,
    })
}

/// [`check_line`] for a block of lines, split across the machine's cores.
fn check_lines(lines: &[(u64, &[u8])]) -> Result<Vec<Link>, ReportError> {
    on_all_cores(lines, |(number, line)| check_line(*number, line))
}

/// `check(item)` for every item, in order, the slice split across the machine's cores (scoped
/// threads; small slices stay on the calling thread). Each event's hash depends only on the
/// event and its stored `prev_hash`, so this is where verification spends its time in parallel;
/// only the cheap link comparison afterwards is sequential.
fn on_all_cores<T: Sync, R: Send>(
    items: &[T],
    check: impl Fn(&T) -> Result<R, ReportError> + Sync,
) -> Result<Vec<R>, ReportError> {
    let check_part = |part: &[T]| part.iter().map(&check).collect::<Result<Vec<R>, _>>();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads < 2 || items.len() < 256 {
        return check_part(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || check_part(part)))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for handle in handles {
            let part = handle.join().map_err(|_| ReportError::Export {
                line: 0,
                message: "a verifier thread failed".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
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

/// Recomputes the hashes of stored rows on all cores. The stored JSON text is hashed as it is
/// (the store writes it canonically); a row whose text does not reproduce its hash is decoded
/// and hashed by the definition, whose answer stands.
fn check_rows(rows: &[StoredEvent]) -> Result<Vec<Link>, ReportError> {
    on_all_cores(rows, |row| {
        let mut computed = row.text().hash_as_stored();
        if computed != row.hash {
            let event = row.clone().into_envelope()?;
            computed = compute_hash(&event.prev_hash, &event);
        }
        Ok(Link {
            position: row.position,
            prev_hash: row.prev_hash.clone(),
            hash: row.hash.clone(),
            computed,
        })
    })
}

/// Pages of [`STORE_PAGE`] events read and hashed at once when verifying a store: each page is
/// its own query on its own connection, so the database's work, the driver's decoding and the
/// hashing of different pages overlap.
const PARALLEL_PAGES: usize = 3;

/// Verifies a store's log (and its recorded head, so a truncated tail is caught) against an
/// optional checkpoint. The one store verification: `audit verify` and `migrate-store` use it.
///
/// Positions are gapless from 1, so the log up to the head read at the start splits into pages
/// that are fetched independently ([`PARALLEL_PAGES`] at a time, in order) and hashed on the
/// blocking pool; a page holds only its own positions, so a missing row shows up as the gap it
/// is. Events appended meanwhile are then read page by page as before, and the head is compared
/// at the end.
pub async fn verify_store(
    store: &dyn Store,
    checkpoint: Option<Checkpoint>,
) -> Result<Verified, ReportError> {
    use futures::StreamExt as _;

    let mut chain = CheckedChain::new(checkpoint);
    let (start_head, _) = store.head().await?;
    let pages = (start_head.max(0) + STORE_PAGE - 1) / STORE_PAGE;
    let mut checked = futures::stream::iter(0..pages)
        .map(|page| async move {
            let after = page * STORE_PAGE;
            let through = (after + STORE_PAGE).min(start_head);
            let mut rows = store.read_stored_events(after, STORE_PAGE).await?;
            rows.retain(|row| row.position <= through);
            hash_on_blocking_pool(rows).await
        })
        .buffered(PARALLEL_PAGES);
    while let Some(links) = checked.next().await {
        chain.push_links(&links?)?;
    }
    drop(checked);

    let mut page = store
        .read_stored_events(start_head.max(0), STORE_PAGE)
        .await?;
    while let Some(last) = page.last() {
        let after = last.position;
        let links = hash_on_blocking_pool(page).await?;
        chain.push_links(&links)?;
        page = store.read_stored_events(after, STORE_PAGE).await?;
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

/// [`check_rows`] off the async runtime.
async fn hash_on_blocking_pool(rows: Vec<StoredEvent>) -> Result<Vec<Link>, ReportError> {
    tokio::task::spawn_blocking(move || check_rows(&rows))
        .await
        .map_err(|e| ReportError::Export {
            line: 0,
            message: format!("the verifier task failed: {e}"),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::{GENESIS_HASH, truncate_to_micros};
    use crate::domain::events::Actor;

    fn export(n: i64) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|position| {
                let mut e = EventEnvelope {
                    position,
                    event_id: uuid::Uuid::now_v7(),
                    stream_id: uuid::Uuid::nil(),
                    stream_version: position,
                    model_name: "m \"q\" é".into(),
                    event_type: "ModelTagSet".into(),
                    schema_version: 1,
                    payload: serde_json::json!({"type": "ModelTagSet", "key": "k", "value": "x".repeat(position as usize % 300), "n": 0.1}),
                    occurred_at: truncate_to_micros(chrono::Utc::now()),
                    actor: Actor::system(),
                    request_id: Some(format!("r{position}")),
                    correlation_id: None,
                    decision: (position % 2 == 0).then(|| serde_json::json!({"policy_ids": ["b", "a"], "allowed": true})),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = compute_hash(&prev, &e);
                prev = e.hash.clone();
                serde_json::to_string(&e).unwrap()
            })
            .collect()
    }

    fn verify_text(text: &str, block: usize) -> Result<Verified, ReportError> {
        verify_ndjson_in_blocks(text.as_bytes(), None, block)
    }

    #[test]
    fn block_boundaries_blank_lines_and_crlf_do_not_matter() {
        let lines = export(700);
        let whole = verify_text(&lines.join("\n"), BLOCK).unwrap();
        assert_eq!(whole.count, 700);
        // Blocks far smaller than a line, a few lines, and CRLF with blank lines between.
        for block in [64, 1_000, 7_777] {
            assert_eq!(verify_text(&lines.join("\n"), block).unwrap(), whole);
            assert_eq!(
                verify_text(&(lines.join("\r\n\r\n") + "\n"), block).unwrap(),
                whole
            );
        }
    }

    #[test]
    fn lines_that_are_not_written_canonically_still_verify_by_the_definition() {
        let lines: Vec<String> = export(300)
            .into_iter()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                serde_json::to_string_pretty(&v).unwrap().replace('\n', " ")
            })
            .collect();
        assert_eq!(verify_text(&lines.join("\n"), 4096).unwrap().count, 300);
    }

    #[test]
    fn a_changed_line_is_named_by_position_and_a_garbled_one_by_line_number() {
        let mut lines = export(500);
        lines[299] = lines[299].replace("\"key\":\"k\"", "\"key\":\"K\"");
        match verify_text(&lines.join("\n"), 2_000) {
            Err(ReportError::Chain(b)) => assert_eq!(b.position(), 300),
            other => panic!("expected a chain break, got {other:?}"),
        }
        let mut lines = export(50);
        lines[9] = "{not json".into();
        match verify_text(&lines.join("\n"), 2_000) {
            Err(ReportError::Export { line, .. }) => assert_eq!(line, 10),
            other => panic!("expected an export error, got {other:?}"),
        }
    }
}
