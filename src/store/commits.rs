//! The commit clock: a counter that advances whenever the registry may have changed.
//!
//! A cache of read answers above the store (the service keeps one for `resolve` and
//! `get_version`) must never serve an answer older than a commit its reader could know about.
//! Rather than have the store empty that cache, the store only keeps time: [`CommitClock`]
//! advances before a local append returns to its writer (read-your-writes), when another
//! process's commit is announced (PostgreSQL NOTIFY), and when the LISTEN connection is
//! (re)established, since announcements may have been missed while it was down. A cache stores
//! an answer together with the generation read *before* the query, and trusts it only while the
//! generation is unchanged.
//!
//! [`CommitClock::reliable`] says whether every commit reaches the clock at all: always for
//! SQLite (one process writes a database file), for PostgreSQL only while LISTEN is up. While
//! it is false, a cache should not answer from memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug)]
pub struct CommitClock {
    generation: AtomicU64,
    reliable: AtomicBool,
}

impl CommitClock {
    pub fn new(reliable: bool) -> Self {
        CommitClock {
            generation: AtomicU64::new(0),
            reliable: AtomicBool::new(reliable),
        }
    }

    /// The number of commits (and announcement gaps) seen so far. Read it before querying;
    /// an answer is current while the generation still equals what was read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether every commit, in any process, advances this clock right now.
    pub fn reliable(&self) -> bool {
        self.reliable.load(Ordering::Acquire)
    }

    /// A commit happened (here, or announced from elsewhere).
    pub(crate) fn advance(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Announcements started or stopped arriving. Either way answers read before may have
    /// missed a commit, so the clock advances too.
    pub(crate) fn set_reliable(&self, reliable: bool) {
        self.advance();
        self.reliable.store(reliable, Ordering::Release);
        self.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_advances_the_generation() {
        let clock = CommitClock::new(true);
        let before = clock.generation();
        clock.advance();
        assert!(clock.generation() > before);
    }

    #[test]
    fn losing_or_regaining_announcements_advances_the_generation() {
        let clock = CommitClock::new(false);
        assert!(!clock.reliable());
        let before = clock.generation();
        clock.set_reliable(true);
        assert!(clock.reliable());
        let reconnected = clock.generation();
        assert!(reconnected > before);
        clock.set_reliable(false);
        assert!(!clock.reliable());
        assert!(clock.generation() > reconnected);
    }
}
