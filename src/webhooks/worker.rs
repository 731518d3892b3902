//! The delivery worker: committed events in, signed POSTs out, every step recorded.
//!
//! Every server process runs one, as three tasks that never wait on each other:
//!
//! 1. **Fan-out**, woken by each commit (for PostgreSQL, every process's commits, through
//!    LISTEN/NOTIFY) and otherwise every [`POLL`]. Read the events after the store's webhook
//!    cursor, turn each into its webhook event ([`super::events`]; an event no webhook can
//!    receive is just passed over) and hand them to the store, which in one transaction moves
//!    the cursor and queues a delivery row per matching active subscription. If another
//!    process moved the cursor first, nothing is written and the events are read again from
//!    the new cursor. So each committed event is fanned out once, none is skipped, and a
//!    server that was down catches up from where the cursor stands. The same transaction
//!    leases to this process the deliveries it can start at once (the hand-off,
//!    [`HandOff`]): those that head their (webhook, model) queue, up to the free slots, which
//!    the fan-out takes before it writes. They are sent without a lease statement of their
//!    own; on the healthy path that is most deliveries. Signed checkpoints
//!    follow, once the cursor has passed their position: each is fanned out once under a
//!    compare-and-set marker of its own (see
//!    [`crate::store::Webhooks::fan_out_webhook_checkpoints`]).
//! 2. **Delivery**, woken when the fan-out queued deliveries, when outcomes freed slots, and
//!    every [`POLL`] (retries that came due, expired leases, another process's fan-out).
//!    Lease as many due rows as there are free slots (at most
//!    [`WebhookSettings::concurrency`], and no new ones for a webhook that already has
//!    [`WebhookSettings::per_webhook_concurrency`] in flight here), and send each in its own
//!    task, so a slow or hanging receiver holds only its own slots while the others' deliveries
//!    go on. The store leases only the oldest pending delivery of each (webhook, model), so one
//!    receiver gets one model's events in commit order, and a checkpoint only after that
//!    receiver's events up to its position are no longer pending.
//! 3. **Recording.** A task hands its outcome (delivered, failed for good, or due again after
//!    the backoff of [`super::retry`]) to one recorder, which writes every outcome that is
//!    waiting in a single statement and only then frees their slots. At low rates that is a
//!    batch of one, as fast as before; at thousands of deliveries a second it is one commit
//!    per batch instead of one per delivery, which is what bounded throughput. A slot stays
//!    taken until its outcome is written because the next event of the same model can only be
//!    leased once this one is no longer pending in the database.
//!
//! Fan-out and delivery were one loop until 2026-12-06; then every lease waited for the
//! fan-out before it (a transaction writing a hundred rows per event at 200 events a second),
//! and every fan-out for the lease. The hand-off exists because a lease reads past every
//! delivery still in flight before it finds a queue head: at thousands of deliveries a second
//! it cost PostgreSQL as much as queueing them (docs/performance.md). After a round the
//! fan-out waits [`FAN_OUT_GAP`] before it looks at the next commit, so commits that land
//! together are fanned out by one transaction instead of one each. A fan-out whose last
//! round found no active webhook is idle: it ignores commits and looks again once per
//! [`POLL`]. Without that, a registry with no webhooks paid a cursor read for every commit
//! (measured: 1,220 statements for 696 transitions). Nothing is missed meanwhile, because the cursor, not the announcement, says
//! what is still to be fanned out; the first events after a webhook is created wait at most
//! one [`POLL`].
//!
//! A lease lasts the attempt's total timeout plus a margin. A process that dies mid-delivery
//! leaves its leases to expire; another process (or this one after a restart) then sends
//! those deliveries again with the same delivery id, which receivers deduplicate on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast::error::TryRecvError, mpsc};

use super::WebhookSettings;
use super::events::{checkpoint_event, webhook_event};
use super::retry::NextStep;
use super::sender::{SendOutcome, Sender};
use crate::store::projection::micros;
use crate::store::{
    AttemptRecord, DeliveryJob, DeliveryStatus, EventQuery, FannedOut, HandOff, SharedStore,
    StoreError, WebhookEventRow, WebhookStatus,
};

