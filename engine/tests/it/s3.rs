//! The engine over a bucket of a real S3-compatible server (started by `scripts/test`, reached
//! through the `AWS_*` variables): the demo is written there on first start, DataFusion's
//! Parquet scan reads it through the store, and a second engine over the same bucket (another
//! replica) sees the first one's commits on its next query; the ledger both keep in the bucket
//! is one intact chain.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use quantatom_engine::storage::{S3Settings, StorageConfig};
use quantatom_engine::{Engine, EngineConfig};

/// The count a `SELECT count(*) ...` answers in a new session of `engine`.
async fn count(engine: &Engine, sql: &str) -> i64 {
    let batches = engine
        .new_session()
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

async fn cells(engine: &Engine) -> i64 {
    count(engine, "SELECT count(*) FROM cube.finance").await
}

/// Writes one cell of Budget, `time`, `entity` through a new session of `engine`.
async fn write(engine: &Engine, time: &str, entity: &str) {
    engine
        .new_session()
        .sql(&format!("INSERT INTO cube.finance VALUES ('Budget', '{time}', '{entity}', '4000', 'P0001', 'USD', 1.00)"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_over_one_bucket_see_each_others_commits() {
    let bucket = std::env::var("QUANTATOM_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("QUANTATOM_TEST_S3_BUCKET is not set: run ./scripts/test, which starts an S3-compatible server")
    });
    let location = format!("s3://{bucket}/engine-{}", uuid::Uuid::new_v4().simple());
    let settings = S3Settings {
        path_style: true,
        ..S3Settings::default()
    };
    let config = EngineConfig {
        storage: StorageConfig::from_location(&location, settings).unwrap(),
        demo_cells: Some(20_000),
        ledger: true,
        metadata: Default::default(),
        tiles: Default::default(),
    };
    let first = Engine::open(&config)
        .await
        .expect("the demo is written to the bucket");
    let demo = cells(&first).await;
    assert!(demo > 10_000, "the demo's cells are read back: {demo}");
    let second = Engine::open(&config).await.unwrap();
    assert_eq!(cells(&second).await, demo, "the second start loads no demo");
    write(&first, "2025_01", "JP").await;
    assert_eq!(
        cells(&second).await,
        demo + 1,
        "the other replica sees the commit"
    );

    // Both replicas write at once; each ledgers its own commits and the other's on one
    // chain in the bucket, racing for the ledger's versions.
    tokio::join!(
        write(&first, "2025_02", "JP"),
        write(&second, "2025_02", "FR")
    );
    let ledgered = count(
        &second,
        "SELECT count(*) FROM audit.ledger WHERE source = 'cube/finance'",
    )
    .await;
    assert_eq!(ledgered, 4, "the demo load and three writes, each once");
    let verification = first
        .ledger()
        .unwrap()
        .verify(&first.cubes().all(), &first.new_session().state())
        .await
        .unwrap();
    assert_eq!(verification.broken, None);
    assert_eq!(verification.entries, 4);
}
