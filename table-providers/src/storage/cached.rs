//! The byte cache: the bytes of data files, kept in blocks in memory and optionally on local
//! disk, under every reader.
//!
//! Data files (`*.parquet`: cube cells, ledger rows) are immutable: once written under a name,
//! that name never holds other bytes. So the bytes read from one can be kept without ever being
//! invalidated; a file vacuum removes is simply never asked for again and ages out.
//!
//! [`CachedStore`] sits above [`super::ObservedStore`], so what it answers from memory is not
//! counted as a call to the store. A range read of a data file is served from fixed-size
//! blocks (`block_bytes`, 128 KiB by default) held in [`foyer`]'s hybrid cache: memory bounded by
//! bytes, then, when configured, a folder on local disk bounded by bytes, whose blocks survive
//! a restart. The blocks a read lacks are fetched, contiguous ones in one request, and kept. A file this process
//! writes is kept as it is written (write-through), so the first read after a commit is warm.
//! Any other call (listings, log entries, whole-object reads, conditional reads) goes to the
//! store as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, RecoverMode, Source,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, Result,
};

use crate::cache_counters::CacheCounters;

/// How the byte cache is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteCacheConfig {
    /// Bytes of data files kept in memory; 0 turns the cache off.
    pub memory_bytes: u64,
    /// The size of the blocks files are read and kept in.
    pub block_bytes: u64,
    /// A local-disk tier under the memory, if any.
    pub disk: Option<DiskTierConfig>,
}

impl Default for ByteCacheConfig {
    /// 512 MiB in memory in blocks of 128 KiB (a point query's first read from a cold disk
    /// fetched 1 MiB around each of its pages with blocks of 1 MiB); no disk tier.
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            block_bytes: 1 << 17,
            disk: None,
        }
    }
}

/// Where the byte cache's disk tier is and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTierConfig {
    /// A folder of its own (created if missing); what it holds survives a restart.
    pub dir: PathBuf,
    /// Bytes it may hold.
    pub bytes: u64,
}

/// A block's key: the file and the block's place in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    file: String,
    index: u64,
}

impl BlockKey {
    fn new(location: &Path, index: u64) -> Self {
        Self {
            file: location.to_string(),
            index,
        }
    }
}

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        self.file.encode(writer)?;
        self.index.encode(writer)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        Ok(Self {
            file: String::decode(reader)?,
            index: u64::decode(reader)?,
        })
    }

    fn estimated_size(&self) -> usize {
        self.file.estimated_size() + self.index.estimated_size()
    }
}

/// Counts the blocks the memory tier evicts.
struct CountEvictions(Arc<CacheCounters>);

impl EventListener for CountEvictions {
    type Key = BlockKey;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, _key: &BlockKey, _block: &Bytes) {
        if reason == Event::Evict {
            self.0.evict();
        }
    }
}

/// The blocks kept, in memory and (when configured) on local disk ([`foyer`]'s hybrid cache),
/// and their counters.
pub struct ByteCache {
    config: ByteCacheConfig,
    blocks: HybridCache<BlockKey, Bytes>,
    metas: moka::sync::Cache<Path, ObjectMeta>,
    memory_counters: Arc<CacheCounters>,
    disk_counters: CacheCounters,
}

impl fmt::Debug for ByteCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How many files' metadata (size, tag) are kept, a few hundred bytes each.
const FILES_KNOWN: u64 = 100_000;

/// The most bytes a file is taken to have when its size is not known.
const MOST_FILE_BYTES: u64 = 4 << 30;

