//! The access-decision log, written so that refusals cannot be turned into a write flood.
//!
//! Every refusal must leave a record: "who tried what and was told no" is what a security
//! review reads first. But a refusal costs the caller nothing, so if each one appended a row, a
//! reader without rights could make the server write as fast as it can send requests. The log
//! therefore coalesces: the first refusal of a kind (same principal, action, model, version and
//! reason) is written at once, as it happens; identical refusals within the next
//! [`WINDOW`] are only counted, and the count and the time of the last one are appended for that
//! row at most every [`FLUSH_EVERY`] (to `access_decision_repeats`: both tables are append-only,
//! so a record can be added to but never rewritten). After the window the next refusal opens a
//! new row.
//!
//! Varying the model name would defeat that (every name is a new kind), so each principal
//! gets at most [`KINDS_PER_PRINCIPAL`] kinds per window; past that, its refusals of an action
//! are coalesced into one row with model `*`. The record that a refusal happened is never lost;
//! what a crash can lose is at most the last [`FLUSH_EVERY`] of repeat counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::store::{AccessDenial, SharedStore, StoreError};

/// How long identical refusals are added to one row.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often counted repeats are written to their row.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Distinct kinds of refusal one principal may open per window before the rest are lumped.
pub const KINDS_PER_PRINCIPAL: usize = 32;
/// Model name of the row that lumps a principal's refusals past [`KINDS_PER_PRINCIPAL`].
pub const LUMPED_MODEL: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    subject: String,
    issuer: String,
    action: String,
    model_name: String,
    version: Option<i64>,
    reason: String,
}

#[derive(Debug)]
struct Open {
    row_id: String,
    opened: Instant,
    /// Repeats counted since the last flush, and when the last of them happened.
    unwritten: i64,
    last_at: DateTime<Utc>,
}

enum Counted {
    /// Counted in memory; nothing to write now.
    Repeat,
    /// Write a new row; first add the repeats of the closed window it replaces, if any.
    NewRow { closed: Option<Open> },
}

#[derive(Default)]
struct Windows {
    open: HashMap<Kind, Open>,
    kinds_per_principal: HashMap<(String, String), usize>,
}

/// See the module docs. Shared by every clone of the service.
pub struct DenialLog {
    store: SharedStore,
    windows: Mutex<Windows>,
}

impl DenialLog {
    /// The log, with its flusher running on the current Tokio runtime when there is one (the
    /// server always has one; without it, repeats are written when the next refusal of the
    /// same kind finds its window closed).
    pub fn start(store: SharedStore) -> Arc<Self> {
        let log = Arc::new(DenialLog {
            store,
            windows: Mutex::new(Windows::default()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_periodically(Arc::downgrade(&log)));
        }
        log
    }

    /// Records one refusal: a new row, or one more repeat of an open one.
    pub async fn record(&self, mut denial: AccessDenial) -> Result<(), StoreError> {
        // Counted before coalescing, so the rate of refusals stays visible even when the log
        // writes one row for many. The action label has as many values as the schema actions.
        metrics::counter!("model_ledger_access_denials_total", "action" => denial.action.clone())
            .increment(1);
        let reason = denial
            .decision
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string();
        let mut kind = Kind {
            subject: denial.actor.subject.clone(),
            issuer: denial.actor.issuer.clone(),
            action: denial.action.clone(),
            model_name: denial.model_name.clone(),
            version: denial.version,
            reason,
        };
        // Decided under the lock, written after it: a std mutex guard must not live across an
        // await (the future would no longer be Send, and the lock would be held during I/O).
        let closed = match self.open_or_count(&mut kind, &mut denial) {
            Counted::Repeat => return Ok(()),
            Counted::NewRow { closed } => closed,
        };
        if let Some(closed) = closed {
            self.store
                .add_denial_repeats(&closed.row_id, closed.unwritten, closed.last_at)
                .await?;
        }
        self.store.record_denial(denial).await
    }

    /// Counts `denial` as a repeat of an open row, or opens a new one (lumping the principal's
    /// refusals once it has opened [`KINDS_PER_PRINCIPAL`] kinds).
    fn open_or_count(&self, kind: &mut Kind, denial: &mut AccessDenial) -> Counted {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let principal = (kind.subject.clone(), kind.issuer.clone());
        let lump = !windows.open.contains_key(kind)
            && windows
                .kinds_per_principal
                .get(&principal)
                .is_some_and(|n| *n >= KINDS_PER_PRINCIPAL);
        if lump {
            kind.model_name = LUMPED_MODEL.to_string();
            kind.version = None;
            kind.reason = String::new();
        }
        if let Some(open) = windows.open.get_mut(kind)
            && open.opened.elapsed() < WINDOW
        {
            open.unwritten += 1;
            open.last_at = denial.occurred_at;
            return Counted::Repeat;
        }
        if lump {
            denial.model_name = LUMPED_MODEL.to_string();
            denial.version = None;
        }
        let replaced = windows.open.insert(
            kind.clone(),
            Open {
                row_id: denial.id.clone(),
                opened: Instant::now(),
                unwritten: 0,
                last_at: denial.occurred_at,
            },
        );
        // A closed window the flusher has not swept yet: its repeats still go to its row, and
        // it is replaced rather than counted again towards the principal's kinds.
        if replaced.is_none() {
            *windows.kinds_per_principal.entry(principal).or_default() += 1;
        }
        Counted::NewRow {
            closed: replaced.filter(|c| c.unwritten > 0),
        }
    }

    /// Writes counted repeats and forgets closed windows.
    async fn flush(&self) {
        let due: Vec<(String, i64, DateTime<Utc>)> = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            let mut closed_principals = Vec::new();
            windows.open.retain(|kind, open| {
                if open.unwritten > 0 {
                    due.push((open.row_id.clone(), open.unwritten, open.last_at));
                    open.unwritten = 0;
                }
                let keep = open.opened.elapsed() < WINDOW;
                if !keep {
                    closed_principals.push((kind.subject.clone(), kind.issuer.clone()));
                }
                keep
            });
            for principal in closed_principals {
                if let Some(n) = windows.kinds_per_principal.get_mut(&principal) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        windows.kinds_per_principal.remove(&principal);
                    }
                }
            }
            due
        };
        for (row_id, more, last_at) in due {
            if let Err(e) = self.store.add_denial_repeats(&row_id, more, last_at).await {
                // The row itself is written; only this count is lost.
                tracing::warn!(error = %e, more, "could not add repeats to a denial row");
            }
        }
    }
}

async fn flush_periodically(log: Weak<DenialLog>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(log) = log.upgrade() else {
            return;
        };
        log.flush().await;
    }
}
