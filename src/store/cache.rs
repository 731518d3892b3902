//! A read cache for the hottest reads (`resolve`, `get_version`), emptied on every commit.
//!
//! Model servers resolve `models:/name/Production` far more often than anyone writes, so these
//! answers are kept until the next commit anywhere in the registry. Commits by this process
//! empty it before the writer gets its response (read-your-writes); commits by other processes
//! sharing a PostgreSQL database empty it when their NOTIFY arrives, and while the LISTEN
//! connection is down the cache is bypassed, so staleness is bounded by NOTIFY latency.
//!
//! A generation counter closes the race between a reader that fetched before a commit and the
//! invalidation that commit caused: an answer is stored only if no commit happened since the
//! reader started.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::views::VersionView;

/// Bound on cached answers; the cache is emptied when full.
const CAPACITY: usize = 50_000;

pub struct ReadCache {
    generation: AtomicU64,
    enabled: AtomicBool,
    answers: Mutex<HashMap<String, Option<VersionView>>>,
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        ReadCache {
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// The generation to pass to [`ReadCache::put`] after reading from the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Option<Option<VersionView>> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        self.answers.lock().ok()?.get(key).cloned()
    }

    pub fn put(&self, generation: u64, key: String, value: Option<VersionView>) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut answers) = self.answers.lock() {
            // Checked under the lock that `invalidate` takes, so no stale answer slips in.
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if answers.len() >= CAPACITY {
                answers.clear();
            }
            answers.insert(key, value);
        }
    }

    /// Forgets every answer: called on each commit.
    pub fn invalidate(&self) {
        if let Ok(mut answers) = self.answers.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            answers.clear();
        } else {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Turns caching on or off (off while cross-process invalidations cannot be received).
    pub fn set_enabled(&self, enabled: bool) {
        self.invalidate();
        self.enabled.store(enabled, Ordering::Release);
        self.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_read_before_a_commit_is_not_stored_after_it() {
        let cache = ReadCache::new(true);
        let before = cache.generation();
        cache.invalidate();
        cache.put(before, "k".into(), None);
        assert!(cache.get("k").is_none());
        let now = cache.generation();
        cache.put(now, "k".into(), None);
        assert_eq!(cache.get("k"), Some(None));
        cache.invalidate();
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn a_disabled_cache_answers_nothing() {
        let cache = ReadCache::new(false);
        cache.put(cache.generation(), "k".into(), None);
        assert!(cache.get("k").is_none());
    }
}
