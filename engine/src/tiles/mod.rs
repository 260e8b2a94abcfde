//! The hot-tile cache: the results of queries over cubes and dimensions, kept so that the grids
//! planners keep open all day are answered without reading a cell.
//!
//! A tile is the whole result of one query, stored under a [`TileKey`] made of
//!
//! - the query's optimised logical plan, printed with its schema (so `select` and `SELECT`,
//!   or two spellings the optimiser makes equal, share a tile),
//! - the version of every table it reads: each cube's latest committed snapshot and each
//!   dimension's member version, read *before* the query is planned,
//! - the caller's access scope: the fingerprint of what its grants reach (docs/security.md),
//! - the session settings a result depends on (the time zone).
//!
//! A commit changes a version, so a tile made before it is never looked up again: the cache
//! is never stale by construction, and needs no invalidation. Because the versions are read
//! before the scans are planned, a scan may read a newer version than its key says, never an
//! older one: a tile holds data at least as new as its key.
//!
//! Only queries whose answer depends on nothing but those tables are cached: plain queries
//! (no DML, DDL, recursion or extension nodes) of immutable functions (`now()` or `random()`
//! are not), that read at least one table and only versioned tables (cubes, dimensions and
//! the calendar's tables; not `audit.*`, `pg_catalog`, other table functions or in-memory
//! tables), outside a transaction
//! block that has staged writes. The first half is decided before the optimiser folds
//! `now()` into a literal ([`TileCandidate`]), the rest when the query is planned.
//!
//! Tiers: memory in this process first ([`moka`], bounded by bytes, entries expire after a
//! TTL), then, when configured, a Redis-compatible store shared by every replica
//! ([`shared::SharedTier`]: DragonflyDB in production), where tiles are Arrow IPC streams
//! that expire after the same TTL. A Redis that is down or slow costs a warning and a counted
//! error, never a failed query: lookups and stores give up after a timeout and the query is
//! answered from the cold path.
//!
//! [`TilePlanner`] puts the cache in front of DataFusion's physical planner; [`TileExec`] is
//! the operator that serves a tile or records one; `system.cache` shows the counters.

mod candidate;
mod exec;
mod hot;
mod key;
mod planner;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use quantatom_table_providers::cache_counters::CacheCounters;
use tracing::Instrument;

pub use candidate::{MarkTileCandidates, PlanTileCandidates, TileCandidate, optimize};
pub use exec::TileExec;
pub use hot::{HOT_FOR, HOT_QUERIES, HotTiles};
pub use key::TileKey;
pub use planner::TilePlanner;
pub use shared::SharedTier;

/// How the tile cache is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileCacheConfig {
    /// Bytes of tiles kept in this process; 0 keeps none here.
    pub memory_bytes: u64,
    /// The largest result kept as a tile; larger results are not cached.
    pub max_tile_bytes: u64,
    /// How long a tile is kept after it is stored, in memory and in Redis.
    pub ttl: Duration,
    /// The Redis-compatible store shared by replicas, if any.
    pub redis: Option<RedisSettings>,
    /// How often hot tiles are recomputed after their tables change ([`HotTiles`]); `None`
    /// never.
    pub refresh_interval: Option<Duration>,
}

impl Default for TileCacheConfig {
    /// 256 MiB in memory, tiles up to 16 MiB, kept for an hour, no Redis, hot tiles
    /// refreshed every second.
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            max_tile_bytes: 16 << 20,
            ttl: Duration::from_secs(3600),
            redis: None,
            refresh_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// Where the shared tier is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS).
    pub url: String,
    /// How long one lookup or store may take before the query goes on without it.
    pub timeout: Duration,
}

/// A cached result: the batches of one query, in order.
#[derive(Debug)]
pub struct Tile {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl Tile {
    /// A tile of `batches` (in `schema`).
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        Self {
            schema,
            batches,
            bytes,
        }
    }

    /// The rows' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The memory the rows take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileSource {
    /// This process's memory.
    Memory,
    /// The shared Redis-compatible store.
    Shared,
}

/// The tile cache: its tiers and counters. One per engine, shared by every session.
#[derive(Debug)]
pub struct TileCache {
    config: TileCacheConfig,
    memory: Option<moka::sync::Cache<TileKey, Arc<Tile>>>,
    memory_counters: Arc<CacheCounters>,
    shared: Option<SharedTier>,
    hot: HotTiles,
}

