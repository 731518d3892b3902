//! Compliance reporting over the event log: search and streamed export, offline verification of
//! exports, signed checkpoints, time travel, audit reports and policy what-if.
//!
//! Everything here reads; nothing appends events. History is interpreted only through
//! [`crate::domain::state::fold`] (via [`history::Folder`]), so a report, a time-travel answer
//! and the live projections cannot disagree about what an event meant. Logs are read in pages,
//! so exports and scans run in memory bounded by the page size and the number of models, not by
//! the number of events.
//!
//! - [`search`]: event filters, JSON/NDJSON/CSV encoders, the paged exporter.
//! - [`verify`]: chain verification of an NDJSON export or a store, against a checkpoint.
//! - [`checkpoint`]: the server's Ed25519 key and signed-note checkpoints of the chain head.
//! - [`history`]: folding the log; state of a model or of every stage as of a position or time.
//! - [`kinds`]: promotions, unverified Production versions, stage durations, denials,
//!   separation of duties, and the signed period report.
//! - [`requests`]: transition requests with their outcome, pending age and decision time.
//! - [`replay`]: re-deciding recorded decisions against a candidate policy set.

pub mod checkpoint;
pub mod history;
pub mod kinds;
pub mod replay;
// Approval workflow (#17).
pub mod requests;
pub mod search;
pub mod verify;

use chrono::{DateTime, Utc};

use crate::domain::chain::ChainBreak;
use crate::store::{EventQuery, Store, StoreError};

/// Events read per round trip when scanning a log.
pub const PAGE: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Chain(ChainBreak),
    /// The log (or export) is shorter than a checkpoint, or differs from it.
    #[error("{0}")]
    Checkpoint(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Export { line: u64, message: String },
    #[error("policies: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

impl ReportError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ReportError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A point in history: a global position, or a time (resolved to the newest position whose
/// event occurred at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Position(i64),
    Time(DateTime<Utc>),
}

impl AsOf {
    /// Parses a decimal position or an RFC 3339 time.
    pub fn parse(raw: &str) -> Result<Self, ReportError> {
        let raw = raw.trim();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw
                .parse()
                .map(AsOf::Position)
                .map_err(|_| ReportError::Invalid(format!("position '{raw}' is out of range")));
        }
        parse_time(raw).map(AsOf::Time)
    }

    /// The global position this point names (0 = before the first event).
    pub async fn resolve(&self, store: &dyn Store) -> Result<i64, ReportError> {
        match self {
            AsOf::Position(p) => Ok((*p).max(0)),
            AsOf::Time(t) => position_at(store, *t).await,
        }
    }
}

/// RFC 3339 (`2026-01-31T12:00:00Z`) or a bare date (`2026-01-31`, midnight UTC).
pub fn parse_time(raw: &str) -> Result<DateTime<Utc>, ReportError> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(ReportError::Invalid(format!(
        "'{raw}' is neither a position nor an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)"
    )))
}

/// The newest position whose event occurred at or before `t`. Positions are commit-ordered and
/// times are taken just before commit, so around `t` this can differ from "events with
/// occurred_at <= t" by events committed within the same instant; positions are what the
/// chain and the projections follow, so time travel follows them too.
pub async fn position_at(store: &dyn Store, t: DateTime<Utc>) -> Result<i64, ReportError> {
    let last = store
        .read_events(&EventQuery {
            occurred_before_us: Some(t.timestamp_micros().saturating_add(1)),
            descending: true,
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok(last.first().map(|e| e.position).unwrap_or(0))
}

/// Feeds every event matching `base` (paged by position, ascending) to `visit`, stopping early
/// when it returns `false`. `base.after_position`/`before_position` bound the scan.
pub async fn scan_events<F>(
    store: &dyn Store,
    base: &EventQuery,
    mut visit: F,
) -> Result<(), ReportError>
where
    F: FnMut(&crate::domain::EventEnvelope) -> Result<bool, ReportError>,
{
    let mut after = base.after_position.unwrap_or(0);
    loop {
        let query = EventQuery {
            after_position: Some(after),
            descending: false,
            limit: PAGE,
            ..base.clone()
        };
        let page = store.read_events(&query).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.position;
        for event in &page {
            if !visit(event)? {
                return Ok(());
            }
        }
        if (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}
