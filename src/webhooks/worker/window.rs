//! A fan-out window on the wire: the part of the leader's round between reading the events
//! and writing them.
//!
//! A window turns its events into one queue per (webhook, order key), in position order, and
//! sends from the head of each queue that nothing in the database holds back (no pending
//! delivery of that queue, or only pending ones the leader adopted). A queue's next delivery
//! starts only when the one before it ended delivered or failed for good, which is what keeps
//! one model's events in commit order at each receiver while different models and webhooks
//! go out side by side. Slots come from the worker's semaphore and its per-webhook count,
//! the same ones the delivery loop uses, so the window and the lease together never exceed
//! [`crate::webhooks::WebhookSettings::concurrency`]. The window stops waiting for an attempt
//! after [`ATTEMPT_WAIT`] and for a slot after [`SLOT_WAIT`]; what it did not settle by then
//! is written pending (leased here when it is still on the wire) and finished by the lease
//! and the recorder.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::{Finished, Worker, later};
use crate::store::projection::micros;
use crate::store::{
    AdoptedQueue, AttemptRecord, DeliveryJob, DeliveryStatus, Settled, SettledDeliveries,
    StoreError, WebhookEventRow, WebhookStatus, WebhookSubscription, event_delivery_id,
};

/// How long a window waits for one attempt before it stops waiting for it: the attempt is
/// recorded as in flight, leased to this process, and the rest of its queue as queued for the
/// lease. What a receiver slower than this costs the others, once.
pub(super) const ATTEMPT_WAIT: Duration = Duration::from_millis(50);
/// How long a window waits for a free slot when none comes free before it leaves the rest to
/// the lease. Longer than an attempt's wait: the slots are mostly held by the delivery loop
/// while it leases (it takes every free slot first), and giving up queues the whole rest of
/// the window at once, which under overload moved so many queues to the slower lease that
/// they never came back (2026-12-07, docs/performance.md).
pub(super) const SLOT_WAIT: Duration = Duration::from_secs(1);

/// One window's deliveries, as the leader leaves them to [`fan_out_webhook_events`]
/// (crate::store::Webhooks::fan_out_webhook_events).
pub(super) struct Window {
    pub(super) settled: SettledDeliveries,
    /// The queues it leaves with a pending delivery (queued, due again, or on the wire).
    pub(super) left_pending: HashSet<(String, String)>,
    /// How many deliveries it holds, sent or not.
    pub(super) deliveries: u64,
    /// Attempts still on the wire when the window stopped waiting (recorded as
    /// [`Settled::InFlight`]); their outcomes are written once the window is.
    pub(super) late: Option<mpsc::UnboundedReceiver<WindowAttempt>>,
    /// Adopted deliveries whose attempt ended here: (delivery id, webhook id, outcome).
    pub(super) adopted_attempted: Vec<(String, String, AttemptRecord)>,
    /// Adopted deliveries never started (their queue closed first).
    pub(super) adopted_unstarted: Vec<String>,
}

/// A window's attempt that ended.
pub(super) struct WindowAttempt {
    queue: usize,
    job: DeliveryJob,
    record: AttemptRecord,
}

/// A window's deliveries of one (webhook, order key), in position order: sent one at a time.
struct WindowQueue {
    /// The deliveries not started yet.
    jobs: VecDeque<DeliveryJob>,
    /// How many it held.
    total: u64,
    /// Nothing more is sent from it (a pending delivery of this queue is in the database, or
    /// one of its attempts is due again, or outlived its wait): the rest is queued.
    closed: bool,
    /// The delivery id of its attempt on the wire.
    running: Option<String>,
    /// It was adopted only in part (see [`Worker::fan_out_once`]): what it holds is sent, and
    /// the queue stays pending behind the rest.
    rest_queued: bool,
}

/// Why a window's delivery could not start now.
enum NoStart {
    /// Its webhook has as many in flight here as
    /// [`crate::webhooks::WebhookSettings::per_webhook_concurrency`] allows.
    WebhookFull,
    /// Every slot is taken.
    NoSlot,
}

