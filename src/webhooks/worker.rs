//! The delivery worker: committed events in, signed POSTs out, every step recorded.
//!
//! Every server process runs one, as three tasks that never wait on each other:
//!
//! 1. **Fan-out**, in the one process that leads it (a lease on the cursor's row, taken over
//!    when its holder stops or its [`LEAD_LEASE`] runs out), woken by each commit (for
//!    PostgreSQL, every process's commits, through LISTEN/NOTIFY) and otherwise every
//!    [`POLL`]. It reads the events after the store's webhook cursor as a *window*, turns each
//!    into its webhook event ([`super::events`]; an event no webhook can receive is just
//!    passed over) and sends each (webhook, event) delivery it can at once: the first of
//!    every (webhook, model) queue that has nothing pending in the database, then that
//!    queue's next one when it was delivered. It waits for those outcomes (at most
//!    [`window::ATTEMPT_WAIT`] per attempt), then writes the whole window in the transaction
//!    that moves the cursor: each delivery once, with its outcome, or pending for the delivery
//!    task when it is due again, still on the wire (leased to this process) or was not sent.
//!    Sending before writing is what makes the healthy path one row insert per delivery; it
//!    is safe because nothing moves the cursor but that transaction: a leader that dies
//!    first leaves the events to the next one, which sends them again under the same delivery
//!    ids ([`event_delivery_id`]). A queue of the window that has pending deliveries is
//!    *adopted* first: the leader leases its pending rows from the oldest on, sends them
//!    ahead of the queue's new events, and records them in the same transaction (see
//!    [`crate::store::Webhooks::adopt_webhook_queues`]); left to the lease, which sends one
//!    row of a queue at a time, a queue that once fell behind stayed behind under load.
//!    If another process moved the cursor first (its lead began
//!    when this one's had run out), nothing is written. So each committed event is fanned
//!    out once, none is skipped, and a server that was down catches up from where the cursor
//!    stands. Signed checkpoints follow, once the cursor has passed their position: each is
//!    queued once under a compare-and-set marker of its own (see
//!    [`crate::store::Webhooks::fan_out_webhook_checkpoints`]).
//! 2. **Delivery**, in every process, woken when the fan-out queued deliveries, when outcomes
//!    freed slots, and every [`POLL`] (retries that came due, expired leases, another
//!    process's fan-out). Lease as many due rows as there are free slots (at most
//!    [`WebhookSettings::concurrency`], and no new ones for a webhook that already has
//!    [`WebhookSettings::per_webhook_concurrency`] in flight here), and send each in its own
//!    task, so a slow or hanging receiver holds only its own slots while the others' deliveries
//!    go on. The store leases only the oldest pending delivery of each (webhook, model), so one
//!    receiver gets one model's events in commit order, and a checkpoint only after that
//!    receiver's events up to its position are no longer pending.
//! 3. **Recording.** A leased attempt hands its outcome (delivered, failed for good, or due
//!    again after the backoff of [`super::retry`]) to one recorder, which writes every
//!    outcome that is waiting in a single statement and only then frees their slots (the
//!    next event of the same model can only be leased once this one is no longer pending in
//!    the database). A window's attempt that outlived its window ends here too.
//!
//! Until 2026-12-07 the fan-out queued a row per delivery and a lease (or a hand-off) sent
//! it, and the outcome updated the row: three writes to a table with seven indexes per
//! delivery, which capped PostgreSQL at about 3,000 deliveries a second on the benchmark
//! machine (docs/performance.md). The queue is now the slow path: retries, receivers slower
//! than [`window::ATTEMPT_WAIT`], checkpoints, redeliveries, and every process but the
//! leader.
//!
//! After a round the fan-out waits [`FAN_OUT_GAP`] before it looks at the next commit, so
//! commits that land together are fanned out by one window instead of one each. A fan-out
//! whose last round found no active webhook (or that does not lead) is idle: it ignores
//! commits and looks again once per [`POLL`]. Without that, a registry with no webhooks paid a
//! cursor read for every commit (measured: 1,220 statements for 696 transitions). Nothing is
//! missed meanwhile, because the cursor, not the announcement, says what is still to be
//! fanned out; the first events after a webhook is created wait at most one [`POLL`].
//!
//! A lease lasts the attempt's total timeout plus a margin. A process that dies mid-delivery
//! leaves its leases to expire; another process (or this one after a restart) then sends
//! those deliveries again with the same delivery id, which receivers deduplicate on.
//!
//! The loops and the recorder are here; a window on the wire is [`window`], and one attempt,
//! from a job to the row update that records it, is [`attempt`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast::error::TryRecvError, mpsc};

