//! What the write path keeps per model between two commands: whose turn it is, and the state
//! the last command left.
//!
//! Both exist because a model is the unit of consistency. A command is decided against one
//! model's state and appended only if the model's stream is still at that state's version, so
//! two commands for one model in one process would race each other for the same version;
//! [`ModelQueues`] lets them take turns instead. And since the command that just ran already
//! holds the model's next state, [`StateCache`] keeps it for the next one, which then skips
//! loading the model from the store. Neither is needed for correctness across processes: the
//! append's optimistic check is what refuses a command decided on a stale state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::state::ModelState;

/// One queue per model name (see the module docs of [`commands`](super::commands)). An entry lives while some command holds or
/// waits for it, so the map holds only models being written to right now.
#[derive(Default)]
pub struct ModelQueues {
    queues: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A model's turn: while it is held, no other command for the model runs in this process.
pub struct Turn<'a> {
    queues: &'a ModelQueues,
    name: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ModelQueues {
    pub async fn wait_turn(&self, name: &str) -> Turn<'_> {
        let queue = match self.queues.lock() {
            Ok(mut queues) => queues.entry(name.to_string()).or_default().clone(),
            // A poisoned map only loses the ordering; the optimistic check still holds.
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        Turn {
            queues: self,
            name: name.to_string(),
            guard: Some(queue.lock_owned().await),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        if let Ok(mut queues) = self.queues.queues.lock()
            && let Some(queue) = queues.get(&self.name)
            // Only the map holds it: nobody is waiting, so the entry can go.
            && Arc::strong_count(queue) == 1
        {
            queues.remove(&self.name);
        }
    }
}

/// See [`Service::states`](super::Service::states).
///
/// Each model has a slot in a `moka` cache weighed by the model's version count, so the bound
/// is on memory (a version's state is about a kilobyte), not on a number of models whose size
/// can differ a thousandfold. The slot, not the cache, owns the state: taking it out leaves the
/// slot empty, so the command can fold it without a copy (moka hands out clones of what it
/// stores, which for a bare state would copy every version).
///
/// A cached state is used without asking the store whether it is still current: the append's
/// optimistic check (the stream must still be at the state's version) refuses a command decided
/// on a state another process has since moved, and the retry then loads from the store. That
/// saves a database round trip on every write to a model this process wrote last.
pub struct StateCache {
    slots: moka::sync::Cache<String, Arc<Mutex<Option<Cached>>>>,
}

/// A model's state as this process's last append left it, with the version its stored
/// snapshot is at (which decides when the next snapshot is due).
struct Cached {
    state: Arc<ModelState>,
    snapshot_version: i64,
}

impl Default for StateCache {
    fn default() -> Self {
        StateCache {
            slots: moka::sync::Cache::builder()
                .max_capacity(Self::MAX_VERSIONS)
                .weigher(|_, slot: &Arc<Mutex<Option<Cached>>>| {
                    let versions = slot
                        .lock()
                        .ok()
                        .and_then(|s| s.as_ref().map(|c| c.state.versions.len()))
                        .unwrap_or(0);
                    u32::try_from(versions + 1).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

impl StateCache {
    /// Bound on the versions held across all cached models: a few hundred MiB at worst,
    /// while covering the models being written to.
    const MAX_VERSIONS: u64 = 300_000;

    /// Takes the entry out: the command about to run folds it into its next state (which is
    /// put back after the append), so a large model is not copied when nothing else holds it.
    /// A concurrent command on the same model finds no entry and loads from the store.
    pub(super) fn take(&self, name: &str) -> Option<(ModelState, i64)> {
        let slot = self.slots.get(name)?;
        let cached = slot.lock().ok()?.take()?;
        let state =
            Arc::try_unwrap(cached.state).unwrap_or_else(|shared| ModelState::clone(&shared));
        Some((state, cached.snapshot_version))
    }

    pub(super) fn put(&self, state: Arc<ModelState>, snapshot_version: i64) {
        if state.deleted {
            self.slots.invalidate(state.name.as_str());
            return;
        }
        self.slots.insert(
            state.name.to_string(),
            Arc::new(Mutex::new(Some(Cached {
                state,
                snapshot_version,
            }))),
        );
    }
}