impl ByteCache {
    /// A cache as `config` says; a disk tier recovers the blocks it held before.
    pub async fn open(config: ByteCacheConfig) -> Result<Self, String> {
        let memory_counters = Arc::new(CacheCounters::default());
        let builder = HybridCacheBuilder::new()
            .with_name("quantatom-bytes")
            .with_event_listener(Arc::new(CountEvictions(Arc::clone(&memory_counters))))
            // Blocks go to disk as they are kept, not only when memory evicts them, so that
            // the disk holds what was read when the process stops.
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(config.memory_bytes as usize)
            .with_weighter(|key: &BlockKey, block: &Bytes| key.file.len() + block.len())
            .storage();
        let builder = match &config.disk {
            None => builder,
            Some(disk) => {
                std::fs::create_dir_all(&disk.dir).map_err(|e| {
                    format!(
                        "cannot create the byte cache's folder {}: {e}",
                        disk.dir.display()
                    )
                })?;
                let device = FsDeviceBuilder::new(&disk.dir)
                    .with_capacity(disk.bytes as usize)
                    .build()
                    .map_err(|e| format!("the byte cache's folder {}: {e}", disk.dir.display()))?;
                builder
                    .with_engine_config(BlockEngineConfig::new(device))
                    .with_recover_mode(RecoverMode::Quiet)
            }
        };
        let blocks = builder
            .build()
            .await
            .map_err(|e| format!("the byte cache does not open: {e}"))?;
        Ok(Self {
            config,
            blocks,
            metas: moka::sync::Cache::new(FILES_KNOWN),
            memory_counters,
            disk_counters: CacheCounters::default(),
        })
    }

    /// The memory tier's counters (`hits`, `misses` and `inserts` count blocks).
    pub fn memory_counters(&self) -> &CacheCounters {
        &self.memory_counters
    }

    /// The disk tier's counters, when there is one.
    pub fn disk_counters(&self) -> Option<&CacheCounters> {
        self.config.disk.as_ref().map(|_| &self.disk_counters)
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.blocks.memory().usage() as u64
    }

    /// Bytes the memory tier may hold.
    pub fn memory_capacity(&self) -> u64 {
        self.config.memory_bytes
    }

    /// Bytes the disk tier may hold, when there is one.
    pub fn disk_capacity(&self) -> Option<u64> {
        self.config.disk.as_ref().map(|disk| disk.bytes)
    }

    /// The block `index` of the file at `location`, from memory or disk.
    async fn block(&self, location: &Path, index: u64) -> Option<Bytes> {
        let key = BlockKey::new(location, index);
        let found = match self.blocks.get(&key).await {
            Ok(found) => found,
            Err(error) => {
                self.disk_counters.fail();
                tracing::warn!(%error, "the byte cache's disk tier failed a read");
                None
            }
        };
        let disk = self.config.disk.is_some();
        match found.as_ref().map(|entry| entry.source()) {
            Some(Source::Disk) => {
                self.memory_counters.miss();
                self.disk_counters.hit();
            }
            Some(_) => self.memory_counters.hit(),
            None => {
                self.memory_counters.miss();
                if disk {
                    self.disk_counters.miss();
                }
            }
        }
        found.map(|entry| entry.value().clone())
    }

    fn insert(&self, location: &Path, index: u64, block: Bytes) {
        self.blocks.insert(BlockKey::new(location, index), block);
        self.memory_counters.insert();
    }

    /// Drops what is kept of the file at `location`.
    fn forget(&self, location: &Path) {
        let size = (self.metas.get(location)).map_or(MOST_FILE_BYTES, |meta| meta.size);
        let blocks = size.div_ceil(self.config.block_bytes);
        self.metas.invalidate(location);
        for index in 0..blocks {
            self.blocks.remove(&BlockKey::new(location, index));
        }
    }

    /// Keeps `bytes`, the whole of the file at `location`, in blocks.
    fn keep_file(&self, location: &Path, bytes: &Bytes) {
        let block_bytes = self.config.block_bytes as usize;
        for (index, start) in (0..bytes.len()).step_by(block_bytes).enumerate() {
            let end = (start + block_bytes).min(bytes.len());
            self.insert(location, index as u64, bytes.slice(start..end));
        }
    }
}

/// An object store whose data-file reads are served from a [`ByteCache`].
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<ByteCache>,
}

impl CachedStore {
    /// `inner`, with reads of its data files kept in `cache`.
    pub fn new(inner: Arc<dyn ObjectStore>, cache: Arc<ByteCache>) -> Self {
        Self { inner, cache }
    }

    /// Whether the object at `location` never changes once written.
    fn is_immutable(location: &Path) -> bool {
        location.extension() == Some("parquet")
    }