use super::WebhookSettings;
use super::events::{checkpoint_event, webhook_event};
use super::sender::Sender;
use crate::store::projection::micros;
use crate::store::{
    AdoptedOutcomes, AttemptRecord, DeliveryJob, EventQuery, FannedOut, SharedStore, StoreError,
    WebhookEventRow,
};

mod attempt;
mod window;

use attempt::PreparedWebhook;

/// How often the worker looks for due deliveries when no commit woke it (retries that came
/// due, deliveries queued by another SQLite-less process, expired leases).
pub const POLL: Duration = Duration::from_millis(250);
/// How long the fan-out waits after a round before it looks at the next commit.
const FAN_OUT_GAP: Duration = Duration::from_millis(10);
/// Events read per fan-out transaction.
const FAN_OUT_BATCH: i64 = 500;
/// How long the fan-out's lead lasts unless renewed; its holder renews it once half is left.
/// A leader killed without a shutdown holds it this long.
const LEAD_LEASE: Duration = Duration::from_secs(10);
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
        lead_until: Mutex::new(None),
        slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        settings,
        owner: uuid::Uuid::now_v7().to_string(),
        in_flight: Mutex::new(HashMap::new()),
        finished: Notify::new(),
        queued: Notify::new(),
        prepared: Mutex::new(HashMap::new()),
        outcomes,
    });
    Ok(tokio::spawn(async move {
        tokio::select! {
            () = worker.clone().fan_out_loop() => {}
            () = worker.clone().deliver_loop() => {}
            () = worker.clone().record_outcomes(outcomes_to_record) => {}
            () = stop => {}
        }
        // Another process takes the lead at once instead of when its lease runs out (best
        // effort: a process that is killed, or stops before this runs, leaves it to expire).
        if let Err(e) = worker.store.release_webhook_fan_out(&worker.owner).await {
            tracing::debug!(error = %e, "the webhook fan-out's lead could not be given up");
        }
    }))
}

struct Worker {
    store: SharedStore,
    settings: Arc<WebhookSettings>,
    sender: Sender,
    /// This process's lease owner id.
    owner: String,
    /// Until when this process leads the fan-out, as far as it knows (see [`LEAD_LEASE`]).
    lead_until: Mutex<Option<tokio::time::Instant>>,
    /// One permit per delivery that may be in flight here ([`WebhookSettings::concurrency`]).
    slots: Arc<Semaphore>,
    /// Deliveries in flight here, by webhook id.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Woken when outcomes were recorded: their slots (and their models' next events) are free.
    finished: Notify,
    /// Woken when the fan-out queued deliveries.
    queued: Notify,
    /// Each webhook's checked URL and opened keys, by webhook id.
    prepared: Mutex<HashMap<String, Arc<PreparedWebhook>>>,
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
    /// Deliveries written pending and unleased: work for the delivery loop.
    waiting: u64,
}

/// One attempt's outcome, waiting to be written.
struct Finished {
    delivery_id: String,
    webhook_id: String,
    record: AttemptRecord,
    /// A leased delivery's slot, held (with its count in `in_flight`) until the outcome is
    /// written. `None` for a window's attempt that outlived its window, which freed both when
    /// it ended: its row, pending and leased here until this outcome is written, is what keeps
    /// its model's later events behind it.
    slot: Option<OwnedSemaphorePermit>,
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
        // The queues with a pending delivery, as far as the leader knows (`None`: not known,
        // read them all). Only the leader's windows make an event's queue pending (a retry
        // or a redelivery keeps or makes pending a row that is already there), so the leader
        // learns of new ones from its own windows and asks the database only which of those
        // it knows have drained: nothing at all while every receiver keeps up.
        let mut pending: Option<HashSet<(String, String)>> = None;
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
                    let batch = self.fan_out_once(&mut pending).await;
                    if batch.is_err() {
                        pending = None;
                    }
                    let batch = batch?;
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

