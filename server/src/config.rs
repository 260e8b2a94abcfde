//! Command line and configuration: flags, `QUANTATOM_*` environment variables and an optional
//! TOML file, in that order of precedence, over documented defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use quantatom_engine::mdf::maintenance::CompactionPolicy;
use quantatom_engine::metadata::PostgresStoreSettings;
use quantatom_engine::storage::{ByteCacheConfig, DiskTierConfig};
use quantatom_engine::storage::{RetrySettings, S3Settings, StorageConfig};
use quantatom_engine::tiles::{RedisSettings, TileCacheConfig};
use quantatom_engine::{CacheConfig, MetadataConfig};

use crate::telemetry::LogFormat;
use crate::wire::{
    AuthMethod, ConnectionLimits, DEFAULT_IDLE_POLL, LoginLimits, QueryLog, Security, tls_acceptor,
};
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
/// The default data folder.
pub const DEFAULT_DATA_DIR: &str = "./quantatom-data";
/// The default size of the demo model loaded into an empty data folder.
pub const DEFAULT_DEMO_CELLS: usize = 1_000_000;

/// Connections the PostgreSQL metadata store keeps at most, unless configured.
pub const DEFAULT_METADATA_POOL_SIZE: usize = 16;

/// Seconds a PostgreSQL connection may take to open, unless configured.
pub const DEFAULT_METADATA_TIMEOUT_SECS: u64 = 5;

/// MiB the byte cache's disk tier keeps, when it has one and no size is configured.
pub const DEFAULT_BYTE_CACHE_DISK_MB: u64 = 10_240;

/// MiB of operator memory one connection's statement may hold, unless configured.
pub const DEFAULT_QUERY_MEMORY_MB: u64 = 4096;

/// How long one call to the tile cache's Redis may take, in milliseconds.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 100;

/// The `quantatom` command line.
#[derive(Debug, Parser)]
#[command(
    name = "quantatom",
    version,
    about = "Quantatom: a SQL engine for planning cubes, reached over the PostgreSQL wire protocol.",
    after_help = "Logging: set QUANTATOM_LOG to a tracing filter (default: info), e.g. QUANTATOM_LOG=debug."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text`, or `json` (one object per line, for
    /// Loki and other collectors) [default: text].
    #[arg(
        long,
        global = true,
        env = "QUANTATOM_LOG_FORMAT",
        value_name = "text|json"
    )]
    pub log_format: Option<LogFormat>,
    /// Where spans are exported over OTLP/HTTP (protobuf), the collector's base URL such as
    /// http://otel-collector:4318; `/v1/traces` is added. Without one, nothing is exported
    /// [default: none].
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the Postgres-wire server (loads the demo model into an empty data folder).
    Serve(ServeArgs),
    /// Write the demo planning model into an empty data folder, then exit.
    Demo(DemoArgs),
    /// Compact a cube: fold overwritten cells and tombstones into new sorted files.
    Compact(CubeArgs),
    /// Delete a cube's data files that no version inside the retention period reads.
    Vacuum(VacuumArgs),
    /// Check the ledger (audit log) of every change.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// The planning benchmark (bench/planning-benchmark).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `quantatom bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write the planning benchmark's model (`cube.planning` and its dimensions) into
    /// `OUT/data`, and what the benchmark's queries need to know about it into
    /// `OUT/bench.json`.
    Generate(GenerateArgs),
}

/// Flags of `quantatom bench generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The size: `ci` (about 1M cells), `s` (10M) or `m` (70M).
    #[arg(long, value_enum, ignore_case = true)]
    pub profile: BenchProfile,
    /// Folder to write into; must be empty or missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The planning benchmark's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProfile {
    /// About 1M cells: CI's correctness check.
    Ci,
    /// About 10M cells.
    S,
    /// About 70M cells.
    M,
}

/// `quantatom ledger ...`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check that the ledger's hash chain is intact and that it holds every committed change;
    /// reports the first broken entry and exits with status 1 when it is not.
    Verify(StorageArgs),
}

