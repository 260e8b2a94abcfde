//! The shared tier: tiles in a Redis-compatible store (DragonflyDB in production, run with
//! `--cache_mode=true` so that it evicts at its memory limit), as Arrow IPC streams under
//! `quantatom:tile:<key>`, set with the cache's TTL.
//!
//! The store is a cache, never a dependency: every call gives up after the configured timeout,
//! a failure is counted and logged (at most one warning per [`WARN_EVERY`]) and the query goes
//! on as if the tile were not there. The connection is made on first use and remade on its own
//! after the store comes back (redis-rs's `ConnectionManager`).

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use quantatom_table_providers::cache_counters::CacheCounters;

use super::{RedisSettings, Tile, TileKey};

/// Failures of the shared tier are logged at most once per this long (all are counted).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Tiles in a Redis-compatible store shared by every replica.
#[derive(Clone)]
pub struct SharedTier {
    connection: ConnectionManager,
    url: String,
    timeout: Duration,
    ttl: Duration,
    counters: Arc<CacheCounters>,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SharedTier {
    /// The tier at `settings.url`, connected on first use.
    pub fn new(settings: &RedisSettings, ttl: Duration) -> Result<Self> {
        let invalid = |error: redis::RedisError| {
            DataFusionError::Configuration(format!(
                "the tile cache's Redis URL (setting `tile_cache_redis`) is not usable: {error}"
            ))
        };
        let client = redis::Client::open(settings.url.as_str()).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok(Self {
            connection,
            url: redacted(&settings.url),
            timeout: settings.timeout,
            ttl,
            counters: Arc::default(),
            last_warning: Arc::default(),
        })
    }

    /// The tier's counters.
    pub fn counters(&self) -> &CacheCounters {
        &self.counters
    }

    /// The tile under `key`, if the store has it and answers in time.
    pub async fn get(&self, key: &TileKey) -> Option<Tile> {
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("GET");
        let command = get
            .arg(key.redis_key())
            .query_async::<Option<Vec<u8>>>(&mut connection);
        let answer = match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.failed("lookup", &error.to_string());
                return None;
            }
            Err(_) => {
                self.failed("lookup", "timed out");
                return None;
            }
        };
        let Some(bytes) = answer else {
            self.counters.miss();
            return None;
        };
        match decode(&bytes) {
            Ok(tile) => {
                self.counters.hit();
                Some(tile)
            }
            Err(error) => {
                self.failed("lookup", &format!("an unreadable tile: {error}"));
                None
            }
        }
    }

    /// Whether the store answers a `PING` within the configured timeout.
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        let command = ping.query_async::<String>(&mut connection);
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("{}: {error}", self.url)),
            Err(_) => Err(format!(
                "{}: no answer within {} ms",
                self.url,
                self.timeout.as_millis()
            )),
        }
    }

    /// Stores `tile` under `key` in a task of its own; the query does not wait for it.
    pub fn put_in_background(&self, key: TileKey, tile: Arc<Tile>) {
        let tier = self.clone();
        tokio::spawn(async move {
            let bytes = match encode(&tile) {
                Ok(bytes) => bytes,
                Err(error) => return tier.failed("store", &error.to_string()),
            };
            let mut connection = tier.connection.clone();
            let mut set = redis::cmd("SET");
            let command = set
                .arg(key.redis_key())
                .arg(bytes)
                .arg("PX")
                .arg(tier.ttl.as_millis() as u64)
                .query_async::<()>(&mut connection);
            match tokio::time::timeout(tier.timeout, command).await {
                Ok(Ok(())) => tier.counters.insert(),
                Ok(Err(error)) => tier.failed("store", &error.to_string()),
                Err(_) => tier.failed("store", "timed out"),
            }
        });
    }

    /// Counts a failed call and warns, unless a warning went out less than [`WARN_EVERY`] ago.
    fn failed(&self, call: &str, error: &str) {
        self.counters.fail();
        let mut last = self.last_warning.lock().expect("warning clock poisoned");
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                redis = %self.url,
                call,
                error,
                errors = self.counters.errors(),
                "the tile cache's Redis failed; queries go on without it"
            );
        }
    }
}

/// `url` without its password, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `tile` as an Arrow IPC stream.
fn encode(tile: &Tile) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), tile.schema())?;
    for batch in tile.batches() {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// The tile an Arrow IPC stream holds.
fn decode(bytes: &[u8]) -> Result<Tile> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(Tile::new(schema, batches))
}