    /// Fans out one window of events, if this process leads the fan-out: sends each delivery
    /// it can start at once, waits (briefly, see [`window::ATTEMPT_WAIT`]) for the outcomes,
    /// and writes every delivery of the window, settled or queued, in the transaction that
    /// moves the cursor.
    async fn fan_out_once(
        self: &Arc<Self>,
        pending: &mut Option<HashSet<(String, String)>>,
    ) -> Result<FanOutBatch, StoreError> {
        if !self.lead().await? {
            // A new lead starts from what the database says.
            *pending = None;
            // Another process leads: it sends the new events, this one leases what is
            // queued. The fan-out looks again every POLL, to take over when that lead ends.
            return Ok(FanOutBatch {
                more: false,
                any_active: false,
                waiting: 0,
            });
        }
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
        if events.is_empty() {
            return Ok(done);
        }
        let mut more = events.len() as i64 == FAN_OUT_BATCH;
        // Read after the events: a webhook created before an event it receives was committed
        // before that event was read. One that is missed anyway (created meanwhile) still gets
        // its deliveries, queued by the transaction, which reads the subscriptions again.
        let subscriptions = self.store.active_webhook_subscriptions().await?;
        let mut rows: Vec<WebhookEventRow> = Vec::new();
        let mut last = cursor;
        let mut deliveries = 0;
        for envelope in &events {
            if let Some(event) = webhook_event(envelope) {
                let row = WebhookEventRow {
                    position: envelope.position,
                    event_name: event.name.to_string(),
                    order_key: envelope.stream_id.to_string(),
                    occurred_at_us: micros(&envelope.occurred_at),
                    payload: event.body.to_string(),
                    checkpoint_id: None,
                };
                let receivers = subscriptions.iter().filter(|s| s.receives(&row)).count();
                // What a window holds in memory, and its one transaction, stay bounded.
                if deliveries > 0 && deliveries + receivers > self.settings.window_deliveries {
                    more = true;
                    break;
                }
                deliveries += receivers;
                rows.push(row);
            }
            last = envelope.position;
        }
        let known = match pending.take() {
            None => self.store.pending_webhook_queues(None).await?,
            Some(known) if known.is_empty() => known,
            Some(known) => {
                let known: Vec<(String, String)> = known.into_iter().collect();
                self.store.pending_webhook_queues(Some(&known)).await?
            }
        };
        // The window's queues that wait behind a pending delivery: the leader takes them over
        // from the lease and sends their pending deliveries first, then (when it took them
        // all) the new events. Left to the lease, such a queue stays there under load: the
        // lease sends one row of a queue at a time, slower than a busy model's events arrive.
        let mut behind: HashSet<(String, String)> = HashSet::new();
        if !known.is_empty() {
            for row in &rows {
                for subscription in subscriptions.iter().filter(|s| s.receives(row)) {
                    let queue = (subscription.id.clone(), row.order_key.clone());
                    if known.contains(&queue) {
                        behind.insert(queue);
                    }
                }
            }
        }
        let adopted = if behind.is_empty() {
            Vec::new()
        } else {
            let behind: Vec<(String, String)> = behind.into_iter().collect();
            let now = chrono::Utc::now();
            self.store
                .adopt_webhook_queues(
                    &self.owner,
                    micros(&now),
                    micros(&later(now, self.lease_length())),
                    &behind,
                    self.settings.window_deliveries,
                )
                .await?
        };
        let adopted_count: usize = adopted.iter().map(|q| q.jobs.len()).sum();
        if adopted_count > 0 {
            metrics::counter!("model_ledger_webhook_deliveries_adopted_total")
                .increment(adopted_count as u64);
        }
        let window = self
            .send_window(&rows, &subscriptions, &known, adopted)
            .await?;
        let now = micros(&chrono::Utc::now());
        let adopted_outcomes = AdoptedOutcomes {
            owner: self.owner.clone(),
            attempted: window
                .adopted_attempted
                .iter()
                .map(|(id, _, record)| (id.clone(), record.clone()))
                .collect(),
            unstarted: window.adopted_unstarted.clone(),
        };
        let written = match self
            .store
            .fan_out_webhook_events(cursor, last, &rows, now, &window.settled, &adopted_outcomes)
            .await
        {
            Ok(written) => written,
            Err(e) => {
                self.record_adopted_alone(window.adopted_attempted);
                return Err(e);
            }
        };
        match written {
            // Another process fanned these out first (its lead began after this one's ran
            // out): read on from where it left the cursor. What this window sent, it sent
            // again under the same delivery ids.
            None => {
                // This process's lead may have run out while it worked: ask again.
                if let Ok(mut until) = self.lead_until.lock() {
                    *until = None;
                }
                *pending = None;
                self.record_adopted_alone(window.adopted_attempted);
                Ok(FanOutBatch { more: true, ..done })
            }
            Some(FannedOut { written, waiting }) => {
                let mut known = known;
                known.extend(window.left_pending);
                // A webhook created or disabled after the window read the subscriptions:
                // the transaction queued what the window did not know of, so the next
                // window reads every pending queue again.
                *pending = (written == window.deliveries).then_some(known);
                if let Some(late) = window.late {
                    self.record_late(late);
                }
                if written > 0 {
                    metrics::counter!("model_ledger_webhook_deliveries_queued_total")
                        .increment(written);
                }
                Ok(FanOutBatch {
                    more,
                    waiting,
                    ..done
                })
            }
        }
    }