/// Flags of `quantatom serve`; each also reads a `QUANTATOM_*` variable and a config-file key.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the data is.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on, HOST:PORT [default: 127.0.0.1:5433].
    #[arg(long, env = "QUANTATOM_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Cells in the demo model loaded when the data folder is empty; 0 loads none
    /// [default: 1000000].
    #[arg(long, env = "QUANTATOM_DEMO_CELLS", value_name = "N")]
    pub demo_cells: Option<usize>,
    /// Where dimensions and members are kept: `embedded` (in the data folder) or a PostgreSQL
    /// URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE, whose database has (or may create)
    /// the `ltree` extension [default: embedded].
    #[arg(long, env = "QUANTATOM_METADATA", value_name = "embedded|URL")]
    pub metadata: Option<String>,
    /// Connections to PostgreSQL the metadata store keeps at most [default: 16].
    #[arg(long, env = "QUANTATOM_METADATA_POOL_SIZE", value_name = "N")]
    pub metadata_pool_size: Option<usize>,
    /// Seconds connecting to PostgreSQL, or waiting for a free connection, may take
    /// [default: 5].
    #[arg(long, env = "QUANTATOM_METADATA_TIMEOUT_SECS", value_name = "SECONDS")]
    pub metadata_timeout_secs: Option<u64>,
    /// Run without the ledger: changes are not audited. Only to measure what the ledger
    /// costs.
    #[arg(long, env = "QUANTATOM_NO_LEDGER")]
    pub no_ledger: bool,
    /// The caches (docs/caching.md).
    #[command(flatten)]
    pub caches: CacheArgs,
    /// When cubes are compacted in the background (docs/mdf.md).
    #[command(flatten)]
    pub compaction: CompactionArgs,
    /// TLS and authentication (docs/security.md).
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Address of the admin HTTP listener (/healthz, /readyz, /metrics), HOST:PORT
    /// [default: 127.0.0.1:9433].
    #[arg(long, env = "QUANTATOM_ADMIN_LISTEN", value_name = "HOST:PORT")]
    pub admin_listen: Option<String>,
    /// Client connections held at once; one more is refused with 53300 [default: 1000].
    #[arg(long, env = "QUANTATOM_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a stopping server (SIGTERM, Ctrl-C) lets running statements finish before it
    /// closes their connections [default: 30].
    #[arg(long, env = "QUANTATOM_SHUTDOWN_DRAIN_SECS", value_name = "SECONDS")]
    pub shutdown_drain_secs: Option<u64>,
    /// Microseconds a connection polls for its client's next message after a response before
    /// it sleeps, while the client answers that quickly (one connection at a time; 0: never)
    /// [default: 200].
    #[arg(long, env = "QUANTATOM_IDLE_POLL_MICROS", value_name = "MICROSECONDS")]
    pub idle_poll_micros: Option<u64>,
    /// Operator memory (hash tables, sorts, aggregation state) one connection's statement may
    /// hold, MiB; a statement that needs more spills where it can and otherwise fails with
    /// 53200; 0 sets no limit [default: 4096].
    #[arg(long, env = "QUANTATOM_QUERY_MEMORY_MB", value_name = "MIB")]
    pub query_memory_mb: Option<u64>,
    /// Log every statement with its user, duration, rows and SQLSTATE: `off`, `on`, or
    /// `redacted` (literals replaced by `?`) [default: off].
    #[arg(long, env = "QUANTATOM_QUERY_LOG", value_name = "off|on|redacted")]
    pub query_log: Option<QueryLog>,
}

/// Flags of TLS and authentication; each also reads a `QUANTATOM_*` variable and a
/// config-file key.
#[derive(Debug, Default, Args)]
pub struct SecurityArgs {
    /// How clients authenticate: `scram-sha-256` (passwords of users in the metadata store)
    /// or `trust` (a client is the user it names) [default: trust with embedded metadata,
    /// scram-sha-256 otherwise].
    #[arg(long, env = "QUANTATOM_AUTH", value_name = "scram-sha-256|trust")]
    pub auth: Option<String>,
    /// The server's TLS certificate chain, PEM; with --tls-key enables TLS [default: none].
    #[arg(long, env = "QUANTATOM_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM.
    #[arg(long, env = "QUANTATOM_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Refuse connections without TLS [default: false].
    #[arg(long, env = "QUANTATOM_TLS_REQUIRED", value_name = "BOOL")]
    pub tls_required: Option<bool>,
    /// Failed logins in a row (per user and client address) after which that user's logins
    /// from that address are refused for --login-lockout-secs [default: 5].
    #[arg(long, env = "QUANTATOM_LOGIN_MAX_FAILURES", value_name = "N")]
    pub login_max_failures: Option<u32>,
    /// Seconds logins stay refused after too many failures [default: 60].
    #[arg(long, env = "QUANTATOM_LOGIN_LOCKOUT_SECS", value_name = "SECONDS")]
    pub login_lockout_secs: Option<u64>,
    /// Milliseconds the answer to a failed login is held back [default: 500].
    #[arg(long, env = "QUANTATOM_LOGIN_FAILURE_DELAY_MS", value_name = "MS")]
    pub login_failure_delay_ms: Option<u64>,
    /// The administrator created at start when it does not exist, and given
    /// QUANTATOM_ADMIN_PASSWORD [default: quantatom].
    #[arg(long, env = "QUANTATOM_ADMIN_USER", value_name = "NAME")]
    pub admin_user: Option<String>,
}

/// The administrator's password comes only from the environment (or a file named by
/// `QUANTATOM_ADMIN_PASSWORD_FILE`): never a flag, which `ps` would show.
pub const ADMIN_PASSWORD_VARIABLE: &str = "QUANTATOM_ADMIN_PASSWORD";

