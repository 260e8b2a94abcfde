//! The cube scan is DataFusion's Parquet scan with projection, filter pushdown and pruning,
//! and appends are visible to the next query.

use datafusion::arrow::util::pretty::pretty_format_batches;
use quantatom_engine::Engine;

use crate::support::{self, CELLS_ONLY, shown, shown_after};

async fn demo_engine(dir: &tempfile::TempDir) -> Engine {
    support::demo_engine(dir.path(), 1_000_000).await
}

/// The plan of `sql` run, reading cells (not summaries).
async fn explain_analyze(engine: &Engine, sql: &str) -> String {
    shown_after(engine, &[CELLS_ONLY], &format!("EXPLAIN ANALYZE {sql}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_projects_pushes_filters_and_prunes_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(&dir).await;
    let plan = explain_analyze(
        &engine,
        "SELECT sum(amount) FROM cube.finance WHERE version = 'Actual' AND time = '2023_05'",
    )
    .await;
    assert!(
        plan.contains("DataSourceExec"),
        "DataFusion's own scan:\n{plan}"
    );
    assert!(
        plan.contains("projection=[amount]"),
        "only the needed column is read:\n{plan}"
    );
    assert!(
        plan.contains("predicate=version@0 = Actual AND time@1 = 2023_05"),
        "filter pushed into the scan:\n{plan}"
    );
    // 1,003,392 sorted cells in 16 row groups of 65,536 and granules of 8,192: the marks
    // select the two granules holding the version-month's 12,864 cells.
    assert!(
        plan.contains("row_groups_pruned_statistics=2 total → 2 matched"),
        "only the selected granules' row groups are read:\n{plan}"
    );
    assert!(
        plan.contains("pushdown_rows_matched=12.86 K, pushdown_rows_pruned=3.52 K"),
        "rows filtered in the decoder, two granules' worth:\n{plan}"
    );
}

/// The files' marks (docs/mdf.md, "Cells" and "Pruning") narrow a point query to the one
/// granule of 8,192 rows that can hold its cell, which one partition opens: Parquet's own
/// statistics keep 2 row groups of 65,536 and the page index some 16,000 rows, since a
/// row group running from one entity into the next spans every account in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_narrow_a_point_query_to_one_granule() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(&dir).await;
    let point = "SELECT amount FROM cube.finance WHERE version = 'Budget' AND time = '2025_01' \
                 AND entity = 'DE' AND account = '4000' AND product = 'P0001' AND currency = 'EUR'";
    let plan = explain_analyze(&engine, point).await;
    assert!(
        plan.contains("files_opened=1,"),
        "one partition reads:\n{plan}"
    );
    assert!(
        plan.contains("pushdown_rows_matched=1, pushdown_rows_pruned=8.19 K"),
        "the decoder filters one granule:\n{plan}"
    );
    assert_eq!(
        shown(&engine, point).await,
        shown(
            &engine,
            "SELECT amount FROM cube.finance WHERE concat(version, time, entity, account, product, currency) = 'Budget2025_01DE4000P0001EUR'"
        )
        .await,
        "the same cell as a scan no filter can prune"
    );
}

/// A join to a filtered dimension prunes the cube's scan twice. When the query is planned,
/// the dimension side is run and its members are handed to the cube's scan, whose marks
/// select the granules they can be in, and to the Parquet scan as `IN (...)`, which prunes
/// pages of those granules by their statistics; the join then needs no dynamic filter
/// (engine/src/cube_joins.rs, docs/mdf.md "Pruning").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_to_a_filtered_dimension_prunes_by_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(&dir).await;
    let plan = explain_analyze(
        &engine,
        "SELECT sum(f.amount) FROM cube.finance f JOIN dim.time t ON t.code = f.time WHERE t.path <@ 'FY2025.2025_Q1'",
    )
    .await;
    assert!(
        plan.contains("row_groups_pruned_statistics=7 total → 7 matched"),
        "the members' granules lie in 7 of the 16 row groups:\n{plan}"
    );
    assert!(
        plan.contains("predicate=time@1 IN (SET) ([2025_01, 2025_02, 2025_03, 2025_Q1])"),
        "the dimension's members are pushed into the cube's scan:\n{plan}"
    );
    assert!(
        !plan.contains("DynamicFilter"),
        "and the join adds no dynamic filter:\n{plan}"
    );
    assert!(
        plan.contains("page_index_pages_pruned=56 total → 23 matched"),
        "and prunes 33 of their 56 pages:\n{plan}"
    );
    let same = shown(
        &engine,
        "SELECT CAST(sum(f.amount) = (SELECT sum(amount) FROM cube.finance WHERE time IN ('2025_01', '2025_02', '2025_03')) AS VARCHAR) FROM cube.finance f JOIN dim.time t ON t.code = f.time WHERE t.path <@ 'FY2025.2025_Q1'",
    )
    .await;
    assert!(same.contains("true"), "and the answer is the quarter's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_appends_a_file_and_the_next_query_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = demo_engine(&dir).await;
    let session = engine.new_session();
    let count = |sql: &'static str| {
        let session = session.clone();
        async move {
            let batches = session.sql(sql).await.unwrap().collect().await.unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        }
    };
    // A new version to write to: cells sit on members.
    count("INSERT INTO dim.version (code, name) VALUES ('Plan2', 'Plan 2')").await;
    let inserted = count("INSERT INTO cube.finance VALUES ('Plan2', '2025_01', 'DE', '4000', 'P0001', 'EUR', 10), ('Plan2', '2025_01', 'FR', '4000', 'P0001', 'EUR', 32.5)").await;
    assert!(
        inserted.contains("| 2     |"),
        "insert reports two rows:\n{inserted}"
    );
    let total = count(
        "SELECT count(*) AS cells, sum(amount) AS amount FROM cube.finance WHERE version = 'Plan2'",
    )
    .await;
    assert!(
        total.contains("| 2     | 42.50  |"),
        "both cells visible:\n{total}"
    );
    let files = |folder: &str| {
        std::fs::read_dir(dir.path().join("cubes/finance").join(folder))
            .unwrap()
            .count()
    };
    assert_eq!(
        (files("data"), files("summaries"), files("_log")),
        (2, 1, 3),
        "one more data file (too small for a summary; the demo's has one) and one more log entry"
    );

    let reopened = demo_engine(&dir).await;
    let after_restart = reopened
        .new_session()
        .sql("SELECT count(*) FROM cube.finance")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = pretty_format_batches(&after_restart).unwrap().to_string();
    assert!(
        text.contains("| 1003394  |"),
        "a reopened data folder keeps every cell and loads no second demo:\n{text}"
    );
}