/// How often the worker looks for due deliveries when no commit woke it (retries that came
/// due, deliveries queued by another SQLite-less process, expired leases).
pub const POLL: Duration = Duration::from_millis(250);
/// How long the fan-out waits after a round before it looks at the next commit.
const FAN_OUT_GAP: Duration = Duration::from_millis(10);
/// Events read per fan-out transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Checkpoints read per fan-out transaction (they are made seconds apart, not per commit).
const CHECKPOINT_BATCH: i64 = 50;
/// How long past the attempt's own timeout a lease is kept before another process may take
/// the delivery over.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Outcomes written per recording statement at most.
const RECORD_BATCH: usize = 500;
/// Attempts at writing a batch of outcomes before leaving them to their leases' expiry (which
/// sends them again, under the same delivery ids).
const RECORD_TRIES: u32 = 3;

/// Starts the worker; it runs until `stop` resolves.
pub fn spawn(
    store: SharedStore,
    settings: Arc<WebhookSettings>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (outcomes, outcomes_to_record) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        sender: Sender::new(&settings)?,
        store,
        slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        settings,
        owner: uuid::Uuid::now_v7().to_string(),
        in_flight: Mutex::new(HashMap::new()),
        finished: Notify::new(),
        queued: Notify::new(),
        outcomes,
    });
    Ok(tokio::spawn(async move {
        tokio::select! {
            () = worker.clone().fan_out_loop() => {}
            () = worker.clone().deliver_loop() => {}
            () = worker.record_outcomes(outcomes_to_record) => {}
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
    /// One permit per delivery that may be in flight here ([`WebhookSettings::concurrency`]).
    slots: Arc<Semaphore>,
    /// Deliveries in flight here, by webhook id.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Woken when outcomes were recorded: their slots (and their models' next events) are free.
    finished: Notify,
    /// Woken when the fan-out queued deliveries.
    queued: Notify,
    /// Attempts made, on their way to the recorder (at most one per slot, so bounded by
    /// [`WebhookSettings::concurrency`] although the channel is not).
    outcomes: mpsc::UnboundedSender<Finished>,
}

/// A loop's view of the store being unreachable: logged once when it starts and once when it
/// ends, however many rounds fail in between, each followed by a pause.
struct Outage {
    task: &'static str,
    failing: bool,
}

impl Outage {
    fn new(task: &'static str) -> Self {
        Outage {
            task,
            failing: false,
        }
    }

    async fn wait(&mut self, error: &StoreError) {
        if !self.failing {
            tracing::warn!(task = self.task, %error, "webhook worker cannot reach the store; retrying");
            self.failing = true;
        }
        tokio::time::sleep(POLL * 4).await;
    }

    fn over(&mut self) {
        if self.failing {
            tracing::info!(task = self.task, "webhook worker reaches the store again");
            self.failing = false;
        }
    }
}

/// What one fan-out transaction did.
struct FanOutBatch {
    /// A full batch was read (or another process moved the cursor first): read again.
    more: bool,
    /// Some webhook is active; when none is, the fan-out is idle (see the module docs).
    any_active: bool,
    /// Deliveries queued and left for the delivery loop to lease (not handed off).
    waiting: u64,
}

/// One attempt's outcome, waiting to be written, with the slot it still holds.
struct Finished {
    delivery_id: String,
    webhook_id: String,
    record: AttemptRecord,
    _slot: OwnedSemaphorePermit,
}

impl Worker {
    /// The fan-out loop: woken by commits (or every [`POLL`]), it queues deliveries for every
    /// event after the cursor and wakes the delivery loop when it queued any.
    async fn fan_out_loop(self: Arc<Self>) {
        // Subscribed before the first read, so no commit between a read and the wait is missed.
        let mut commits = self.store.subscribe();
        let mut outage = Outage::new("fan-out");
        // Checkpoints come minutes apart, commits hundreds of times a second: looking for
        // them once per POLL keeps that read off the busy path and delays one by 250 ms at most.
        let mut checkpoints_checked: Option<tokio::time::Instant> = None;
        loop {
            // Whatever was announced up to here is read by this round (a lagged receiver also
            // means commits happened); a commit announced during the round wakes the next one.
            while !matches!(
                commits.try_recv(),
                Err(TryRecvError::Empty | TryRecvError::Closed)
            ) {}
            let check_checkpoints = checkpoints_checked.is_none_or(|at| at.elapsed() >= POLL);
            let round = async {
                let mut active = false;
                let mut waiting = 0;
                loop {
                    let batch = self.fan_out_once().await?;
                    active |= batch.any_active;
                    waiting += batch.waiting;
                    if !batch.more {
                        break;
                    }
                }
                if check_checkpoints {
                    loop {
                        let (more, n) = self.fan_out_checkpoints().await?;
                        waiting += n;
                        if !more {
                            break;
                        }
                    }
                }
                Ok::<_, StoreError>((active, waiting))
            };
            let idle = match round.await {
                Ok((active, waiting)) => {
                    if waiting > 0 {
                        self.queued.notify_one();
                    }
                    if check_checkpoints {
                        checkpoints_checked = Some(tokio::time::Instant::now());
                    }
                    outage.over();
                    !active
                }
                Err(e) => {
                    // The events are read again once the store answers.
                    outage.wait(&e).await;
                    continue;
                }
            };
            if idle {
                // Commits stay queued in the channel; the next round's drain sees them, or
                // sees that it lagged.
                tokio::time::sleep(POLL).await;
                continue;
            }
            // Commits that land within the gap are fanned out by one round: at hundreds of
            // commits a second, one transaction for several of them instead of one each.
            tokio::time::sleep(FAN_OUT_GAP).await;
            tokio::select! {
                _ = commits.recv() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The delivery loop: leases due deliveries into the free slots whenever the fan-out
    /// queued some, outcomes freed slots, or a [`POLL`] passed (retries that came due,
    /// expired leases, deliveries queued by another process).
    async fn deliver_loop(self: Arc<Self>) {
        let mut outage = Outage::new("delivery");
        loop {
            match self.start_due().await {
                Ok(_) => outage.over(),
                Err(e) => {
                    outage.wait(&e).await;
                    continue;
                }
            }
            tokio::select! {
                () = self.finished.notified() => {}
                () = self.queued.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Fans out one batch of events, starting at once the deliveries it could lease to this
    /// process (see [`HandOff`]).
    async fn fan_out_once(self: &Arc<Self>) -> Result<FanOutBatch, StoreError> {
        let (cursor, any_active) = self.store.webhook_cursor().await?;
        let done = FanOutBatch {
            more: false,
            any_active,
            waiting: 0,
        };
        if !any_active {
            // Nothing to deliver, so nothing to write: a registry without webhooks pays this
            // read once per POLL (the fan-out is then idle). The cursor catches up when a
            // webhook becomes active.
            return Ok(done);
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
            return Ok(done);
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
        // The free slots are taken before the transaction, so what it leases can be sent at
        // once. Not for a full batch: the fan-out is then catching up on a backlog, whose
        // queues are busy (nothing to hand off), and its long transaction would keep every
        // slot from the lease meanwhile.
        let mut permits = if events.len() as i64 == FAN_OUT_BATCH {
            Vec::new()
        } else {
            self.take_free_slots()
        };
        let now = chrono::Utc::now();
        let hand_off = (!permits.is_empty()).then(|| HandOff {
            owner: self.owner.clone(),
            lease_until_us: micros(&later(now, self.lease_length())),
            limit: permits.len(),
            per_webhook: self.settings.per_webhook_concurrency,
            in_flight: self.in_flight.lock().map(|m| m.clone()).unwrap_or_default(),
        });
        match self
            .store
            .fan_out_webhook_events(cursor, last, &rows, micros(&now), hand_off.as_ref())
            .await?
        {
            // Another process fanned these out first: read on from where it left the cursor.
            None => Ok(FanOutBatch { more: true, ..done }),
            Some(FannedOut { queued, leased }) => {
                let waiting = queued - leased.len() as u64;
                for job in leased {
                    // `leased` is at most as long as `permits`.
                    if let Some(permit) = permits.pop() {
                        self.dispatch(job, permit);
                    }
                }
                if queued > 0 {
                    metrics::counter!("model_ledger_webhook_deliveries_queued_total")
                        .increment(queued);
                }
                Ok(FanOutBatch {
                    more: events.len() as i64 == FAN_OUT_BATCH,
                    waiting,
                    ..done
                })
            }
        }
    }

    /// Fans out one batch of signed checkpoints: whether more may follow, and the deliveries
    /// queued.
    async fn fan_out_checkpoints(&self) -> Result<(bool, u64), StoreError> {
        let due = self.store.webhook_checkpoints_due(CHECKPOINT_BATCH).await?;
        if due.is_empty() {
            return Ok((false, 0));
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
        Ok((due.len() as i64 == CHECKPOINT_BATCH, queued))
    }

    /// How long a lease lasts: the attempt's timeouts and a margin.
    fn lease_length(&self) -> Duration {
        self.settings.timeout + self.settings.connect_timeout + LEASE_MARGIN
    }

    /// Takes every free slot: the fan-out's hand-off and the lease each take theirs before
    /// they lease, so a delivery is never leased without a slot to send it in (it would sit
    /// leased, and its model's later events behind it, until the lease expired). Dropping the
    /// permits frees what was not used.
    fn take_free_slots(&self) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::new();
        while let Ok(permit) = self.slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        permits
    }

    /// Leases due deliveries for the free slots and starts a task for each; how many.
    async fn start_due(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut permits = self.take_free_slots();
        if permits.is_empty() {
            return Ok(0);
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
        let until = later(now, self.lease_length());
        let jobs = self
            .store
            .lease_webhook_deliveries(
                &self.owner,
                micros(&now),
                micros(&until),
                permits.len() as i64,
                &busy,
            )
            .await?;
        let leased = jobs.len();
        for job in jobs {
            // The store leases at most `limit`, one per permit.
            if let Some(permit) = permits.pop() {
                self.dispatch(job, permit);
            }
        }
        Ok(leased)
    }

    /// Sends a leased delivery in a task of its own, holding `slot` until its outcome is
    /// recorded.
    fn dispatch(self: &Arc<Self>, job: DeliveryJob, slot: OwnedSemaphorePermit) {
        if let Ok(mut m) = self.in_flight.lock() {
            *m.entry(job.webhook_id.clone()).or_default() += 1;
        }
        let worker = self.clone();
        tokio::spawn(async move {
            let record = worker.attempt(&job).await;
            metrics::counter!("model_ledger_webhook_attempts_total", "outcome" => record.status.as_str())
                .increment(1);
            // Fails only while the worker stops; the slot is then dropped with it.
            let _ = worker.outcomes.send(Finished {
                delivery_id: job.id,
                webhook_id: job.webhook_id,
                record,
                _slot: slot,
            });
        });
    }

    /// Writes outcomes as they arrive, each time all that are waiting, then frees their slots.
    async fn record_outcomes(self: Arc<Self>, mut outcomes: mpsc::UnboundedReceiver<Finished>) {
        let mut batch = Vec::new();
        while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let attempts: Vec<(String, AttemptRecord)> = batch
                .iter()
                .map(|f| (f.delivery_id.clone(), f.record.clone()))
                .collect();
            self.write_outcomes(&attempts).await;
            if let Ok(mut m) = self.in_flight.lock() {
                for finished in &batch {
                    if let Some(n) = m.get_mut(&finished.webhook_id) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            m.remove(&finished.webhook_id);
                        }
                    }
                }
            }
            // Frees the slots.
            batch.clear();
            self.finished.notify_one();
        }
    }

    async fn write_outcomes(&self, attempts: &[(String, AttemptRecord)]) {
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .store
                .finish_webhook_deliveries(&self.owner, attempts)
                .await
            {
                Ok(recorded) => {
                    if recorded.len() < attempts.len() {
                        let recorded: std::collections::HashSet<&str> =
                            recorded.iter().map(String::as_str).collect();
                        for (id, _) in attempts
                            .iter()
                            .filter(|(id, _)| !recorded.contains(id.as_str()))
                        {
                            tracing::warn!(
                                delivery = %id,
                                "a webhook delivery's lease expired during its attempt; another worker retries it"
                            );
                        }
                    }
                    return;
                }
                Err(e) if tries >= RECORD_TRIES => {
                    tracing::warn!(
                        deliveries = attempts.len(), error = %e,
                        "webhook attempts could not be recorded; they are sent again when their leases expire"
                    );
                    return;
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
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