/// What `serve` needs to make the first administrator: the user and the password, kept out
/// of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminLogin {
    /// The administrator's name.
    pub user: String,
    /// The password it logs in with.
    pub password: String,
}

impl std::fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminLogin")
            .field("user", &self.user)
            .field("password", &"********")
            .finish()
    }
}

/// TLS and authentication, resolved.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// What the wire server enforces.
    pub server: Security,
    /// The administrator to make or update at start, when a password is given.
    pub admin: Option<AdminLogin>,
}

impl SecurityArgs {
    /// Flags and environment over the config file over the defaults, checked; `embedded`
    /// says whether the metadata store is the embedded one (whose default is trust).
    fn resolve(self, file: &FileSettings, embedded: bool) -> Result<SecurityConfig, ConfigError> {
        let auth = match self.auth.or(file.auth.clone()) {
            None if embedded => AuthMethod::Trust,
            None => AuthMethod::ScramSha256,
            Some(name) => AuthMethod::named(&name).ok_or_else(|| {
                ConfigError::new(
                    "auth",
                    "auth",
                    format!("{name:?} is not a method: use scram-sha-256 or trust (md5 and cleartext passwords are not offered)"),
                )
            })?,
        };
        let tls = match (
            self.tls_cert.or(file.tls_cert.clone()),
            self.tls_key.or(file.tls_key.clone()),
        ) {
            (None, None) => None,
            (Some(certificate), Some(key)) => Some(
                tls_acceptor(&certificate, &key)
                    .map_err(|message| ConfigError::new("tls_cert", "tls-cert", message))?,
            ),
            _ => {
                return Err(ConfigError::new(
                    "tls_cert",
                    "tls-cert",
                    "TLS needs both a certificate (tls_cert) and its key (tls_key)",
                ));
            }
        };
        let tls_required = self.tls_required.or(file.tls_required).unwrap_or(false);
        if tls_required && tls.is_none() {
            return Err(ConfigError::new(
                "tls_required",
                "tls-required",
                "TLS is required but no certificate is configured (tls_cert, tls_key)",
            ));
        }
        let defaults = LoginLimits::default();
        let login_limits = LoginLimits {
            max_failures: self
                .login_max_failures
                .or(file.login_max_failures)
                .unwrap_or(defaults.max_failures)
                .max(1),
            lockout: self
                .login_lockout_secs
                .or(file.login_lockout_secs)
                .map_or(defaults.lockout, Duration::from_secs),
            failure_delay: self
                .login_failure_delay_ms
                .or(file.login_failure_delay_ms)
                .map_or(defaults.failure_delay, Duration::from_millis),
        };
        let password = match std::env::var(ADMIN_PASSWORD_VARIABLE) {
            Ok(password) => Some(password),
            Err(_) => match std::env::var(format!("{ADMIN_PASSWORD_VARIABLE}_FILE")) {
                Ok(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| {
                            ConfigError::new(
                                "admin_password_file",
                                "admin-password-file",
                                format!("cannot read {path}: {e}"),
                            )
                        })?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                ),
                Err(_) => None,
            },
        };
        let admin = password
            .filter(|password| !password.is_empty())
            .map(|password| AdminLogin {
                user: self
                    .admin_user
                    .or(file.admin_user.clone())
                    .unwrap_or_else(|| DEFAULT_ADMIN_USER.to_owned()),
                password,
            });
        Ok(SecurityConfig {
            server: Security {
                auth,
                tls,
                tls_required,
                login_limits,
            },
            admin,
        })
    }
}

/// Where the admin HTTP listener listens unless configured: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9433";

/// The administrator's name unless configured.
pub const DEFAULT_ADMIN_USER: &str = "quantatom";

/// Flags of the caches; each also reads a `QUANTATOM_*` variable and a config-file key.
#[derive(Debug, Default, Args)]
pub struct CacheArgs {
    /// Bytes of data files kept in memory, MiB; 0 keeps none [default: 512].
    #[arg(long, env = "QUANTATOM_BYTE_CACHE_MB", value_name = "MIB")]
    pub byte_cache_mb: Option<u64>,
    /// A folder for the byte cache's local-disk tier, which survives restarts [default: none].
    #[arg(long, env = "QUANTATOM_BYTE_CACHE_DISK_DIR", value_name = "DIR")]
    pub byte_cache_disk_dir: Option<PathBuf>,
    /// Bytes of data files the disk tier keeps, MiB [default: 10240].
    #[arg(long, env = "QUANTATOM_BYTE_CACHE_DISK_MB", value_name = "MIB")]
    pub byte_cache_disk_mb: Option<u64>,
    /// Parquet footers and page indexes DataFusion keeps, MiB [default: 50].
    #[arg(long, env = "QUANTATOM_FILE_METADATA_CACHE_MB", value_name = "MIB")]
    pub file_metadata_cache_mb: Option<u64>,
    /// Tiles (query results) kept in memory, MiB; 0 keeps none [default: 256].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_MB", value_name = "MIB")]
    pub tile_cache_mb: Option<u64>,
    /// The largest query result kept as a tile, MiB [default: 16].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_MAX_TILE_MB", value_name = "MIB")]
    pub tile_cache_max_tile_mb: Option<u64>,
    /// Seconds a tile is kept, in memory and in Redis [default: 3600].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_TTL_SECS", value_name = "SECONDS")]
    pub tile_cache_ttl_secs: Option<u64>,
    /// A Redis-compatible store (DragonflyDB, Redis) the replicas share tiles in,
    /// redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss:// [default: none].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_REDIS", value_name = "URL")]
    pub tile_cache_redis: Option<String>,
    /// Milliseconds between checks of the hot tiles, recomputed after their tables change; 0
    /// never [default: 1000].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_REFRESH_MS", value_name = "MS")]
    pub tile_cache_refresh_ms: Option<u64>,
    /// Milliseconds one call to the store may take before the query goes on without it
    /// [default: 100].
    #[arg(long, env = "QUANTATOM_TILE_CACHE_REDIS_TIMEOUT_MS", value_name = "MS")]
    pub tile_cache_redis_timeout_ms: Option<u64>,
}

