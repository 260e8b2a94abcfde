//! `quantatom compact` and `quantatom vacuum`, run as a user runs them, on a data folder.

use std::process::Output;

use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};

use crate::support::{TEST_DEMO_CELLS, demo_engine};

async fn quantatom(args: &[&str], data_dir: &std::path::Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_quantatom"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("QUANTATOM_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

/// An engine over the cubes in `data_dir`, loading no demo.
async fn open_engine(data_dir: &std::path::Path) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(data_dir.to_owned()),
        demo_cells: None,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
    })
    .await
    .unwrap()
}

/// The cube's live files and the sum of its cells.
async fn files_and_total(data_dir: &std::path::Path) -> (usize, String) {
    let engine = open_engine(data_dir).await;
    let files = engine
        .cubes()
        .cube("finance")
        .unwrap()
        .log()
        .latest()
        .await
        .unwrap()
        .files
        .len();
    let total = engine
        .new_session()
        .sql("SELECT CAST(sum(amount) AS VARCHAR) AS total, count(*) AS cells FROM cube.finance")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let total = datafusion::arrow::util::pretty::pretty_format_batches(&total)
        .unwrap()
        .to_string();
    (files, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_and_vacuum_from_the_command_line() {
    let data_dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(data_dir.path()).await;
    engine
        .new_session()
        .sql("UPDATE cube.finance SET amount = amount + 1 WHERE version = 'Budget' AND time = '2025_01'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    drop(engine);
    let (files, total) = files_and_total(data_dir.path()).await;
    assert_eq!(files, 2, "the demo's file and the update's");

    let compacted = quantatom(&["compact", "--cube", "finance"], data_dir.path()).await;
    let stdout = String::from_utf8_lossy(&compacted.stdout);
    assert!(
        compacted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&compacted.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "compacted cube finance: 2 files into 1, {TEST_DEMO_CELLS} cells"
        )),
        "{stdout}"
    );
    assert_eq!(
        files_and_total(data_dir.path()).await,
        (1, total.clone()),
        "one file, the same cells"
    );

    let kept = quantatom(&["vacuum", "--cube", "finance"], data_dir.path()).await;
    let stdout = String::from_utf8_lossy(&kept.stdout);
    assert!(
        stdout.contains("deleted 0 files"),
        "within 7 days: {stdout}"
    );
    let vacuumed = quantatom(
        &["vacuum", "--cube", "finance", "--retention", "0s"],
        data_dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&vacuumed.stdout);
    assert!(vacuumed.status.success(), "{stdout}");
    assert!(
        stdout.contains("deleted 3 files"),
        "the replaced files go, the demo's with its summary: {stdout}"
    );
    assert_eq!(files_and_total(data_dir.path()).await, (1, total));
    let stored = |folder: &str| -> Vec<String> {
        let folder = data_dir.path().join("cubes/finance").join(folder);
        let entries = std::fs::read_dir(folder).unwrap();
        entries
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let data = stored("data");
    assert_eq!(data.len(), 1, "the compacted file: {data:?}");
    assert_eq!(
        stored("summaries"),
        data,
        "and its summary, of the same name"
    );
    let before_compaction = open_engine(data_dir.path())
        .await
        .new_session()
        .sql("SELECT count(*) FROM mdf_at('cube.finance', 2)")
        .await
        .unwrap()
        .collect()
        .await
        .expect_err("version 2's files are gone");
    assert_eq!(
        quantatom_engine::sqlstate(&before_compaction),
        Some("72000"),
        "{before_compaction}"
    );
    assert!(
        before_compaction.to_string().contains(
            "version 2 of cube finance can no longer be read: vacuum removed its data file"
        ),
        "{before_compaction}"
    );

    let unknown = quantatom(&["compact", "--cube", "nothing"], data_dir.path()).await;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("there is no cube \"nothing\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_an_unreachable_metadata_store_fails_fast_naming_the_setting() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_quantatom"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--demo-cells", "0"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args([
            "--metadata",
            "postgres://quantatom:secret@127.0.0.1:1/metadata",
        ])
        .args(["--metadata-timeout-secs", "2"])
        .env("QUANTATOM_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot open the metadata store (setting `metadata`)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "no password in messages: {stderr}"
    );
}