/// A server reads the footers of every cube's data files when it starts
/// ([`Engine::load_footers`], docs/caching.md): in an engine opened afresh none is cached;
/// after loading, DataFusion's footer cache holds each file of each cube's latest snapshot
/// with its page index, which is what a first query's pruning would otherwise fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footers_are_loaded_with_their_page_indexes_before_a_first_query() {
    let dir = tempfile::tempdir().unwrap();
    drop(support::demo_engine(dir.path(), 100_000).await);
    let engine = support::demo_engine(dir.path(), 100_000).await;
    let mut paths = Vec::new();
    for cube in engine.cubes().all() {
        let snapshot = cube.log().latest().await.unwrap();
        let folder = cube.log().cube_dir().clone();
        paths.extend((snapshot.files.iter()).map(|file| format!("{folder}/{}", file.path)));
    }
    let state = engine.session_state();
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let page_indexes = || {
        let entries = cache.list_entries();
        (paths.iter())
            .map(|path| {
                let entry = entries.get(&object_store::path::Path::from(path.as_str()));
                entry.map(|entry| entry.value.file_metadata.extra_info()["page_index"].clone())
            })
            .collect::<Vec<_>>()
    };
    assert!(!paths.is_empty(), "the demo cube has data files");
    assert!(
        page_indexes().iter().all(Option::is_none),
        "a new engine holds no footer"
    );

    let loaded = engine.load_footers().await.unwrap();
    assert_eq!(loaded.cubes, engine.cubes().all().len());
    assert_eq!(loaded.files, paths.len());
    assert!(
        page_indexes()
            .iter()
            .all(|page_index| page_index.as_deref() == Some("true")),
        "every footer is cached with its page index: {:?}",
        page_indexes()
    );
}
