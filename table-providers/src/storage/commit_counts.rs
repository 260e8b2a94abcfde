//! What happened to commits to the logs (the cubes' and the ledger's) since start-up: what the
//! admin listener's `/metrics` shows as commits, conflicts and ledger appends.

use std::sync::atomic::{AtomicU64, Ordering};

/// One thing that happens to a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitEvent {
    /// A cube's change took its version.
    Committed,
    /// Another writer took the version first; the commit re-read the log and tried again.
    LostRace,
    /// The commit failed with a serialization error (40001): something committed since the
    /// change read the cube conflicts with it, or the races were lost too often.
    Conflict,
    /// A commit to the ledger, of the entries it appended.
    LedgerAppend {
        /// How many entries (cell and formula changes) it appended.
        entries: u64,
    },
}

/// Counts of [`CommitEvent`]s.
#[derive(Debug, Default)]
pub struct CommitCounters {
    committed: AtomicU64,
    lost_races: AtomicU64,
    conflicts: AtomicU64,
    ledger_commits: AtomicU64,
    ledger_entries: AtomicU64,
}

/// What [`CommitCounters`] read at a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Cube changes committed.
    pub committed: u64,
    /// Version races lost (each retried).
    pub lost_races: u64,
    /// Commits refused with a serialization error.
    pub conflicts: u64,
    /// Commits to the ledger.
    pub ledger_commits: u64,
    /// Entries appended to the ledger.
    pub ledger_entries: u64,
}

impl CommitCounters {
    /// Counts `event`.
    pub fn count(&self, event: CommitEvent) {
        let counter = match event {
            CommitEvent::Committed => &self.committed,
            CommitEvent::LostRace => &self.lost_races,
            CommitEvent::Conflict => &self.conflicts,
            CommitEvent::LedgerAppend { entries } => {
                self.ledger_entries.fetch_add(entries, Ordering::Relaxed);
                &self.ledger_commits
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> CommitCounts {
        CommitCounts {
            committed: self.committed.load(Ordering::Relaxed),
            lost_races: self.lost_races.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            ledger_commits: self.ledger_commits.load(Ordering::Relaxed),
            ledger_entries: self.ledger_entries.load(Ordering::Relaxed),
        }
    }
}