/// `value` MiB in bytes, or `default` bytes when unset.
fn mib(value: Option<u64>, default: u64) -> u64 {
    value.map_or(default, |mib| mib << 20)
}

impl CacheArgs {
    /// Flags and environment over the config file over the defaults, checked.
    fn resolve(self, file: &FileSettings) -> Result<CacheConfig, ConfigError> {
        let defaults = CacheConfig::default();
        Ok(CacheConfig {
            bytes: ByteCacheConfig {
                memory_bytes: mib(
                    self.byte_cache_mb.or(file.byte_cache_mb),
                    defaults.bytes.memory_bytes,
                ),
                disk: self
                    .byte_cache_disk_dir
                    .clone()
                    .or(file.byte_cache_disk_dir.clone())
                    .map(|dir| DiskTierConfig {
                        dir,
                        bytes: mib(
                            self.byte_cache_disk_mb.or(file.byte_cache_disk_mb),
                            DEFAULT_BYTE_CACHE_DISK_MB << 20,
                        ),
                    }),
                ..defaults.bytes
            },
            file_metadata_bytes: mib(
                self.file_metadata_cache_mb.or(file.file_metadata_cache_mb),
                defaults.file_metadata_bytes as u64,
            ) as usize,
            tiles: self.resolve_tiles(file)?,
        })
    }

    fn resolve_tiles(self, file: &FileSettings) -> Result<TileCacheConfig, ConfigError> {
        let defaults = TileCacheConfig::default();
        let ttl_secs = self
            .tile_cache_ttl_secs
            .or(file.tile_cache_ttl_secs)
            .unwrap_or(defaults.ttl.as_secs());
        if ttl_secs == 0 {
            return Err(ConfigError::new(
                "tile_cache_ttl_secs",
                "tile-cache-ttl-secs",
                "a tile must be kept for at least a second",
            ));
        }
        let redis = match self.tile_cache_redis.or(file.tile_cache_redis.clone()) {
            None => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(RedisSettings {
                    url,
                    timeout: Duration::from_millis(
                        self.tile_cache_redis_timeout_ms
                            .or(file.tile_cache_redis_timeout_ms)
                            .unwrap_or(DEFAULT_REDIS_TIMEOUT_MS),
                    ),
                })
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "tile_cache_redis",
                    "tile-cache-redis",
                    "the store's URL starts with redis:// or rediss://",
                ));
            }
        };
        Ok(TileCacheConfig {
            memory_bytes: mib(
                self.tile_cache_mb.or(file.tile_cache_mb),
                defaults.memory_bytes,
            ),
            max_tile_bytes: mib(
                self.tile_cache_max_tile_mb.or(file.tile_cache_max_tile_mb),
                defaults.max_tile_bytes,
            ),
            ttl: Duration::from_secs(ttl_secs),
            redis,
            refresh_interval: match self.tile_cache_refresh_ms.or(file.tile_cache_refresh_ms) {
                None => defaults.refresh_interval,
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
            },
        })
    }
}

/// Flags of the compaction policy; each also reads a `QUANTATOM_*` variable and a config-file
/// key.
#[derive(Debug, Default, Args)]
pub struct CompactionArgs {
    /// A cube is compacted in the background once it has this many files to fold; 0 never
    /// (compact with `mdf_compact` or `quantatom compact`) [default: 32].
    #[arg(long, env = "QUANTATOM_COMPACT_AFTER_FILES", value_name = "N")]
    pub compact_after_files: Option<usize>,
    /// Cells per file a full compaction writes [default: 4194304].
    #[arg(long, env = "QUANTATOM_COMPACTED_FILE_ROWS", value_name = "N")]
    pub compacted_file_rows: Option<u64>,
    /// Files smaller than this, MiB, are folded even when nothing in them is overwritten, and
    /// are the only files a minor compaction folds [default: 16].
    #[arg(long, env = "QUANTATOM_SMALL_FILE_MB", value_name = "MIB")]
    pub small_file_mb: Option<u64>,
}