    /// The file's metadata: known from an earlier read, else asked of the store.
    async fn meta(&self, location: &Path) -> Result<ObjectMeta> {
        if let Some(meta) = self.cache.metas.get(location) {
            return Ok(meta);
        }
        let meta = self.inner.head(location).await?;
        self.cache.metas.insert(location.clone(), meta.clone());
        Ok(meta)
    }

    /// The bytes of `ranges` of the file at `location`, from its blocks; the blocks missing
    /// are fetched, each contiguous run of them in one request.
    async fn read_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<(ObjectMeta, Vec<Bytes>)> {
        let meta = self.meta(location).await?;
        let block_bytes = self.cache.config.block_bytes;
        let ranges: Vec<Range<u64>> = ranges
            .iter()
            .map(|range| range.start.min(meta.size)..range.end.min(meta.size))
            .collect();
        let needed: BTreeSet<u64> = ranges
            .iter()
            .filter(|range| !range.is_empty())
            .flat_map(|range| range.start / block_bytes..=(range.end - 1) / block_bytes)
            .collect();
        let mut blocks = BTreeMap::new();
        let mut missing = Vec::new();
        for index in needed {
            match self.cache.block(location, index).await {
                Some(block) => {
                    blocks.insert(index, block);
                }
                None => missing.push(index),
            }
        }
        let fetches = contiguous_runs(&missing).into_iter().map(|run| {
            let range = run.start * block_bytes..(run.end * block_bytes).min(meta.size);
            async move {
                let bytes = self.inner.get_range(location, range).await?;
                Ok::<_, object_store::Error>((run, bytes))
            }
        });
        for (run, bytes) in futures::future::try_join_all(fetches).await? {
            for index in run.clone() {
                let start = ((index - run.start) * block_bytes) as usize;
                let end = (start + block_bytes as usize).min(bytes.len());
                let block = bytes.slice(start..end);
                self.cache.insert(location, index, block.clone());
                blocks.insert(index, block);
            }
        }
        let answers = ranges
            .iter()
            .map(|range| assemble(&blocks, range, block_bytes))
            .collect();
        Ok((meta, answers))
    }
}

/// `indices` (ascending) as runs of consecutive numbers.
fn contiguous_runs(indices: &[u64]) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some(run) if run.end == index => run.end += 1,
            _ => runs.push(index..index + 1),
        }
    }
    runs
}

/// The bytes of `range` from the blocks covering it.
fn assemble(blocks: &BTreeMap<u64, Bytes>, range: &Range<u64>, block_bytes: u64) -> Bytes {
    if range.is_empty() {
        return Bytes::new();
    }
    let (first, last) = (range.start / block_bytes, (range.end - 1) / block_bytes);
    let slice = |index: u64| {
        let block = &blocks[&index];
        let block_start = index * block_bytes;
        let start = range.start.max(block_start) - block_start;
        let end = range.end.min(block_start + block.len() as u64) - block_start;
        block.slice(start as usize..end as usize)
    };
    if first == last {
        return slice(first);
    }
    let mut bytes = BytesMut::with_capacity((range.end - range.start) as usize);
    for index in first..=last {
        bytes.extend_from_slice(&slice(index));
    }
    bytes.freeze()
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cached({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> Result<PutResult> {
        if !Self::is_immutable(location) {
            return self.inner.put_opts(location, payload, options).await;
        }
        let bytes: Bytes = payload.clone().into();
        let result = self.inner.put_opts(location, payload, options).await?;
        self.cache.keep_file(location, &bytes);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, options).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        let range = match &options.range {
            Some(GetRange::Bounded(range)) if plain && Self::is_immutable(location) => {
                range.clone()
            }
            _ => return self.inner.get_opts(location, options).await,
        };
        let (meta, mut bytes) = self
            .read_ranges(location, std::slice::from_ref(&range))
            .await?;
        let bytes = bytes.remove(0);
        let range = range.start..range.start + bytes.len() as u64;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !Self::is_immutable(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        Ok(self.read_ranges(location, ranges).await?.1)
    }

    /// A deleted file's blocks are dropped: its bytes are not served after vacuum removed it.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let cache = Arc::clone(&self.cache);
        self.inner
            .delete_stream(locations)
            .inspect_ok(move |location| cache.forget(location))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