    /// Hands the outcomes of adopted deliveries to the recorder when the window's transaction
    /// did not record them: their rows are still leased to this process. The adopted ones
    /// never started wait for their leases to run out.
    fn record_adopted_alone(&self, attempted: Vec<(String, String, AttemptRecord)>) {
        for (delivery_id, webhook_id, record) in attempted {
            let _ = self.outcomes.send(Finished {
                delivery_id,
                webhook_id,
                record,
                slot: None,
            });
        }
    }

    /// Whether this process leads the fan-out, taking or renewing the lead when less than half
    /// of its lease is left.
    async fn lead(&self) -> Result<bool, StoreError> {
        let now = tokio::time::Instant::now();
        let until = self.lead_until.lock().ok().and_then(|until| *until);
        if until.is_some_and(|until| until > now + LEAD_LEASE / 2) {
            return Ok(true);
        }
        let wall = chrono::Utc::now();
        let leads = self
            .store
            .lead_webhook_fan_out(&self.owner, micros(&wall), micros(&later(wall, LEAD_LEASE)))
            .await?;
        if let Ok(mut until) = self.lead_until.lock() {
            // Counted from before the statement, so this process never believes in a lead
            // longer than the database grants it.
            *until = leads.then(|| now + LEAD_LEASE);
        }
        Ok(leads)
    }

    fn attempt_ended(&self, webhook_id: &str) {
        if let Ok(mut in_flight) = self.in_flight.lock()
            && let Some(n) = in_flight.get_mut(webhook_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(webhook_id);
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

    /// Takes every free slot before the lease, so a delivery is never leased without a slot
    /// to send it in (it would sit leased, and its model's later events behind it, until the
    /// lease expired). Dropping the permits frees what was not used; a window waiting for a
    /// slot meanwhile gets one then (see [`window::SLOT_WAIT`]).
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
                slot: Some(slot),
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
            for finished in batch.iter().filter(|f| f.slot.is_some()) {
                self.attempt_ended(&finished.webhook_id);
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
}

/// `at + wait`, saturating instead of overflowing.
fn later(at: chrono::DateTime<chrono::Utc>, wait: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
