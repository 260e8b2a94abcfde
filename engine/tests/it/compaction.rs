//! The compaction policy an engine is configured with.

use std::time::Duration;

use quantatom_engine::mdf::maintenance::CompactionPolicy;
use quantatom_engine::mdf::{CubeDefinition, Measure};
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};

use crate::support::{count, run};

/// Every cube, those opened and those created later, is compacted by the configured policy:
/// with background compactions due at 2 files, two inserts into the demo cube (one file) are
/// folded without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_policy_compacts_every_cube() {
    let dir = tempfile::tempdir().unwrap();
    let policy = CompactionPolicy {
        auto_compact_files: 2,
        compacted_file_rows: 100_000,
        ..CompactionPolicy::default()
    };
    let engine = Engine::open(&EngineConfig {
        storage: StorageConfig::Local(dir.path().to_owned()),
        demo_cells: Some(2_000),
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: policy,
    })
    .await
    .expect("engine opens");
    engine
        .cubes()
        .create_cube(CubeDefinition {
            name: "plan".into(),
            dimensions: vec!["entity".into()],
            measures: vec![Measure {
                name: "amount".into(),
                precision: 18,
                scale: 2,
            }],
        })
        .await
        .expect("cube created");
    let cubes = engine.cubes().all();
    assert_eq!(cubes.len(), 2, "the demo cube and the new one");
    for cube in &cubes {
        assert_eq!(cube.compaction_policy(), &policy);
    }

    for time in ["2025_01", "2025_02"] {
        run(
            &engine,
            &format!("INSERT INTO cube.finance VALUES ('Budget', '{time}', 'DE', '4000', 'P0001', 'EUR', 1)"),
        )
        .await;
    }
    let compactions =
        "SELECT count(*) FROM mdf_history('cube.finance') WHERE operation = 'compact'";
    let mut waited = Duration::ZERO;
    while count(&engine, compactions).await == 0 {
        assert!(waited < Duration::from_secs(30), "no background compaction");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(
        count(&engine, "SELECT count(*) FROM cube.finance WHERE version = 'Budget' AND time IN ('2025_01', '2025_02') AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'").await,
        2
    );
}
