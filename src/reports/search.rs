//! Event search and streamed export in JSON, NDJSON or CSV.
//!
//! Filters the database can answer with an index (model, version, event type, actor subject,
//! time range, position range) go into the SQL; the ones inside the stored decision JSON
//! (policy id, caller group) are applied to each page in memory. Either way the exporter holds
//! one page at a time, so exporting a million events needs no more memory than exporting one
//! page.
//!
//! NDJSON lines are whole [`EventEnvelope`]s, which is everything the hash covers, so an NDJSON
//! export can be verified offline (`audit verify --file`). CSV flattens the envelope and is for
//! spreadsheets only.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{PAGE, ReportError};
use crate::domain::chain::canonical_time;
use crate::domain::events::{EventEnvelope, EventPayload};
use crate::store::{EventQuery, SharedStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"events":[…],"next_cursor":N|null}`
    #[default]
    Json,
    /// One event envelope per line: verifiable with `audit verify --file`.
    Ndjson,
    /// A header row and one row per event (flattened; not verifiable).
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// What to export. `actor` matches the event's actor subject; `group` matches an IdP group
/// the caller presented, as recorded in the decision's `request.groups` (decisions recorded
/// before that field existed carry no groups and never match); `policy_id` matches one of the
/// decision's determining `policy_ids`.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub model: Option<String>,
    pub version: Option<i64>,
    pub event_types: Vec<String>,
    pub actor: Option<String>,
    pub group: Option<String>,
    pub policy_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only positions greater than this (also the pagination cursor).
    pub after: Option<i64>,
    /// Only positions less than this.
    pub before: Option<i64>,
    /// At most this many events; `None` for all.
    pub limit: Option<u64>,
}

impl EventFilter {
    /// Rejects unknown event types and empty ranges before anything is read.
    pub fn validate(&self) -> Result<(), ReportError> {
        if let Some(bad) = self
            .event_types
            .iter()
            .find(|t| !EventPayload::TYPES.contains(&t.as_str()))
        {
            return Err(ReportError::Invalid(format!("unknown event type '{bad}'")));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(ReportError::Invalid("'from' is after 'to'".into()));
        }
        if self.limit == Some(0) {
            return Err(ReportError::Invalid("limit must be at least 1".into()));
        }
        Ok(())
    }

    fn query(&self, after: i64) -> EventQuery {
        EventQuery {
            after_position: Some(after),
            before_position: self.before,
            event_types: self.event_types.clone(),
            model_name: self.model.clone(),
            version: self.version,
            occurred_from_us: self.from.map(|t| t.timestamp_micros()),
            occurred_before_us: self.to.map(|t| t.timestamp_micros()),
            actor_subject: self.actor.clone(),
            descending: false,
            limit: PAGE,
            ..Default::default()
        }
    }

    /// The filters that live inside the decision JSON.
    pub fn matches_decision(&self, event: &EventEnvelope) -> bool {
        let decision = event.decision.as_ref();
        if let Some(policy) = &self.policy_id {
            let hit = decision
                .and_then(|d| d.get("policy_ids"))
                .and_then(|p| p.as_array())
                .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(policy)));
            if !hit {
                return false;
            }
        }
        if let Some(group) = &self.group {
            let hit = decision
                .and_then(|d| d.pointer("/request/groups"))
                .and_then(|g| g.as_array())
                .is_some_and(|gs| gs.iter().any(|g| g.as_str() == Some(group)));
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Pages through the matching events and renders them, one chunk per page.
pub struct Exporter {
    store: SharedStore,
    filter: EventFilter,
    format: Format,
    after: i64,
    emitted: u64,
    started: bool,
    done: bool,
}

impl Exporter {
    pub fn new(
        store: SharedStore,
        filter: EventFilter,
        format: Format,
    ) -> Result<Self, ReportError> {
        filter.validate()?;
        let after = filter.after.unwrap_or(0);
        Ok(Exporter {
            store,
            filter,
            format,
            after,
            emitted: 0,
            started: false,
            done: false,
        })
    }

    /// The next piece of output, or `None` after the last. Pages that match nothing are
    /// skipped rather than returned empty, so a consumer never spins.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReportError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(64 * 1024);
        if !self.started {
            self.started = true;
            match self.format {
                Format::Json => out.extend_from_slice(b"{\"events\":["),
                Format::Csv => out.extend_from_slice(CSV_HEADER.as_bytes()),
                Format::Ndjson => {}
            }
        }
        loop {
            let page = self
                .store
                .read_events(&self.filter.query(self.after))
                .await?;
            let full_page = page.len() as i64 == PAGE;
            if let Some(last) = page.last() {
                self.after = last.position;
            }
            let mut cursor: Option<i64> = None;
            for event in page.iter().filter(|e| self.filter.matches_decision(e)) {
                self.write_event(event, &mut out)?;
                self.emitted += 1;
                if self.filter.limit.is_some_and(|l| self.emitted >= l) {
                    cursor = Some(event.position);
                    break;
                }
            }
            let finished = cursor.is_some() || !full_page;
            if finished {
                // A cursor is only useful if the limit cut the scan short.
                if self.format == Format::Json {
                    let tail = match cursor {
                        Some(p) => format!("],\"next_cursor\":{p}}}\n"),
                        None => "],\"next_cursor\":null}\n".to_string(),
                    };
                    out.extend_from_slice(tail.as_bytes());
                }
                self.done = true;
                return Ok(Some(out));
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
    }

    fn write_event(&self, event: &EventEnvelope, out: &mut Vec<u8>) -> Result<(), ReportError> {
        let json = |out: &mut Vec<u8>| {
            serde_json::to_writer(out, event)
                .map_err(|e| ReportError::Invalid(format!("cannot encode event: {e}")))
        };
        match self.format {
            Format::Json => {
                if self.emitted > 0 {
                    out.push(b',');
                }
                json(out)?;
            }
            Format::Ndjson => {
                json(out)?;
                out.push(b'\n');
            }
            Format::Csv => write_csv_row(event, out),
        }
        Ok(())
    }
}

pub const CSV_HEADER: &str = "position,occurred_at,event_type,model_name,version,stream_id,stream_version,actor_subject,actor_issuer,action,policy_ids,policy_set_digest,request_id,payload,prev_hash,hash\n";

fn write_csv_row(e: &EventEnvelope, out: &mut Vec<u8>) {
    let decision = e.decision.as_ref();
    let text = |key: &str| {
        decision
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let policy_ids = decision
        .and_then(|d| d.get("policy_ids"))
        .and_then(|p| p.as_array())
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default();
    let version = e
        .payload
        .get("version")
        .and_then(|v| v.as_u64())
        .map(|v| v.to_string())
        .unwrap_or_default();
    let fields = [
        e.position.to_string(),
        canonical_time(&e.occurred_at),
        e.event_type.clone(),
        e.model_name.clone(),
        version,
        e.stream_id.to_string(),
        e.stream_version.to_string(),
        e.actor.subject.clone(),
        e.actor.issuer.clone(),
        text("action"),
        policy_ids,
        text("policy_set_digest"),
        e.request_id.clone().unwrap_or_default(),
        e.payload.to_string(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ];
    write_csv_fields(&fields, out);
}

/// One CSV record (RFC 4180 quoting: fields with a comma, quote or line break are quoted).
pub fn write_csv_fields(fields: &[String], out: &mut Vec<u8>) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(field.as_bytes());
        }
    }
    out.push(b'\n');
}

/// Runs an export to a writer (the CLI's stdout), flushing after each page.
pub async fn export_to<W: std::io::Write>(
    mut exporter: Exporter,
    out: &mut W,
) -> Result<u64, ReportError> {
    while let Some(chunk) = exporter.next_chunk().await? {
        out.write_all(&chunk)
            .and_then(|_| out.flush())
            .map_err(|e| ReportError::io("writing the export", e))?;
    }
    Ok(exporter.emitted)
}

/// Runs an export as a byte stream (the HTTP body).
pub fn export_stream(
    exporter: Exporter,
) -> impl futures::Stream<Item = Result<bytes::Bytes, ReportError>> + Send + 'static {
    futures::stream::unfold(exporter, |mut exporter| async move {
        match exporter.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(bytes::Bytes::from(chunk)), exporter)),
            Ok(None) => None,
            Err(e) => {
                // The status line is already sent; end the body early so the client sees a
                // truncated document rather than a silently complete one.
                exporter.done = true;
                Some((Err(e), exporter))
            }
        }
    })
}
