//! Where Quantatom keeps its files: one object store and the URL DataFusion knows it by.
//!
//! The store is a local folder (the default) or an S3 bucket (AWS or S3-compatible such as
//! MinIO), chosen by [`StorageConfig`]. Every table reads and writes through a [`Storage`];
//! DataFusion's Parquet scan finds the same store through [`Storage::register`], so the engine
//! never opens files behind its back, and every call, ours and DataFusion's, goes through
//! [`ObservedStore`] (a tracing span and [`StorageMetrics`]), below the byte cache
//! ([`CachedStore`]) when one is configured.

mod cached;
mod commit_counts;
mod observed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, PutResult,
    RetryConfig,
};

pub use cached::{ByteCache, ByteCacheConfig, CachedStore, DiskTierConfig};
pub use commit_counts::{CommitCounters, CommitCounts, CommitEvent};
pub use observed::{ObservedStore, Operation, OperationCounts, StorageMetrics};

/// The URL under which the engine registers its store with DataFusion. A scheme of our own
/// keeps it apart from DataFusion's default `file://` store.
const STORAGE_URL: &str = "quantatom://data/";

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A local folder, created if missing.
    Local(PathBuf),
    /// A bucket of S3 or an S3-compatible server.
    S3(S3Config),
}

impl StorageConfig {
    /// `s3://bucket[/prefix]` names a bucket (configured further by `s3`), anything else a
    /// local folder.
    pub fn from_location(location: &str, s3: S3Settings) -> Result<Self, String> {
        let Some(rest) = location.strip_prefix("s3://") else {
            return Ok(StorageConfig::Local(PathBuf::from(location)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{location:?} names no bucket (s3://bucket/prefix)"));
        }
        Ok(StorageConfig::S3(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            settings: s3,
        }))
    }

    /// Where the data is, for messages: the folder, or `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        match self {
            StorageConfig::Local(dir) => dir.display().to_string(),
            StorageConfig::S3(s3) if s3.prefix.is_empty() => format!("s3://{}", s3.bucket),
            StorageConfig::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix),
        }
    }
}

/// A bucket and the folder in it that is the data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The data root inside the bucket (no leading or trailing `/`); empty for the whole
    /// bucket.
    pub prefix: String,
    /// How to reach it.
    pub settings: S3Settings,
}

/// How to reach an S3 bucket. Unset values come from the standard `AWS_*` environment
/// variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, ...), as every AWS tool reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// The server's URL, for S3-compatible servers (`http://minio:9000`); plain `http` is
    /// allowed when the URL (this or `AWS_ENDPOINT`) says so.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` if neither this nor the environment says).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO and most S3-compatible
    /// servers need, instead of virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// How failed requests are retried.
    pub retry: RetrySettings,
}

