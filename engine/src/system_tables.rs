//! The `system` schema: the engine's own state as tables. `system.cache` has one row per
//! cache tier:
//!
//! ```sql
//! SELECT tier, entries, bytes, hits, misses FROM system.cache;
//! ```
//!
//! - `tile.memory`, `tile.redis`: the hot-tile cache ([`crate::tiles`]),
//! - `bytes.memory`, `bytes.disk`: the byte cache of data files under the object store
//!   ([`quantatom_table_providers::storage::CachedStore`]; counters count blocks),
//! - `datafusion.file_metadata`, `datafusion.file_statistics`, `datafusion.list_files`:
//!   DataFusion's own caches of Parquet footers, file statistics and listings (their sizes
//!   are set in the engine's configuration; they count hits per entry, not misses).
//!
//! A counter a tier does not keep is NULL.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::cache::cache_manager::CacheManager;
use datafusion::execution::cache::{Cache, CacheKey, CacheValue};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use quantatom_table_providers::cache_counters::CacheCounters;
use quantatom_table_providers::storage::ByteCache;

use crate::tiles::TileCache;

/// `system.cache`: one row per cache tier with its size and counters.
#[derive(Debug)]
pub struct CacheTable {
    tiles: Arc<TileCache>,
    bytes: Option<Arc<ByteCache>>,
}

impl CacheTable {
    /// The table over `tiles`, the byte cache (if any) and the session's DataFusion caches.
    pub fn new(tiles: Arc<TileCache>, bytes: Option<Arc<ByteCache>>) -> Self {
        Self { tiles, bytes }
    }

    fn rows(&self, caches: &CacheManager) -> Vec<TierRow> {
        let mut rows: Vec<TierRow> = self
            .tiles
            .tiers()
            .into_iter()
            .map(|tier| {
                TierRow::of(
                    tier.name,
                    tier.entries,
                    tier.bytes,
                    tier.capacity_bytes,
                    tier.counters,
                )
            })
            .collect();
        if let Some(bytes) = &self.bytes {
            rows.push(TierRow::of(
                "bytes.memory",
                None,
                Some(bytes.memory_bytes()),
                Some(bytes.memory_capacity()),
                bytes.memory_counters(),
            ));
            if let Some(disk) = bytes.disk_counters() {
                rows.push(TierRow::of(
                    "bytes.disk",
                    None,
                    None,
                    bytes.disk_capacity(),
                    disk,
                ));
            }
        }
        rows.push(datafusion_row(
            "datafusion.file_metadata",
            caches.get_file_metadata_cache().as_ref(),
        ));
        if let Some(statistics) = caches.get_file_statistic_cache() {
            rows.push(datafusion_row(
                "datafusion.file_statistics",
                statistics.as_ref(),
            ));
        }
        if let Some(listings) = caches.get_list_files_cache() {
            rows.push(datafusion_row("datafusion.list_files", listings.as_ref()));
        }
        rows
    }
}

/// One row of `system.cache`.
struct TierRow {
    tier: &'static str,
    entries: Option<u64>,
    bytes: Option<u64>,
    capacity_bytes: Option<u64>,
    hits: Option<u64>,
    misses: Option<u64>,
    inserts: Option<u64>,
    evictions: Option<u64>,
    errors: Option<u64>,
}

impl TierRow {
    /// The row of a tier with `counters`.
    fn of(
        tier: &'static str,
        entries: Option<u64>,
        bytes: Option<u64>,
        capacity_bytes: Option<u64>,
        counters: &CacheCounters,
    ) -> Self {
        Self {
            tier,
            entries,
            bytes,
            capacity_bytes,
            hits: Some(counters.hits()),
            misses: Some(counters.misses()),
            inserts: Some(counters.inserts()),
            evictions: Some(counters.evictions()),
            errors: Some(counters.errors()),
        }
    }
}

/// The row of one of DataFusion's caches: entries, bytes and hits summed over its entries.
fn datafusion_row<K: CacheKey, V: CacheValue>(
    tier: &'static str,
    cache: &(dyn Cache<K, V> + 'static),
) -> TierRow {
    let entries = cache.list_entries();
    TierRow {
        tier,
        entries: Some(entries.len() as u64),
        bytes: Some(entries.values().map(|entry| entry.size_bytes as u64).sum()),
        capacity_bytes: Some(cache.cache_limit() as u64),
        hits: Some(entries.values().map(|entry| entry.hits as u64).sum()),
        misses: None,
        inserts: None,
        evictions: None,
        errors: None,
    }
}

fn cache_schema() -> SchemaRef {
    let counter = |name| Field::new(name, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new("tier", DataType::Utf8, false),
        counter("entries"),
        counter("bytes"),
        counter("capacity_bytes"),
        counter("hits"),
        counter("misses"),
        counter("inserts"),
        counter("evictions"),
        counter("errors"),
    ]))
}

#[async_trait]
impl TableProvider for CacheTable {
    fn schema(&self) -> SchemaRef {
        cache_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows(&state.runtime_env().cache_manager);
        let counter = |value: fn(&TierRow) -> Option<u64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|row| value(row).map(|v| v as i64)),
            ))
        };
        let batch = RecordBatch::try_new(
            cache_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|row| row.tier),
                )),
                counter(|row| row.entries),
                counter(|row| row.bytes),
                counter(|row| row.capacity_bytes),
                counter(|row| row.hits),
                counter(|row| row.misses),
                counter(|row| row.inserts),
                counter(|row| row.evictions),
                counter(|row| row.errors),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            cache_schema(),
            projection.cloned(),
        )?)
    }
}