impl Worker {
    /// Sends what a window can send at once: the head of every (webhook, order key) queue that
    /// has no pending delivery in the database, then each queue's next delivery when the one
    /// before it was delivered (or failed for good), within the slots and the per-webhook
    /// limit. Stops when nothing it waits for is left: an attempt that outlives
    /// [`ATTEMPT_WAIT`] is left on the wire (and its queue closed), and a slot is waited for
    /// at most [`SLOT_WAIT`].
    pub(super) async fn send_window(
        self: &Arc<Self>,
        rows: &[WebhookEventRow],
        subscriptions: &[WebhookSubscription],
        pending: &HashSet<(String, String)>,
        adopted: Vec<AdoptedQueue>,
    ) -> Result<Window, StoreError> {
        let mut settled = SettledDeliveries::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut queues: Vec<WindowQueue> = Vec::new();
        for row in rows {
            // One body per event, shared by its deliveries and their requests.
            let body = Bytes::copy_from_slice(row.payload.as_bytes());
            for subscription in subscriptions.iter().filter(|s| s.receives(row)) {
                let queue = *index
                    .entry((subscription.id.as_str(), row.order_key.as_str()))
                    .or_insert_with(|| {
                        queues.push(WindowQueue {
                            jobs: VecDeque::new(),
                            total: 0,
                            closed: false,
                            running: None,
                            rest_queued: false,
                        });
                        queues.len() - 1
                    });
                queues[queue]
                    .jobs
                    .push_back(job_for(subscription, row, &body));
                queues[queue].total += 1;
            }
        }
        if queues.is_empty() {
            return Ok(Window {
                settled,
                left_pending: HashSet::new(),
                deliveries: 0,
                late: None,
                adopted_attempted: Vec::new(),
                adopted_unstarted: adopted
                    .into_iter()
                    .flat_map(|q| q.jobs.into_iter().map(|j| j.id))
                    .collect(),
            });
        }
        if !pending.is_empty() {
            for ((webhook, key), queue) in &index {
                if pending.contains(&(webhook.to_string(), key.to_string())) {
                    queues[*queue].closed = true;
                }
            }
        }
        // An adopted queue's pending deliveries go first; its new events follow only when all
        // of them were adopted.
        let mut adopted_ids: HashSet<String> = HashSet::new();
        let mut adopted_unstarted: Vec<String> = Vec::new();
        for queue in adopted {
            let Some(&q) = index.get(&(queue.webhook_id.as_str(), queue.order_key.as_str())) else {
                adopted_unstarted.extend(queue.jobs.into_iter().map(|j| j.id));
                continue;
            };
            adopted_ids.extend(queue.jobs.iter().map(|j| j.id.clone()));
            let fresh = std::mem::take(&mut queues[q].jobs);
            queues[q].jobs = queue.jobs.into_iter().collect();
            if queue.whole {
                queues[q].jobs.extend(fresh);
            } else {
                queues[q].rest_queued = true;
            }
            queues[q].closed = false;
        }
        let mut adopted_attempted: Vec<(String, String, AttemptRecord)> = Vec::new();
        let (finished, mut outcomes) = mpsc::unbounded_channel::<WindowAttempt>();
        let mut ready: VecDeque<usize> = (0..queues.len()).filter(|q| !queues[*q].closed).collect();
        // Queues waiting for their webhook's in-flight count to drop, by webhook id.
        let mut parked: HashMap<String, Vec<usize>> = HashMap::new();
        // Attempts waited for, oldest first (an entry whose queue moved on is stale).
        let mut awaited: VecDeque<(tokio::time::Instant, usize, String)> = VecDeque::new();
        let mut waiting_for: usize = 0;
        let mut spare: Option<OwnedSemaphorePermit> = None;
        let mut starved_since: Option<tokio::time::Instant> = None;
        // Started and without an outcome yet: delivery id -> (webhook id, position).
        let mut started: HashMap<String, (String, i64)> = HashMap::new();
        loop {
            // Start what can start.
            let mut starved = false;
            let mut progressed = false;
            while let Some(&queue) = ready.front() {
                let Some(job) = queues[queue].jobs.front() else {
                    ready.pop_front();
                    continue;
                };
                match self.take_slot(&job.webhook_id, &mut spare) {
                    Ok(slot) => {
                        ready.pop_front();
                        let Some(job) = queues[queue].jobs.pop_front() else {
                            continue;
                        };
                        queues[queue].running = Some(job.id.clone());
                        awaited.push_back((tokio::time::Instant::now(), queue, job.id.clone()));
                        started.insert(job.id.clone(), (job.webhook_id.clone(), job.position));
                        waiting_for += 1;
                        progressed = true;
                        self.attempt_in_window(queue, job, slot, finished.clone());
                    }
                    Err(NoStart::WebhookFull) => {
                        ready.pop_front();
                        parked
                            .entry(job.webhook_id.clone())
                            .or_default()
                            .push(queue);
                    }
                    Err(NoStart::NoSlot) => {
                        starved = true;
                        break;
                    }
                }
            }
            // Waiting for a slot is bounded only while none comes free: slots taken by this
            // window's own attempts free up as they end.
            if !starved || progressed {
                starved_since = None;
            }
            if starved && starved_since.is_none() {
                starved_since = Some(tokio::time::Instant::now());
            }
            if waiting_for == 0 && !starved {
                break;
            }
            let attempt_deadline = awaited.front().map(|(at, ..)| *at + ATTEMPT_WAIT);
            let slot_deadline = starved_since.map(|at| at + SLOT_WAIT);
            let deadline = match (attempt_deadline, slot_deadline) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or_else(tokio::time::Instant::now),
            };
            tokio::select! {
                Some(ended) = outcomes.recv() => {
                    started.remove(&ended.job.id);
                    let queue = ended.queue;
                    let awaited_here = queues[queue].running.as_deref() == Some(ended.job.id.as_str());
                    if awaited_here {
                        queues[queue].running = None;
                        waiting_for = waiting_for.saturating_sub(1);
                        if ended.record.status == DeliveryStatus::Pending {
                            // Due again later: its model's later events wait behind it.
                            queues[queue].closed = true;
                        } else if !queues[queue].closed {
                            ready.push_back(queue);
                        }
                    }
                    if let Some(waiting) = parked.remove(&ended.job.webhook_id) {
                        ready.extend(waiting);
                    }
                    if adopted_ids.remove(&ended.job.id) {
                        adopted_attempted.push((ended.job.id, ended.job.webhook_id, ended.record));
                    } else {
                        settled.insert(
                            (ended.job.webhook_id, ended.job.position),
                            Settled::Attempted(ended.record),
                        );
                    }
                }
                permit = self.slots.clone().acquire_owned(), if starved && spare.is_none() => {
                    spare = permit.ok();
                }
                () = tokio::time::sleep_until(deadline) => {
                    let now = tokio::time::Instant::now();
                    while let Some((at, queue, id)) = awaited.front() {
                        if queues[*queue].running.as_deref() != Some(id.as_str()) {
                            awaited.pop_front();
                            continue;
                        }
                        if *at + ATTEMPT_WAIT > now {
                            break;
                        }
                        // Left on the wire: recorded as in flight (below), its queue's rest
                        // queued behind it.
                        queues[*queue].running = None;
                        queues[*queue].closed = true;
                        waiting_for = waiting_for.saturating_sub(1);
                        awaited.pop_front();
                    }
                    if starved_since.is_some_and(|at| at + SLOT_WAIT <= now) {
                        // No slot came free: the rest waits for the lease.
                        break;
                    }
                }
            }
        }
        drop(finished);
        // Whatever was started and has no outcome yet is still on the wire.
        let lease_until_us = micros(&later(chrono::Utc::now(), self.lease_length()));
        let on_the_wire = started.len();
        for queue in &queues {
            adopted_unstarted.extend(
                queue
                    .jobs
                    .iter()
                    .filter(|job| adopted_ids.contains(&job.id))
                    .map(|job| job.id.clone()),
            );
        }
        // An adopted delivery on the wire is already leased here in the database.
        for (id, (webhook_id, position)) in started {
            if adopted_ids.contains(&id) {
                continue;
            }
            settled.insert(
                (webhook_id, position),
                Settled::InFlight {
                    owner: self.owner.clone(),
                    lease_until_us,
                },
            );
        }
        let left_pending = index
            .iter()
            .filter(|(_, queue)| {
                let queue = &queues[**queue];
                queue.closed || queue.rest_queued || !queue.jobs.is_empty()
            })
            .map(|((webhook, key), _)| (webhook.to_string(), key.to_string()))
            .collect();
        Ok(Window {
            settled,
            left_pending,
            deliveries: queues.iter().map(|q| q.total).sum(),
            late: (on_the_wire > 0).then_some(outcomes),
            adopted_attempted,
            adopted_unstarted,
        })
    }

    /// A slot for a window's delivery to `webhook_id` (the one waited for, if any), counted in
    /// `in_flight` until the attempt ends.
    fn take_slot(
        &self,
        webhook_id: &str,
        spare: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<OwnedSemaphorePermit, NoStart> {
        let mut in_flight = self.in_flight.lock().map_err(|_| NoStart::NoSlot)?;
        if in_flight.get(webhook_id).copied().unwrap_or(0)
            >= self.settings.per_webhook_concurrency.max(1)
        {
            return Err(NoStart::WebhookFull);
        }
        let slot = match spare.take() {
            Some(slot) => slot,
            None => self
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| NoStart::NoSlot)?,
        };
        *in_flight.entry(webhook_id.to_string()).or_default() += 1;
        Ok(slot)
    }

    /// Sends a window's delivery in a task of its own. Its slot and in-flight count are freed
    /// as soon as the attempt ends (the window, not the database, keeps the queue's order).
    fn attempt_in_window(
        self: &Arc<Self>,
        queue: usize,
        job: DeliveryJob,
        slot: OwnedSemaphorePermit,
        finished: mpsc::UnboundedSender<WindowAttempt>,
    ) {
        let worker = self.clone();
        tokio::spawn(async move {
            let record = worker.attempt(&job).await;
            metrics::counter!("model_ledger_webhook_attempts_total", "outcome" => record.status.as_str())
                .increment(1);
            worker.attempt_ended(&job.webhook_id);
            drop(slot);
            // Fails only when the window was given up (its transaction failed); the events
            // are then fanned out again.
            let _ = finished.send(WindowAttempt { queue, job, record });
        });
    }

    /// Hands the outcomes of a recorded window's attempts that were still on the wire to the
    /// recorder as they arrive: their rows are pending, leased here, until then.
    pub(super) fn record_late(&self, mut late: mpsc::UnboundedReceiver<WindowAttempt>) {
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            while let Some(ended) = late.recv().await {
                let _ = outcomes.send(Finished {
                    delivery_id: ended.job.id,
                    webhook_id: ended.job.webhook_id,
                    record: ended.record,
                    slot: None,
                });
            }
        });
    }
}

/// A window's delivery of `event` to `subscription`, as it is sent.
fn job_for(
    subscription: &WebhookSubscription,
    event: &WebhookEventRow,
    body: &Bytes,
) -> DeliveryJob {
    DeliveryJob {
        id: event_delivery_id(&subscription.id, event.position),
        webhook_id: subscription.id.clone(),
        position: event.position,
        event_name: event.event_name.clone(),
        payload: body.clone(),
        attempts: 0,
        first_attempt_at_us: None,
        url: subscription.url.clone(),
        secret_sealed: subscription.secret_sealed.clone(),
        previous_secret_sealed: subscription.previous_secret_sealed.clone(),
        previous_secret_until_us: subscription.previous_secret_until_us,
        webhook_status: Some(WebhookStatus::Active),
    }
}
