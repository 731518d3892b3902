//! The delivery worker: committed events in, signed POSTs out, every step recorded.
//!
//! Every server process runs one. Its loop does two things, woken by each commit (for
//! PostgreSQL, every process's commits, through LISTEN/NOTIFY) and otherwise every
//! [`POLL`]:
//!
//! 1. **Fan-out.** Read the events after the store's webhook cursor, turn each into its
//!    webhook event ([`super::events`]; an event no webhook can receive is just passed over)
//!    and hand them to the store, which in one transaction moves the cursor and queues a
//!    delivery row per matching active subscription. If another process moved the cursor
//!    first, nothing is written and the events are read again from the new cursor. So each
//!    committed event is fanned out once, none is skipped, and a server that was down catches
//!    up from where the cursor stands. Signed checkpoints follow, once the cursor has passed
//!    their position: each is fanned out once under a compare-and-set marker of its own (see
//!    [`crate::store::Webhooks::fan_out_webhook_checkpoints`]).
//! 2. **Delivery.** Lease as many due rows as there are free slots (at most
//!    [`WebhookSettings::concurrency`], and no new ones for a webhook that already has
//!    [`WebhookSettings::per_webhook_concurrency`] in flight here), and send each in its own
//!    task, so a slow or hanging receiver holds only its own slots while the others' deliveries
//!    go on. The store leases only the oldest pending delivery of each (webhook, model), so one
//!    receiver gets one model's events in commit order, and a checkpoint only after that
//!    receiver's events up to its position are no longer pending. The task records the outcome: delivered,
//!    failed for good, or due again after the backoff of [`super::retry`].
//!
//! A lease lasts the attempt's total timeout plus a margin. A process that dies mid-delivery
//! leaves its leases to expire; another process (or this one after a restart) then sends
//! those deliveries again with the same delivery id, which receivers deduplicate on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore, broadcast::error::TryRecvError};

use super::WebhookSettings;
use super::events::{checkpoint_event, webhook_event};
use super::retry::NextStep;
use super::sender::{SendOutcome, Sender};
use crate::store::projection::micros;
use crate::store::{
    AttemptRecord, DeliveryJob, DeliveryStatus, EventQuery, SharedStore, StoreError,
    WebhookEventRow, WebhookStatus,
};

/// How often the worker looks for due deliveries when no commit woke it (retries that came
/// due, deliveries queued by another SQLite-less process, expired leases).
pub const POLL: Duration = Duration::from_millis(250);
/// Events read per fan-out transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Checkpoints read per fan-out transaction (they are made seconds apart, not per commit).
const CHECKPOINT_BATCH: i64 = 50;
/// How long past the attempt's own timeout a lease is kept before another process may take
/// the delivery over.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Starts the worker; it runs until `stop` resolves.
pub fn spawn(
    store: SharedStore,
    settings: Arc<WebhookSettings>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let worker = Arc::new(Worker {
        sender: Sender::new(&settings)?,
        store,
        settings,
        owner: uuid::Uuid::now_v7().to_string(),
        in_flight: Mutex::new(HashMap::new()),
        finished: Notify::new(),
    });
    Ok(tokio::spawn(async move {
        tokio::select! {
            () = worker.run() => {}
            () = stop => {}
        }
    }))
}

struct Worker {
    store: SharedStore,
    settings: Arc<WebhookSettings>,
    sender: Sender,
    /// This process's lease owner id.
    owner: String,
    /// Deliveries in flight here, by webhook id.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Woken when a delivery task ends: its slot (and its model's next event) is free.
    finished: Notify,
}