impl CompactionArgs {
    /// Flags and environment over the config file over the defaults, checked.
    fn resolve(self, file: &FileSettings) -> Result<CompactionPolicy, ConfigError> {
        let defaults = CompactionPolicy::default();
        let compacted_file_rows = self
            .compacted_file_rows
            .or(file.compacted_file_rows)
            .unwrap_or(defaults.compacted_file_rows);
        if compacted_file_rows == 0 {
            return Err(ConfigError::new(
                "compacted_file_rows",
                "compacted-file-rows",
                "a compacted file holds at least one cell",
            ));
        }
        Ok(CompactionPolicy {
            auto_compact_files: self
                .compact_after_files
                .or(file.compact_after_files)
                .unwrap_or(defaults.auto_compact_files),
            compacted_file_rows,
            small_file_bytes: mib(
                self.small_file_mb.or(file.small_file_mb),
                defaults.small_file_bytes,
            ),
            ..defaults
        })
    }
}

/// Where the data is: flags shared by the commands that open it.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// TOML file with any of the settings below (keys: listen, data_dir, demo_cells,
    /// metadata, metadata_pool_size, metadata_timeout_secs, and an [s3] table).
    #[arg(long, env = "QUANTATOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder for cubes and metadata, created if missing, or s3://bucket/prefix
    /// [default: ./quantatom-data].
    #[arg(
        long,
        env = "QUANTATOM_DATA_DIR",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    pub data_dir: Option<String>,
    /// The S3-compatible server's URL, for a bucket that is not on AWS (else AWS_ENDPOINT).
    #[arg(long, env = "QUANTATOM_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region (else AWS_REGION, else us-east-1).
    #[arg(long, env = "QUANTATOM_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Path-style requests (endpoint/bucket/key), which MinIO and most S3-compatible servers
    /// need [default: false].
    #[arg(long, env = "QUANTATOM_S3_PATH_STYLE", value_name = "BOOL")]
    pub s3_path_style: Option<bool>,
}

/// Flags of `quantatom compact`.
#[derive(Debug, Args)]
pub struct CubeArgs {
    /// Where the data is.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How compactions write (docs/mdf.md).
    #[command(flatten)]
    pub compaction: CompactionArgs,
    /// The cube, e.g. `finance` (or `cube.finance`).
    #[arg(long, value_name = "NAME")]
    pub cube: String,
}

/// Flags of `quantatom vacuum`.
#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// The data and the cube.
    #[command(flatten)]
    pub target: CubeArgs,
    /// How long versions stay readable: a number and a unit, s, m, h or d [default: 7d].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retention: Option<Duration>,
}

/// `30s`, `15m`, `12h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h or d"))?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(number * seconds))
}

/// Flags of `quantatom demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to write the model into; must be empty or missing [default: ./quantatom-data].
    #[arg(long, env = "QUANTATOM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// About how many cells the `finance` cube gets [default: 1000000].
    #[arg(long, value_name = "N")]
    pub cells: Option<usize>,
}

/// The settings a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<String>,
    demo_cells: Option<usize>,
    metadata: Option<String>,
    metadata_pool_size: Option<usize>,
    metadata_timeout_secs: Option<u64>,
    byte_cache_mb: Option<u64>,
    byte_cache_disk_dir: Option<PathBuf>,
    byte_cache_disk_mb: Option<u64>,
    file_metadata_cache_mb: Option<u64>,
    tile_cache_mb: Option<u64>,
    tile_cache_max_tile_mb: Option<u64>,
    tile_cache_ttl_secs: Option<u64>,
    tile_cache_redis: Option<String>,
    tile_cache_redis_timeout_ms: Option<u64>,
    tile_cache_refresh_ms: Option<u64>,
    compact_after_files: Option<usize>,
    compacted_file_rows: Option<u64>,
    small_file_mb: Option<u64>,
    auth: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_required: Option<bool>,
    login_max_failures: Option<u32>,
    login_lockout_secs: Option<u64>,
    login_failure_delay_ms: Option<u64>,
    admin_user: Option<String>,
    max_connections: Option<usize>,
    shutdown_drain_secs: Option<u64>,
    idle_poll_micros: Option<u64>,
    admin_listen: Option<String>,
    query_memory_mb: Option<u64>,
    query_log: Option<QueryLog>,
    #[serde(default)]
    s3: FileS3Settings,
}

