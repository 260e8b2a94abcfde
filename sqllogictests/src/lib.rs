//! Runs Quantatom's `.slt` suites (in `sqllogictests/slt/`) two ways with the same expected
//! answers: in-process against an engine session, and over the Postgres wire against a real
//! server with tokio-postgres. Values are rendered the way PostgreSQL's text format shows them
//! (`t`/`f`, `NULL`, `(empty)` for the empty string), so one file pins both paths.

mod in_process;
mod wire;

use std::path::{Path, PathBuf};

use datafusion::common::DataFusionError;
use quantatom_engine::metadata::PostgresStoreSettings;
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig, MetadataConfig};
use sqllogictest::{AsyncDB, MakeConnection, Runner};

pub use in_process::{InProcessDb, InProcessError};
pub use wire::{WireDb, WireError};

/// The demo size every suite runs against; documented answers assume it.
pub const SUITE_DEMO_CELLS: usize = 1_000_000;

/// How an absent value and an empty string are written in `.slt` files.
pub(crate) fn render_text(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some("") => "(empty)".to_owned(),
        Some(text) => text.to_owned(),
    }
}

/// An engine over a fresh data folder holding the demo model; the folder lives as long as this.
pub struct DemoEngine {
    /// The engine.
    pub engine: Engine,
    _data_dir: tempfile::TempDir,
}

impl DemoEngine {
    /// Generates the demo with `cells` cells in a temporary folder, its metadata in
    /// `metadata`, and opens it.
    pub async fn start(cells: usize, metadata: MetadataConfig) -> datafusion::common::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let config = EngineConfig {
            storage: StorageConfig::Local(data_dir.path().to_owned()),
            demo_cells: Some(cells),
            ledger: true,
            metadata,
            caches: Default::default(),
            compaction: Default::default(),
        };
        let engine = Engine::open(&config)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Self {
            engine,
            _data_dir: data_dir,
        })
    }
}

/// The variable naming the test PostgreSQL server (`scripts/test` starts one), as a URL
/// without a database: `postgres://USER@HOST:PORT`.
pub const TEST_POSTGRES_VARIABLE: &str = "QUANTATOM_TEST_POSTGRES_URL";

/// A PostgreSQL metadata store in a new, empty database of the test server, so that tests do
/// not see each other's dimensions. Panics (the test fails, never skips) without the server.
pub async fn postgres_test_metadata() -> MetadataConfig {
    let server = std::env::var(TEST_POSTGRES_VARIABLE).unwrap_or_else(|_| {
        panic!("{TEST_POSTGRES_VARIABLE} is not set: run the tests with scripts/test, which starts PostgreSQL")
    });
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {server}: {e}"));
    tokio::spawn(connection);
    let database = format!("quantatom_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("the test PostgreSQL creates a database");
    MetadataConfig::Postgres(PostgresStoreSettings {
        url: format!("{server}/{database}"),
        pool_size: 4,
        timeout: std::time::Duration::from_secs(10),
    })
}

/// Every `.slt` file of the suite, sorted.
///
/// The folder is found at run time (cargo and nextest set `CARGO_MANIFEST_DIR` for every test
/// they run), not baked in at compile time: the build cache is shared between checkouts, and a
/// binary built in one checkout must read the `.slt` files of the checkout that runs it.
pub fn suite_files() -> Vec<PathBuf> {
    let package = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test or cargo nextest");
    let dir = Path::new(&package).join("slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// Runs every file with connections from `connect`; returns one message per failing file.
pub async fn run_files<D, M>(files: &[PathBuf], mut connect: impl FnMut() -> M) -> Vec<String>
where
    D: AsyncDB,
    M: MakeConnection<Conn = D>,
{
    let mut failures = Vec::new();
    for file in files {
        let mut runner = Runner::new(connect());
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{}: {}", file.display(), error.display(true)));
        }
        runner.shutdown_async().await;
    }
    failures
}