impl Worker {
    async fn run(self: Arc<Self>) {
        // Subscribed before the first read, so no commit between a read and the wait is missed.
        let mut commits = self.store.subscribe();
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut failing = false;
        // Checkpoints come minutes apart, rounds as often as deliveries finish: looking for
        // them once per POLL keeps that read off the busy path and delays one by 250 ms at most.
        let mut checkpoints_checked: Option<tokio::time::Instant> = None;
        loop {
            while !matches!(
                commits.try_recv(),
                Err(TryRecvError::Empty | TryRecvError::Closed)
            ) {}
            let check_checkpoints = checkpoints_checked.is_none_or(|at| at.elapsed() >= POLL);
            let round = async {
                while self.fan_out_once().await? {}
                if check_checkpoints {
                    while self.fan_out_checkpoints().await? {}
                }
                self.start_due(&slots).await
            };
            match round.await {
                Ok(()) => {
                    if check_checkpoints {
                        checkpoints_checked = Some(tokio::time::Instant::now());
                    }
                    if failing {
                        tracing::info!("webhook delivery recovered");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "webhook delivery cannot reach the store; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(POLL * 4).await;
                    continue;
                }
            }
            tokio::select! {
                _ = commits.recv() => {}
                () = self.finished.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Fans out one batch of events; `Ok(true)` when more may follow.
    async fn fan_out_once(&self) -> Result<bool, StoreError> {
        let (cursor, any_active) = self.store.webhook_cursor().await?;
        if !any_active {
            // Nothing to deliver, so nothing to write: a registry without webhooks pays one
            // read per commit. The cursor catches up when a webhook becomes active.
            return Ok(false);
        }
        let events = self
            .store
            .read_events(&EventQuery {
                after_position: Some(cursor),
                limit: FAN_OUT_BATCH,
                ..EventQuery::default()
            })
            .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(false);
        };
        let rows: Vec<WebhookEventRow> = events
            .iter()
            .filter_map(|envelope| {
                let event = webhook_event(envelope)?;
                Some(WebhookEventRow {
                    position: envelope.position,
                    event_name: event.name.to_string(),
                    order_key: envelope.stream_id.to_string(),
                    occurred_at_us: micros(&envelope.occurred_at),
                    payload: event.body.to_string(),
                    checkpoint_id: None,
                })
            })
            .collect();
        let now = micros(&chrono::Utc::now());
        match self
            .store
            .fan_out_webhook_events(cursor, last, &rows, now)
            .await?
        {
            // Another process fanned these out first: read on from where it left the cursor.
            None => Ok(true),
            Some(queued) => {
                if queued > 0 {
                    metrics::counter!("model_ledger_webhook_deliveries_queued_total")
                        .increment(queued);
                }
                Ok(events.len() as i64 == FAN_OUT_BATCH)
            }
        }
    }

    /// Fans out one batch of signed checkpoints; `Ok(true)` when more may follow.
    async fn fan_out_checkpoints(&self) -> Result<bool, StoreError> {
        let due = self.store.webhook_checkpoints_due(CHECKPOINT_BATCH).await?;
        if due.is_empty() {
            return Ok(false);
        }
        let rows: Vec<WebhookEventRow> = due
            .iter()
            .map(|checkpoint| {
                let event = checkpoint_event(checkpoint);
                WebhookEventRow {
                    position: checkpoint.position,
                    event_name: event.name.to_string(),
                    // Checkpoints queue behind each other, and (see the lease) behind every
                    // model's events up to their position.
                    order_key: "~checkpoint".to_string(),
                    occurred_at_us: micros(&checkpoint.created_at),
                    payload: event.body.to_string(),
                    checkpoint_id: Some(checkpoint.id.clone()),
                }
            })
            .collect();
        let now = micros(&chrono::Utc::now());
        let queued = self.store.fan_out_webhook_checkpoints(&rows, now).await?;
        if queued > 0 {
            metrics::counter!("model_ledger_webhook_deliveries_queued_total").increment(queued);
        }
        Ok(due.len() as i64 == CHECKPOINT_BATCH)
    }

    /// Leases due deliveries for the free slots and starts a task for each.
    async fn start_due(self: &Arc<Self>, slots: &Arc<Semaphore>) -> Result<(), StoreError> {
        let free = slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let busy: Vec<String> = self
            .in_flight
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, n)| **n >= self.settings.per_webhook_concurrency.max(1))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let now = chrono::Utc::now();
        let lease = self.settings.timeout + self.settings.connect_timeout + LEASE_MARGIN;
        let until = later(now, lease);
        let jobs = self
            .store
            .lease_webhook_deliveries(
                &self.owner,
                micros(&now),
                micros(&until),
                free as i64,
                &busy,
            )
            .await?;
        for job in jobs {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Cannot happen (we leased no more than were free); the lease then expires and
                // the delivery is taken up again.
                break;
            };
            if let Ok(mut m) = self.in_flight.lock() {
                *m.entry(job.webhook_id.clone()).or_default() += 1;
            }
            let worker = self.clone();
            tokio::spawn(async move {
                let webhook_id = job.webhook_id.clone();
                worker.deliver(job).await;
                if let Ok(mut m) = worker.in_flight.lock()
                    && let Some(n) = m.get_mut(&webhook_id)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(&webhook_id);
                    }
                }
                drop(permit);
                worker.finished.notify_one();
            });
        }
        Ok(())
    }

    /// Makes one attempt at a leased delivery and records how it ended.
    async fn deliver(&self, job: DeliveryJob) {
        let record = self.attempt(&job).await;
        let outcome = record.status.as_str();
        metrics::counter!("model_ledger_webhook_attempts_total", "outcome" => outcome).increment(1);
        match self
            .store
            .finish_webhook_delivery(&job.id, &self.owner, &record)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery = %job.id,
                "a webhook delivery's lease expired during its attempt; another worker retries it"
            ),
            Err(e) => tracing::warn!(
                delivery = %job.id, error = %e,
                "a webhook attempt could not be recorded; it is retried when its lease expires"
            ),
        }
    }

    async fn attempt(&self, job: &DeliveryJob) -> AttemptRecord {
        let now = chrono::Utc::now();
        let give_up = |error: String| AttemptRecord {
            status: DeliveryStatus::Failed,
            next_attempt_at_us: micros(&now),
            attempted_at_us: micros(&now),
            response_code: None,
            latency_ms: None,
            error: Some(error),
        };
        match job.webhook_status {
            Some(WebhookStatus::Active) => {}
            Some(WebhookStatus::Disabled) => {
                return give_up("the webhook is disabled".into());
            }
            None => return give_up("the webhook was deleted".into()),
        }
        // The current secret, then (during a rotation's overlap) the one it replaced.
        let overlapping = job.previous_secret_sealed.as_ref().filter(|_| {
            job.previous_secret_until_us
                .is_some_and(|t| t > micros(&now))
        });
        let mut secrets = Vec::new();
        for sealed in job.secret_sealed.iter().chain(overlapping) {
            match self.settings.secrets.open(&job.webhook_id, sealed) {
                Ok(secret) => secrets.push(secret),
                Err(e) => {
                    return give_up(format!(
                        "the webhook's secret cannot be opened ({e}); configure the \
                         --webhook-secret-key it was sealed with, then redeliver"
                    ));
                }
            }
        }
        let sent = self
            .sender
            .send(&job.url, &job.id, job.payload.as_bytes(), &secrets)
            .await;
        let attempted_at = chrono::Utc::now();
        let first = job.first_attempt_at_us.unwrap_or(micros(&now));
        let elapsed =
            Duration::from_micros(micros(&attempted_at).saturating_sub(first).max(0) as u64);
        let step = if sent.refused {
            NextStep::Failed
        } else {
            self.settings.retry.next_step(
                sent.outcome,
                (job.attempts + 1).clamp(1, i64::from(u32::MAX)) as u32,
                elapsed,
                sent.retry_after.as_deref(),
                attempted_at,
                rand::thread_rng().r#gen::<f64>(),
            )
        };
        record(&sent, step, attempted_at)
    }
}

/// The row update for an attempt that ended with `sent` and led to `step`.
fn record(sent: &SendOutcome, step: NextStep, at: chrono::DateTime<chrono::Utc>) -> AttemptRecord {
    let (status, next) = match step {
        NextStep::Delivered => (DeliveryStatus::Succeeded, at),
        NextStep::Failed => (DeliveryStatus::Failed, at),
        NextStep::RetryAfter(wait) => (DeliveryStatus::Pending, later(at, wait)),
    };
    AttemptRecord {
        status,
        next_attempt_at_us: micros(&next),
        attempted_at_us: micros(&at),
        response_code: sent.status.map(i32::from),
        latency_ms: Some(sent.latency.as_millis().min(i64::MAX as u128) as i64),
        error: sent.error.clone(),
    }
}

/// `at + wait`, saturating instead of overflowing.
fn later(at: chrono::DateTime<chrono::Utc>, wait: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