impl TileCache {
    /// A cache as `config` says; the shared tier connects on first use.
    pub fn new(config: TileCacheConfig) -> datafusion::common::Result<Self> {
        let memory_counters = Arc::new(CacheCounters::default());
        let memory = (config.memory_bytes > 0).then(|| {
            let evictions = Arc::clone(&memory_counters);
            moka::sync::Cache::builder()
                .max_capacity(config.memory_bytes)
                .weigher(|_key: &TileKey, tile: &Arc<Tile>| {
                    u32::try_from(tile.bytes()).unwrap_or(u32::MAX)
                })
                .time_to_live(config.ttl)
                .eviction_listener(move |_key, _tile, cause| {
                    if cause.was_evicted() {
                        evictions.evict();
                    }
                })
                .build()
        });
        let shared = config
            .redis
            .as_ref()
            .map(|redis| SharedTier::new(redis, config.ttl))
            .transpose()?;
        Ok(Self {
            config,
            memory,
            memory_counters,
            shared,
            hot: HotTiles::default(),
        })
    }

    /// Whether any tier is on.
    pub fn enabled(&self) -> bool {
        self.memory.is_some() || self.shared.is_some()
    }

    /// The shared Redis-compatible tier, when one is configured.
    pub fn shared_tier(&self) -> Option<&SharedTier> {
        self.shared.as_ref()
    }

    /// The queries whose tiles are kept fresh.
    pub fn hot_tiles(&self) -> &HotTiles {
        &self.hot
    }

    /// The tile stored under `key`, from the first tier that has it (a tile found in the
    /// shared tier is kept in memory too). Its query becomes hot.
    pub async fn get(&self, key: &TileKey) -> Option<(Arc<Tile>, TileSource)> {
        let span = tracing::info_span!("cache", found = tracing::field::Empty);
        let found = self.find(key).instrument(span.clone()).await;
        let source = match &found {
            Some((_, TileSource::Memory)) => "memory",
            Some((_, TileSource::Shared)) => "shared",
            None => "miss",
        };
        span.record("found", source);
        if found.is_some() {
            self.hot.served(key);
        }
        found
    }

    async fn find(&self, key: &TileKey) -> Option<(Arc<Tile>, TileSource)> {
        if let Some(memory) = &self.memory {
            if let Some(tile) = memory.get(key) {
                self.memory_counters.hit();
                return Some((tile, TileSource::Memory));
            }
            self.memory_counters.miss();
        }
        let tile = Arc::new(self.shared.as_ref()?.get(key).await?);
        if let Some(memory) = &self.memory {
            memory.insert(key.clone(), Arc::clone(&tile));
        }
        Some((tile, TileSource::Shared))
    }

    /// Whether this process holds the tile stored under `key` (for `EXPLAIN`).
    pub fn holds(&self, key: &TileKey) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|memory| memory.contains_key(key))
    }

    /// Stores `tile` under `key` in every tier; the shared tier is written in the background.
    pub fn put(&self, key: TileKey, tile: Tile) {
        if tile.bytes() as u64 > self.config.max_tile_bytes {
            return;
        }
        let tile = Arc::new(tile);
        if let Some(shared) = &self.shared {
            shared.put_in_background(key.clone(), Arc::clone(&tile));
        }
        if let Some(memory) = &self.memory {
            memory.insert(key, tile);
            self.memory_counters.insert();
        }
    }

    /// The largest result kept as a tile.
    pub fn max_tile_bytes(&self) -> u64 {
        self.config.max_tile_bytes
    }

    /// The counters of every tier, for `system.cache`.
    pub fn tiers(&self) -> Vec<TierReport<'_>> {
        let mut tiers = Vec::new();
        if let Some(memory) = &self.memory {
            memory.run_pending_tasks();
            tiers.push(TierReport {
                name: "tile.memory",
                entries: Some(memory.entry_count()),
                bytes: Some(memory.weighted_size()),
                capacity_bytes: Some(self.config.memory_bytes),
                counters: &self.memory_counters,
            });
        }
        if let Some(shared) = &self.shared {
            tiers.push(TierReport {
                name: "tile.redis",
                entries: None,
                bytes: None,
                capacity_bytes: None,
                counters: shared.counters(),
            });
        }
        tiers
    }
}

/// One tier's state, as `system.cache` shows it.
#[derive(Debug)]
pub struct TierReport<'a> {
    /// The tier's name (`tile.memory`, `tile.redis`).
    pub name: &'static str,
    /// Tiles held, when this process can tell.
    pub entries: Option<u64>,
    /// Bytes held, when this process can tell.
    pub bytes: Option<u64>,
    /// Bytes the tier may hold, when bounded here.
    pub capacity_bytes: Option<u64>,
    /// Its counters.
    pub counters: &'a CacheCounters,
}
