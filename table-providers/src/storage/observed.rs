//! The one door to the object store: every call Quantatom or DataFusion makes goes through
//! [`ObservedStore`], which gives it a tracing span and counts it in [`StorageMetrics`].
//! Retries belong to the store's HTTP client (object_store's `RetryConfig`, set from
//! [`super::RetrySettings`]), which knows which requests are safe to repeat; a local folder has
//! nothing to retry.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use tracing::Instrument;

/// The kinds of object-store call, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A whole-object write.
    Put,
    /// The start of a multipart upload.
    PutMultipart,
    /// A read of an object or a range of it.
    Get,
    /// A read of several ranges of an object.
    GetRanges,
    /// A delete of one object.
    Delete,
    /// A recursive listing.
    List,
    /// A listing of one level.
    ListWithDelimiter,
    /// A server-side copy.
    Copy,
    /// A rename (copy and delete on most stores).
    Rename,
}

impl Operation {
    /// Every operation, in the order [`StorageMetrics`] keeps them.
    pub const ALL: [Operation; 9] = [
        Operation::Put,
        Operation::PutMultipart,
        Operation::Get,
        Operation::GetRanges,
        Operation::Delete,
        Operation::List,
        Operation::ListWithDelimiter,
        Operation::Copy,
        Operation::Rename,
    ];

    /// The operation's name in spans and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::PutMultipart => "put_multipart",
            Operation::Get => "get",
            Operation::GetRanges => "get_ranges",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::ListWithDelimiter => "list_with_delimiter",
            Operation::Copy => "copy",
            Operation::Rename => "rename",
        }
    }
}

/// Counters of one operation.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

/// What one operation's counters read at a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationCounts {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (a lost put-if-absent race counts: the store answered "exists").
    pub errors: u64,
    /// Bytes written by puts, read by gets.
    pub bytes: u64,
    /// Time spent waiting for the calls.
    pub time: Duration,
}

/// Calls to the object store since start-up, by operation.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    counters: [Counters; Operation::ALL.len()],
}

impl StorageMetrics {
    fn counters(&self, operation: Operation) -> &Counters {
        &self.counters[operation as usize]
    }

    fn record(&self, operation: Operation, elapsed: Duration, outcome: Result<u64, ()>) {
        let counters = self.counters(operation);
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counters.nanos.fetch_add(nanos, Ordering::Relaxed);
        match outcome {
            Ok(bytes) => counters.bytes.fetch_add(bytes, Ordering::Relaxed),
            Err(()) => counters.errors.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// The counts of `operation` now.
    pub fn of(&self, operation: Operation) -> OperationCounts {
        let counters = self.counters(operation);
        OperationCounts {
            calls: counters.calls.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            time: Duration::from_nanos(counters.nanos.load(Ordering::Relaxed)),
        }
    }
}

/// An object store whose every call is traced and counted.
#[derive(Debug)]
pub struct ObservedStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<StorageMetrics>,
}

impl ObservedStore {
    /// Observes `inner`, counting into `metrics`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<StorageMetrics>) -> Self {
        Self { inner, metrics }
    }

    /// Runs one call of `operation` on `location` in its span, and counts it (`bytes` of its
    /// result when it succeeds).
    async fn observe<T>(
        &self,
        operation: Operation,
        location: &Path,
        call: impl Future<Output = Result<T>>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Result<T> {
        let span =
            tracing::debug_span!("object_store", operation = operation.name(), path = %location);
        let started = Instant::now();
        let result = call.instrument(span).await;
        let outcome = match &result {
            Ok(value) => Ok(bytes(value)),
            Err(error) => {
                tracing::debug!(operation = operation.name(), path = %location, %error, "object store call failed");
                Err(())
            }
        };
        self.metrics.record(operation, started.elapsed(), outcome);
        result
    }

    /// Counts a listing as one call, its errors as they come.
    fn observe_listing(
        &self,
        operation: Operation,
        prefix: Option<&Path>,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        tracing::debug!(operation = operation.name(), prefix = ?prefix.map(Path::as_ref), "object store listing");
        self.metrics.record(operation, Duration::ZERO, Ok(0));
        let metrics = Arc::clone(&self.metrics);
        listing
            .inspect_err(move |_| {
                metrics
                    .counters(operation)
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
            })
            .boxed()
    }
}

impl fmt::Display for ObservedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Observed({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ObservedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = payload.content_length() as u64;
        let call = self.inner.put_opts(location, payload, opts);
        self.observe(Operation::Put, location, call, |_| size).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let call = self.inner.put_multipart_opts(location, opts);
        self.observe(Operation::PutMultipart, location, call, |_| 0)
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let call = self.inner.get_opts(location, options);
        self.observe(Operation::Get, location, call, |result| {
            result.range.end - result.range.start
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let call = self.inner.get_ranges(location, ranges);
        self.observe(Operation::GetRanges, location, call, |parts| {
            parts.iter().map(|part| part.len() as u64).sum()
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let metrics = Arc::clone(&self.metrics);
        self.inner
            .delete_stream(locations)
            .inspect(move |deleted| {
                if let Ok(path) = deleted {
                    tracing::debug!(operation = "delete", %path, "object deleted");
                }
                let outcome = deleted.as_ref().map(|_| 0).map_err(|_| ());
                metrics.record(Operation::Delete, Duration::ZERO, outcome);
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        self.observe_listing(Operation::List, prefix, listing)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.inner.list_with_offset(prefix, offset);
        self.observe_listing(Operation::List, prefix, listing)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let root = Path::default();
        let location = prefix.unwrap_or(&root);
        let call = self.inner.list_with_delimiter(prefix);
        self.observe(Operation::ListWithDelimiter, location, call, |_| 0)
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let call = self.inner.copy_opts(from, to, options);
        self.observe(Operation::Copy, to, call, |_| 0).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let call = self.inner.rename_opts(from, to, options);
        self.observe(Operation::Rename, to, call, |_| 0).await
    }
}