/// How the S3 client retries a failed request (a 5xx answer, a dropped connection, a timeout):
/// with exponential backoff and jitter, only requests that are safe to repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt; 0 turns retries off.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// The first backoff.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl Default for RetrySettings {
    /// object_store's defaults: 10 retries within 3 minutes, backoff from 100 ms to 15 s;
    /// requests time out after 30 s, connecting after 5 s.
    fn default() -> Self {
        let retry = RetryConfig::default();
        Self {
            max_retries: retry.max_retries,
            retry_timeout: retry.retry_timeout,
            initial_backoff: retry.backoff.init_backoff,
            max_backoff: retry.backoff.max_backoff,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// An object store rooted at Quantatom's data folder (or bucket prefix).
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    url: ObjectStoreUrl,
    metrics: Arc<StorageMetrics>,
    commits: Arc<CommitCounters>,
    byte_cache: Option<Arc<ByteCache>>,
}

impl Storage {
    /// The storage `config` names. A bucket is not contacted here; the first read reports
    /// whether it is reachable.
    pub fn open(config: &StorageConfig) -> Result<Self> {
        match config {
            StorageConfig::Local(dir) => Self::local(dir),
            StorageConfig::S3(s3) => Self::s3(s3),
        }
    }

    /// Storage in a local folder, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            DataFusionError::External(
                format!("cannot create data folder {}: {e}", dir.display()).into(),
            )
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(store)))
    }

    /// Storage in a bucket of S3 or an S3-compatible server.
    pub fn s3(config: &S3Config) -> Result<Self> {
        let settings = &config.settings;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: settings.retry.initial_backoff,
                    max_backoff: settings.retry.max_backoff,
                    ..BackoffConfig::default()
                },
                max_retries: settings.retry.max_retries,
                retry_timeout: settings.retry.retry_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(settings.retry.request_timeout)
                    .with_connect_timeout(settings.retry.connect_timeout),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        // Plain HTTP when the endpoint (ours or AWS_ENDPOINT) says so.
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        builder = builder.with_allow_http(endpoint.is_some_and(|url| url.starts_with("http://")));
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(access_key_id) = &settings.access_key_id {
            builder = builder.with_access_key_id(access_key_id);
        }
        if let Some(secret_access_key) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret_access_key);
        }
        if let Some(session_token) = &settings.session_token {
            builder = builder.with_token(session_token);
        }
        let bucket: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        Ok(match config.prefix.as_str() {
            "" => Self::new(bucket),
            prefix => Self::new(Arc::new(PrefixStore::new(bucket, prefix))),
        })
    }

    /// Storage over any object store whose paths are relative to the data root.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let metrics = Arc::new(StorageMetrics::default());
        Self {
            store: Arc::new(ObservedStore::new(store, Arc::clone(&metrics))),
            url: ObjectStoreUrl::parse(STORAGE_URL).expect("storage URL is valid"),
            metrics,
            commits: Arc::default(),
            byte_cache: None,
        }
    }

    /// This storage with its data files' reads kept in a byte cache as `config` says (none
    /// when it keeps no bytes). Must come before the storage is shared.
    pub async fn with_byte_cache(self, config: &ByteCacheConfig) -> Result<Self> {
        if config.memory_bytes == 0 {
            return Ok(self);
        }
        let cache = Arc::new(
            ByteCache::open(config.clone())
                .await
                .map_err(DataFusionError::Configuration)?,
        );
        Ok(Self {
            store: Arc::new(CachedStore::new(self.store, Arc::clone(&cache))),
            byte_cache: Some(cache),
            ..self
        })
    }

    /// The byte cache, when there is one.
    pub fn byte_cache(&self) -> Option<&Arc<ByteCache>> {
        self.byte_cache.as_ref()
    }

    /// The object store itself, observed (and cached).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes `payload` to `path` unless an object is there already (then the store answers
    /// `AlreadyExists`): how every immutable object (data file, log entry, checkpoint) is
    /// written, so that no writer ever replaces another's.
    pub async fn put_if_absent(
        &self,
        path: &Path,
        payload: impl Into<PutPayload>,
    ) -> object_store::Result<PutResult> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store.put_opts(path, payload.into(), options).await
    }

    /// The calls made to the store so far.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    /// The commits made to logs in this store so far.
    pub fn commits(&self) -> &CommitCounters {
        &self.commits
    }

    /// The URL DataFusion resolves this store by; file paths in scans are relative to it.
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// A path below the data root from its parts (`["cubes", "finance", "_log"]`).
    pub fn path(&self, parts: &[&str]) -> Path {
        Path::from_iter(parts.iter().copied())
    }

    /// Makes the store reachable from DataFusion scans in `runtime`.
    pub fn register(&self, runtime: &RuntimeEnv) {
        runtime.register_object_store(self.url.as_ref(), Arc::clone(&self.store));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_folder_or_a_bucket() {
        let settings = S3Settings {
            path_style: true,
            ..S3Settings::default()
        };
        assert_eq!(
            StorageConfig::from_location("./data", settings.clone()),
            Ok(StorageConfig::Local(PathBuf::from("./data")))
        );
        let StorageConfig::S3(s3) =
            StorageConfig::from_location("s3://plans/prod/eu/", settings.clone()).unwrap()
        else {
            panic!("a bucket");
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("plans", "prod/eu")
        );
        assert!(s3.settings.path_style);
        assert_eq!(
            StorageConfig::S3(s3).location(),
            "s3://plans/prod/eu".to_owned()
        );
        let error = StorageConfig::from_location("s3:///x", settings).unwrap_err();
        assert!(error.contains("names no bucket"), "{error}");
    }
}