/// The `[s3]` table of a config file. Credentials left out come from the `AWS_*` environment
/// variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileS3Settings {
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    max_retries: Option<usize>,
    retry_timeout_secs: Option<u64>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    request_timeout_secs: Option<u64>,
    connect_timeout_secs: Option<u64>,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the data lives: a folder or a bucket.
    pub storage: StorageConfig,
    /// Demo size for an empty data folder; `None` loads no demo.
    pub demo_cells: Option<usize>,
    /// Where the metadata store is.
    pub metadata: MetadataConfig,
    /// The caches.
    pub caches: CacheConfig,
    /// When cubes are compacted in the background, and how.
    pub compaction: CompactionPolicy,
    /// TLS and authentication.
    pub security: SecurityConfig,
    /// Connections held, and how they drain at shutdown.
    pub limits: ConnectionLimits,
    /// How long a connection polls for its client's next message before it sleeps.
    pub idle_poll: Duration,
    /// Where the admin HTTP listener listens.
    pub admin_listen: SocketAddr,
    /// Bytes of operator memory one connection's statement may hold; `None`: no limit.
    pub query_memory_limit: Option<usize>,
    /// Whether statements are logged.
    pub query_log: QueryLog,
}

/// A setting that cannot be used; the message names it and how it was given.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    /// The setting, with its flag, variable and file key.
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &str, flag: &str, message: impl Into<String>) -> Self {
        let variable = format!("QUANTATOM_{}", setting.to_uppercase());
        Self {
            setting: format!(
                "`{setting}` (--{flag}, {variable}, or `{setting}` in the config file)"
            ),
            message: message.into(),
        }
    }
}

impl ServeArgs {
    /// Merges flags and environment over the config file over the defaults, and checks them.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let file = self.storage.file()?;
        let listen_text = self
            .listen
            .or(file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text, "listen", "listen")?;
        let demo_cells = match self
            .demo_cells
            .or(file.demo_cells)
            .unwrap_or(DEFAULT_DEMO_CELLS)
        {
            0 => None,
            cells => Some(cells),
        };
        let metadata = match self.metadata.or(file.metadata.clone()).as_deref() {
            None | Some("embedded") => MetadataConfig::Embedded,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                MetadataConfig::Postgres(PostgresStoreSettings {
                    url: url.to_owned(),
                    pool_size: self
                        .metadata_pool_size
                        .or(file.metadata_pool_size)
                        .unwrap_or(DEFAULT_METADATA_POOL_SIZE),
                    timeout: Duration::from_secs(
                        self.metadata_timeout_secs
                            .or(file.metadata_timeout_secs)
                            .unwrap_or(DEFAULT_METADATA_TIMEOUT_SECS),
                    ),
                })
            }
            Some(other) => {
                return Err(ConfigError::new(
                    "metadata",
                    "metadata",
                    format!("{other:?} is neither `embedded` nor a postgres:// URL"),
                ));
            }
        };
        let embedded = metadata == MetadataConfig::Embedded;
        let defaults = ConnectionLimits::default();
        let max_connections = self
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections);
        if max_connections == 0 {
            return Err(ConfigError::new(
                "max_connections",
                "max-connections",
                "the server must hold at least one connection",
            ));
        }
        let limits = ConnectionLimits {
            max_connections,
            drain_timeout: self
                .shutdown_drain_secs
                .or(file.shutdown_drain_secs)
                .map_or(defaults.drain_timeout, Duration::from_secs),
        };
        let admin_text = self
            .admin_listen
            .or(file.admin_listen.clone())
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
        let admin_listen = parse_listen(&admin_text, "admin_listen", "admin-listen")?;
        let query_memory_limit = match self
            .query_memory_mb
            .or(file.query_memory_mb)
            .unwrap_or(DEFAULT_QUERY_MEMORY_MB)
        {
            0 => None,
            mib => Some(
                mib.checked_mul(1 << 20)
                    .and_then(|bytes| usize::try_from(bytes).ok())
                    .ok_or_else(|| {
                        ConfigError::new("query_memory_mb", "query-memory-mb", "too large")
                    })?,
            ),
        };
        let query_log = self.query_log.or(file.query_log).unwrap_or_default();
        let idle_poll = self
            .idle_poll_micros
            .or(file.idle_poll_micros)
            .map_or(DEFAULT_IDLE_POLL, Duration::from_micros);
        Ok(ServeConfig {
            listen,
            idle_poll,
            admin_listen,
            query_memory_limit,
            query_log,
            limits,
            security: self.security.resolve(&file, embedded)?,
            caches: self.caches.resolve(&file)?,
            compaction: self.compaction.resolve(&file)?,
            storage: self.storage.resolve_with(file)?,
            demo_cells,
            metadata,
        })
    }
}

impl StorageArgs {
    /// The config file's settings (none without a file).
    fn file(&self) -> Result<FileSettings, ConfigError> {
        match &self.config {
            Some(path) => read_config_file(path),
            None => Ok(FileSettings::default()),
        }
    }

    /// Merges flags and environment over the config file over the defaults, and checks them.
    pub fn resolve(self) -> Result<StorageConfig, ConfigError> {
        let file = self.file()?;
        self.resolve_with(file)
    }

