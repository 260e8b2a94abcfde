//! The engine over a bucket of a real S3-compatible server (started by `scripts/test`, reached
//! through the `AWS_*` variables): the demo is written there on first start, DataFusion's
//! Parquet scan reads it through the store, and a second engine over the same bucket (another
//! replica) sees the first one's commits on its next query; the ledger both keep in the bucket
//! is one intact chain. The byte cache answers a repeated query's reads of data files without
//! a request to the bucket.

use quantatom_engine::storage::{
    ByteCacheConfig, DiskTierConfig, Operation, S3Settings, StorageConfig,
};
use quantatom_engine::tiles::TileCacheConfig;
use quantatom_engine::{CacheConfig, Engine, EngineConfig};

use crate::support::{cache_counter, count};

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

/// A new folder in the test bucket.
fn bucket_folder() -> StorageConfig {
    let bucket = std::env::var("QUANTATOM_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!("QUANTATOM_TEST_S3_BUCKET is not set: run ./scripts/test, which starts an S3-compatible server")
    });
    let location = format!("s3://{bucket}/engine-{}", uuid::Uuid::new_v4().simple());
    let settings = S3Settings {
        path_style: true,
        ..S3Settings::default()
    };
    StorageConfig::from_location(&location, settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_over_one_bucket_see_each_others_commits() {
    let config = EngineConfig {
        storage: bucket_folder(),
        demo_cells: Some(20_000),
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
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

/// The reads of objects (whole or in ranges) `engine`'s storage made so far that found one:
/// calls and bytes. Every query also looks for a log entry after the latest it knows, and
/// finds none when nothing was committed; that is not a read of data.
fn reads(engine: &Engine) -> (u64, u64) {
    let cube = engine.cubes().cube("finance").unwrap();
    let metrics = cube.storage().metrics();
    [Operation::Get, Operation::GetRanges]
        .into_iter()
        .map(|operation| metrics.of(operation))
        .fold((0, 0), |(calls, bytes), counts| {
            (calls + counts.calls - counts.errors, bytes + counts.bytes)
        })
}

/// The same grid query three times, without tiles: with the byte cache, the first run reads the
/// cube's data files from the bucket and the next ones issue no read at all; without it, every
/// run reads them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cache_answers_a_repeated_query_without_reading_the_bucket() {
    let grid = "SELECT f.account, sum(f.amount) FROM cube.finance f JOIN dim.entity e ON e.code = f.entity \
                WHERE e.path <@ 'Total.EMEA' AND f.version = 'Budget' GROUP BY f.account";
    let no_tiles = TileCacheConfig {
        memory_bytes: 0,
        ..TileCacheConfig::default()
    };
    let storage = bucket_folder();
    let open = |bytes: ByteCacheConfig| {
        let config = EngineConfig {
            storage: storage.clone(),
            demo_cells: Some(20_000),
            ledger: false,
            metadata: Default::default(),
            caches: CacheConfig {
                tiles: no_tiles.clone(),
                bytes,
                ..CacheConfig::default()
            },
            compaction: Default::default(),
        };
        async move { Engine::open(&config).await.unwrap() }
    };
    let cached = open(ByteCacheConfig::default()).await;
    let uncached = open(ByteCacheConfig {
        memory_bytes: 0,
        ..ByteCacheConfig::default()
    })
    .await;
    for (engine, name) in [(&cached, "cached"), (&uncached, "uncached")] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let before = reads(engine);
            count(engine, &format!("SELECT count(*) FROM ({grid})")).await;
            let after = reads(engine);
            runs.push((after.0 - before.0, after.1 - before.1));
        }
        eprintln!("{name}: reads (calls, bytes) per run: {runs:?}");
        assert!(runs[0].0 > 0, "{name}: the first run reads the bucket");
        if name == "cached" {
            assert_eq!(runs[1], (0, 0), "a warm run reads nothing from the bucket");
            assert_eq!(runs[2], (0, 0));
        } else {
            assert!(runs[1].0 > 0, "without the byte cache, every run reads");
        }
    }
}

/// A memory tier too small for a block: blocks are kept on local disk, and a repeated query
/// reads them from there, not from the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cache_disk_tier_serves_blocks_memory_cannot_hold() {
    let disk = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        storage: bucket_folder(),
        demo_cells: Some(20_000),
        ledger: false,
        metadata: Default::default(),
        caches: CacheConfig {
            tiles: TileCacheConfig {
                memory_bytes: 0,
                ..TileCacheConfig::default()
            },
            // Blocks of 4 KiB, memory for about one: the cube's 67 KB file is 17 blocks.
            bytes: ByteCacheConfig {
                memory_bytes: 8192,
                block_bytes: 4096,
                disk: Some(DiskTierConfig {
                    dir: disk.path().to_owned(),
                    bytes: 64 << 20,
                }),
            },
            ..CacheConfig::default()
        },
        compaction: Default::default(),
    };
    let engine = Engine::open(&config).await.unwrap();
    // Reads every amount: more blocks than memory holds, so some come from the disk tier
    // (a query of a block or two could be served from memory alone, run after run).
    let grid = "SELECT count(DISTINCT amount) FROM cube.finance";
    let expected = count(&engine, grid).await;
    let started = std::time::Instant::now();
    loop {
        let before = reads(&engine);
        assert_eq!(count(&engine, grid).await, expected);
        let after = reads(&engine);
        if after == before && cache_counter(&engine, "bytes.disk", "hits").await > 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the blocks are read from the disk tier, not the bucket: {before:?} -> {after:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(std::fs::read_dir(disk.path()).unwrap().next().is_some());
}
