//! Running SQL in a new session of an engine, for the tests.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};

/// An engine over `dir` (a local folder), the demo model of `cells` cells written on first
/// open, with the ledger and the default caches.
pub async fn demo_engine(dir: &std::path::Path, cells: usize) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(dir.to_owned()),
        demo_cells: Some(cells),
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
    })
    .await
    .expect("engine opens")
}

/// The batches `sql` returns in a new session of `engine`.
pub async fn run(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    engine
        .new_session()
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

/// The rows `sql` returns, as a table, in a new session of `engine` after `settings` (`SET`
/// statements).
pub async fn shown_after(engine: &Engine, settings: &[&str], sql: &str) -> String {
    let session = engine.new_session();
    for setting in settings {
        session.sql(setting).await.unwrap().collect().await.unwrap();
    }
    let batches = session.sql(sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

/// Cells read as they are, not from summaries: for tests of reading cells.
pub const CELLS_ONLY: &str = "SET quantatom.summaries = false";

/// The rows `sql` returns, as a table.
pub async fn shown(engine: &Engine, sql: &str) -> String {
    pretty_format_batches(&run(engine, sql).await)
        .unwrap()
        .to_string()
}

/// The count a `SELECT count(*) ...` answers.
pub async fn count(engine: &Engine, sql: &str) -> i64 {
    run(engine, sql).await[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

/// `tier`'s `counter` in `system.cache`.
pub async fn cache_counter(engine: &Engine, tier: &str, counter: &str) -> i64 {
    count(
        engine,
        &format!("SELECT {counter} FROM system.cache WHERE tier = '{tier}'"),
    )
    .await
}