    /// The storage, and the compaction policy from `compaction` over the config file, checked.
    pub fn resolve_with_compaction(
        self,
        compaction: CompactionArgs,
    ) -> Result<(StorageConfig, CompactionPolicy), ConfigError> {
        let file = self.file()?;
        let compaction = compaction.resolve(&file)?;
        Ok((self.resolve_with(file)?, compaction))
    }

    fn resolve_with(self, file: FileSettings) -> Result<StorageConfig, ConfigError> {
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
        if data_dir.is_empty() {
            return Err(ConfigError::new(
                "data_dir",
                "data-dir",
                "the data folder must not be empty",
            ));
        }
        let s3 = file.s3;
        let defaults = RetrySettings::default();
        let seconds = |value: Option<u64>, default| value.map_or(default, Duration::from_secs);
        let millis = |value: Option<u64>, default| value.map_or(default, Duration::from_millis);
        let s3_settings = S3Settings {
            endpoint: self.s3_endpoint.or(s3.endpoint),
            region: self.s3_region.or(s3.region),
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key,
            session_token: s3.session_token,
            path_style: self.s3_path_style.or(s3.path_style).unwrap_or(false),
            retry: RetrySettings {
                max_retries: s3.max_retries.unwrap_or(defaults.max_retries),
                retry_timeout: seconds(s3.retry_timeout_secs, defaults.retry_timeout),
                initial_backoff: millis(s3.initial_backoff_ms, defaults.initial_backoff),
                max_backoff: millis(s3.max_backoff_ms, defaults.max_backoff),
                request_timeout: seconds(s3.request_timeout_secs, defaults.request_timeout),
                connect_timeout: seconds(s3.connect_timeout_secs, defaults.connect_timeout),
            },
        };
        StorageConfig::from_location(&data_dir, s3_settings)
            .map_err(|message| ConfigError::new("data_dir", "data-dir", message))
    }
}

fn read_config_file(path: &std::path::Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "config",
            "config",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            "config",
            "config",
            format!("{} is not valid: {e}", path.display()),
        )
    })
}

