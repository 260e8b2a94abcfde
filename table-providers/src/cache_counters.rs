//! [`CacheCounters`]: what every cache tier counts, as `system.cache` shows it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one cache tier.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    errors: AtomicU64,
}

impl CacheCounters {
    /// Counts a lookup answered.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup not answered.
    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an entry stored.
    pub fn insert(&self) {
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an entry dropped for room or age.
    pub fn evict(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call that failed or timed out.
    pub fn fail(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Lookups answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups not answered.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Entries stored.
    pub fn inserts(&self) -> u64 {
        self.inserts.load(Ordering::Relaxed)
    }

    /// Entries dropped for room or age.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Calls that failed or timed out (the query went on without the tier).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}
