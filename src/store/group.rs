//! Group commit: concurrent commands share one append transaction.
//!
//! Every append holds the single chain-head lock from the moment it takes it until its COMMIT
//! has returned (that is what makes positions gapless and commit-ordered). With one transaction
//! per command, the lock is taken and released once per command, each time paying a few round
//! trips and a WAL flush with every other writer queued behind it, so write throughput stops at
//! one command per lock hold however many clients there are.
//!
//! Here commands are queued instead, and a few appender tasks each take whatever has queued up
//! (at most [`GroupCommitter::max_group`]) and append it with [`EventLog::append_group`](super::EventLog::append_group): one
//! transaction, one lock hold, one flush for the whole group. Each command is still atomic and
//! gets its own outcome, exactly as if appended alone. Under light load a group is a single
//! command and nothing waits; under heavy load groups grow by themselves, because commands pile
//! up while the previous group commits.
//!
//! A command whose caller goes away while it is queued is still appended: it was decided and
//! authorized, and a half-known outcome is worse than a completed one (an `Idempotency-Key`
//! retry then finds it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{AppendBatch, Backend, SharedStore, StoreError};
use crate::domain::events::EventEnvelope;

type Outcome = Result<Vec<EventEnvelope>, StoreError>;

struct Queued {
    batch: AppendBatch,
    reply: oneshot::Sender<Outcome>,
}

/// The write queue in front of a store. Cheap to share; appender tasks start on first use, so
/// it can be built outside a runtime.
pub struct GroupCommitter {
    store: SharedStore,
    appenders: usize,
    max_group: usize,
    queue: OnceLock<mpsc::Sender<Queued>>,
    largest_group: Arc<AtomicUsize>,
}

impl GroupCommitter {
    /// Appender tasks and group size suited to the backend. PostgreSQL: four appenders, so one
    /// group writes its model rows while another holds the head lock and commits. SQLite has a
    /// single writer, so one appender; more would only queue on its write lock.
    pub fn for_store(store: SharedStore) -> Self {
        let appenders = match store.backend() {
            Backend::Postgres => 4,
            Backend::Sqlite => 1,
        };
        Self::new(store, appenders, 32)
    }

    /// `max_group` stays at or below 64 commands: each is a few statements in one transaction,
    /// and a longer transaction holds its model rows longer.
    pub fn new(store: SharedStore, appenders: usize, max_group: usize) -> Self {
        GroupCommitter {
            store,
            appenders: appenders.max(1),
            max_group: max_group.clamp(1, 64),
            queue: OnceLock::new(),
            largest_group: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn max_group(&self) -> usize {
        self.max_group
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The most commands one transaction has carried so far.
    pub fn largest_group(&self) -> usize {
        self.largest_group.load(Ordering::Relaxed)
    }

    /// Appends one command's batch, possibly together with others; returns its own outcome.
    pub async fn append(&self, batch: AppendBatch) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.queue()
            .send(Queued { batch, reply })
            .await
            .map_err(|_| StoreError::Corrupt("the append queue is closed".into()))?;
        answer.await.map_err(|_| {
            StoreError::Corrupt("the appender stopped before answering (see the server log)".into())
        })?
    }

    fn queue(&self) -> &mpsc::Sender<Queued> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(self.max_group * self.appenders * 4);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..self.appenders {
                tokio::spawn(run_appender(
                    self.store.clone(),
                    receiver.clone(),
                    self.max_group,
                    self.largest_group.clone(),
                ));
            }
            sender
        })
    }
}

/// Takes the next group off the queue and appends it, until the queue closes.
async fn run_appender(
    store: SharedStore,
    queue: Arc<Mutex<mpsc::Receiver<Queued>>>,
    max_group: usize,
    largest_group: Arc<AtomicUsize>,
) {
    loop {
        let group = {
            // One appender gathers at a time; it waits for the first command, then takes what
            // else is already queued without waiting for more.
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < max_group {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|q| (q.batch, q.reply)).unzip();
        let size = batches.len();
        largest_group.fetch_max(size, Ordering::Relaxed);
        metrics::histogram!("model_ledger_append_group_size").record(size as f64);
        // In its own task so a panic fails this group's callers, not the appender.
        let store = store.clone();
        let outcomes = tokio::spawn(async move { store.append_group(batches).await }).await;
        match outcomes {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that went away no longer needs the answer.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size, "an append group failed unexpectedly");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt(format!(
                        "the append failed unexpectedly: {e}"
                    ))));
                }
            }
        }
    }
}