/// `text` as the address of the setting `setting` (flag `--flag`).
fn parse_listen(text: &str, setting: &str, flag: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |why: String| ConfigError::new(setting, flag, format!("{text:?} {why}"));
    text.to_socket_addrs()
        .map_err(|e| invalid(format!("is not a usable HOST:PORT ({e})")))?
        .next()
        .ok_or_else(|| invalid("resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            storage: StorageArgs {
                config,
                data_dir: None,
                s3_endpoint: None,
                s3_region: None,
                s3_path_style: None,
            },
            listen: listen.map(Into::into),
            demo_cells: None,
            no_ledger: false,
            metadata: None,
            metadata_pool_size: None,
            metadata_timeout_secs: None,
            caches: CacheArgs::default(),
            compaction: CompactionArgs::default(),
            security: SecurityArgs::default(),
            max_connections: None,
            shutdown_drain_secs: None,
            idle_poll_micros: None,
            admin_listen: None,
            query_memory_mb: None,
            query_log: None,
        }
    }

    #[test]
    fn trust_is_the_default_only_with_embedded_metadata() {
        let embedded = args(None, None).resolve().unwrap().security.server;
        assert_eq!(embedded.auth, AuthMethod::Trust);
        let mut postgres = args(None, None);
        postgres.metadata = Some("postgres://metadata@127.0.0.1:1/metadata".into());
        let postgres = postgres.resolve().unwrap().security.server;
        assert_eq!(postgres.auth, AuthMethod::ScramSha256);
        assert!(postgres.tls.is_none() && !postgres.tls_required);
        let mut md5 = args(None, None);
        md5.security.auth = Some("md5".into());
        let error = md5.resolve().unwrap_err().to_string();
        assert!(error.contains("`auth`") && error.contains("md5"), "{error}");
        let mut required = args(None, None);
        required.security.tls_required = Some(true);
        let error = required.resolve().unwrap_err().to_string();
        assert!(error.contains("no certificate"), "{error}");
        let mut half = args(None, None);
        half.security.tls_cert = Some("/nonexistent/cert.pem".into());
        let error = half.resolve().unwrap_err().to_string();
        assert!(error.contains("both a certificate"), "{error}");
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = args(None, None).resolve().unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(
            config.storage,
            StorageConfig::Local(PathBuf::from(DEFAULT_DATA_DIR))
        );
        assert_eq!(config.demo_cells, Some(DEFAULT_DEMO_CELLS));
        assert_eq!(config.idle_poll, DEFAULT_IDLE_POLL);
    }

    #[test]
    fn bad_listen_names_the_setting() {
        let error = args(Some("nowhere"), None)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--listen"), "{error}");
        assert!(error.contains("QUANTATOM_LISTEN"), "{error}");
        assert!(error.contains("\"nowhere\""), "{error}");
    }

    #[test]
    fn file_settings_sit_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ndemo_cells = 0\ndata_dir = \"/tmp/q\"\nidle_poll_micros = 0\n",
        )
        .unwrap();
        let from_file = args(None, Some(path.clone())).resolve().unwrap();
        assert_eq!(from_file.listen.port(), 7000);
        assert_eq!(from_file.idle_poll, Duration::ZERO);
        assert_eq!(from_file.demo_cells, None);
        assert_eq!(
            from_file.storage,
            StorageConfig::Local(PathBuf::from("/tmp/q"))
        );
        let flag_wins = args(Some("127.0.0.1:7001"), Some(path)).resolve().unwrap();
        assert_eq!(flag_wins.listen.port(), 7001);
    }

    #[test]
    fn retentions_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("7").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("7w").unwrap_err().contains("s, m, h or d"));
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn the_tile_cache_is_configured_from_flags_and_the_file() {
        assert_eq!(
            args(None, None).resolve().unwrap().caches,
            CacheConfig::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(
            &path,
            "tile_cache_mb = 0\ntile_cache_redis = \"redis://cache:6379\"\ntile_cache_ttl_secs = 60\n",
        )
        .unwrap();
        let mut flags = args(None, Some(path));
        flags.caches.tile_cache_redis_timeout_ms = Some(20);
        flags.caches.byte_cache_mb = Some(1);
        flags.caches.byte_cache_disk_dir = Some("/var/cache/quantatom".into());
        flags.caches.tile_cache_refresh_ms = Some(0);
        let caches = flags.resolve().unwrap().caches;
        assert_eq!(caches.bytes.memory_bytes, 1 << 20);
        assert_eq!(
            caches.bytes.disk,
            Some(DiskTierConfig {
                dir: "/var/cache/quantatom".into(),
                bytes: DEFAULT_BYTE_CACHE_DISK_MB << 20,
            })
        );
        let tiles = caches.tiles;
        assert_eq!(tiles.refresh_interval, None);
        assert_eq!(tiles.memory_bytes, 0);
        assert_eq!(tiles.ttl, Duration::from_secs(60));
        assert_eq!(
            tiles.redis,
            Some(RedisSettings {
                url: "redis://cache:6379".into(),
                timeout: Duration::from_millis(20),
            })
        );
        let mut bad = args(None, None);
        bad.caches.tile_cache_redis = Some("cache:6379".into());
        let error = bad.resolve().unwrap_err().to_string();
        assert!(error.contains("--tile-cache-redis"), "{error}");
    }

    #[test]
    fn the_compaction_policy_is_configured_from_flags_and_the_file() {
        assert_eq!(
            args(None, None).resolve().unwrap().compaction,
            CompactionPolicy::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(
            &path,
            "compact_after_files = 0
compacted_file_rows = 1000
small_file_mb = 2
",
        )
        .unwrap();
        let mut flags = args(None, Some(path.clone()));
        flags.compaction.compacted_file_rows = Some(500);
        let compaction = flags.resolve().unwrap().compaction;
        assert_eq!(
            compaction,
            CompactionPolicy {
                auto_compact_files: 0,
                compacted_file_rows: 500,
                small_file_bytes: 2 << 20,
                ..CompactionPolicy::default()
            }
        );
        let storage = StorageArgs {
            config: Some(path),
            data_dir: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
        };
        let (_, from_file) = storage
            .resolve_with_compaction(CompactionArgs::default())
            .unwrap();
        assert_eq!(from_file.compacted_file_rows, 1000);
        let mut bad = args(None, None);
        bad.compaction.compacted_file_rows = Some(0);
        let error = bad.resolve().unwrap_err().to_string();
        assert!(
            error.contains("--compacted-file-rows")
                && error.contains("QUANTATOM_COMPACTED_FILE_ROWS"),
            "{error}"
        );
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:7000\"\n").unwrap();
        let error = args(None, Some(path)).resolve().unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn a_bucket_is_configured_from_flags_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(
            &path,
            "data_dir = \"s3://plans/prod\"\n[s3]\nendpoint = \"http://file:9000\"\n\
             path_style = true\naccess_key_id = \"key\"\nmax_retries = 3\nconnect_timeout_secs = 2\n",
        )
        .unwrap();
        let mut flags = args(None, Some(path));
        flags.storage.s3_endpoint = Some("http://flag:9000".into());
        let StorageConfig::S3(s3) = flags.resolve().unwrap().storage else {
            panic!("a bucket");
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("plans", "prod"));
        assert_eq!(s3.settings.endpoint.as_deref(), Some("http://flag:9000"));
        assert!(s3.settings.path_style);
        assert_eq!(s3.settings.access_key_id.as_deref(), Some("key"));
        assert_eq!(s3.settings.retry.max_retries, 3);
        assert_eq!(s3.settings.retry.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            s3.settings.retry.max_backoff,
            RetrySettings::default().max_backoff
        );
    }
}
