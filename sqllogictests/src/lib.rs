//! Runs Quantatom's `.slt` suites (in `sqllogictests/slt/`) two ways with the same expected
//! answers: in-process against an engine session, and over the Postgres wire against a real
//! server with tokio-postgres. Values are rendered the way PostgreSQL's text format shows them
//! (`t`/`f`, `NULL`, `(empty)` for the empty string), so one file pins both paths.

mod in_process;
mod wire;

use std::path::{Path, PathBuf};

use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};
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
    /// Generates the demo with `cells` cells in a temporary folder and opens it.
    pub async fn start(cells: usize) -> datafusion::common::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let config = EngineConfig {
            storage: StorageConfig::Local(data_dir.path().to_owned()),
            demo_cells: Some(cells),
        };
        let engine = Engine::open(&config).await?;
        Ok(Self {
            engine,
            _data_dir: data_dir,
        })
    }
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
