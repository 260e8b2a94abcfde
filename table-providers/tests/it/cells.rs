//! Latest write wins: overwrites from many writers while compactions run lose nothing, and a
//! write that read an old version fails with 40001 when a later commit touched its cells.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Decimal128Array, RecordBatch, StringViewArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use quantatom_table_providers::mdf::dml::CubeDmlRule;
use quantatom_table_providers::mdf::maintenance::{
    AUTO_COMPACT_FILES, CompactionPolicy, CompactionReport, CompactionScope, compact,
    due_compaction,
};
use quantatom_table_providers::mdf::{
    CommitOperation, CubeDefinition, FileKind, MdfError, MdfTable, Measure,
};

use crate::support::{Backend, backends, local};

const WRITERS: usize = 8;
const ROUNDS: usize = 5;
const CELLS_PER_WRITER: usize = 5;

fn cube() -> CubeDefinition {
    CubeDefinition {
        name: "plan".into(),
        dimensions: vec!["writer".into(), "cell".into()],
        measures: vec![Measure {
            name: "amount".into(),
            precision: 18,
            scale: 0,
        }],
    }
}

/// Cells `(writer, cell)` with `amount`.
fn cells(table: &MdfTable, rows: &[(String, String, i128)]) -> RecordBatch {
    RecordBatch::try_new(
        TableProvider::schema(table),
        vec![
            Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| &r.1))),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| r.2))
                    .with_precision_and_scale(18, 0)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

/// A writer's cells, all set to `amount`.
fn round(table: &MdfTable, writer: usize, amount: usize) -> RecordBatch {
    let rows: Vec<_> = (0..CELLS_PER_WRITER)
        .map(|cell| (format!("w{writer}"), format!("c{cell}"), amount as i128))
        .collect();
    cells(table, &rows)
}

/// Writers `w00`..`w63`, each with cells `c0000`..`c1023`, all amounts different (so the
/// file is not small): eight granules of marks.
fn large_base() -> Vec<(String, String, i128)> {
    (0..64)
        .flat_map(|writer| {
            (0..1024).map(move |cell| {
                let amount = 1000 + writer * 1024 + cell;
                (
                    format!("w{writer:02}"),
                    format!("c{cell:04}"),
                    amount as i128,
                )
            })
        })
        .collect()
}

/// One-cell appends, one commit each.
async fn edit(table: &MdfTable, edits: &[(&str, &str, i128)]) {
    for (writer, cell, amount) in edits {
        let row = [(writer.to_string(), cell.to_string(), *amount)];
        table.append(&[cells(table, &row)]).await.unwrap();
    }
}

/// The cube's files, as `(path, kind is cells, seq)`.
async fn files(table: &MdfTable) -> Vec<(String, bool, u64)> {
    let snapshot = table.log().latest().await.unwrap();
    snapshot
        .files
        .iter()
        .map(|file| {
            (
                file.path.clone(),
                file.kind == FileKind::Cells,
                file.sequence().0,
            )
        })
        .collect()
}

async fn minor_then_full_compactions(backend: Backend) {
    let name = backend.name;
    let policy = CompactionPolicy {
        small_file_bytes: 16 * 1024,
        auto_compact_files: 8,
        minor_rows: 1000,
        contested_share: 4,
        ..CompactionPolicy::default()
    };
    let (table, context) = new_cube_compacted_by(&backend, policy).await;
    table.append(&[cells(&table, &large_base())]).await.unwrap();
    let base = files(&table).await;
    let size = table
        .log()
        .latest()
        .await
        .unwrap()
        .files
        .iter()
        .next()
        .unwrap()
        .size;
    assert!(
        size >= policy.small_file_bytes,
        "{name}: the base file is large ({size} bytes)"
    );

    // Edits of one writer's cells: overwrites, deletes (one cell written again), a new cell.
    let mut expected: std::collections::BTreeMap<(String, String), i128> = large_base()
        .into_iter()
        .map(|(writer, cell, amount)| ((writer, cell), amount))
        .collect();
    for cell in ["c0010", "c0011", "c0012"] {
        let delete = format!("DELETE FROM plan WHERE writer = 'w03' AND cell = '{cell}'");
        context.sql(&delete).await.unwrap().collect().await.unwrap();
        expected.remove(&("w03".to_owned(), cell.to_owned()));
    }
    let overwrites: Vec<(String, i128)> = (0..10)
        .map(|cell| (format!("c{cell:04}"), 100 + cell as i128))
        .collect();
    let mut edits: Vec<(&str, &str, i128)> = overwrites
        .iter()
        .map(|(cell, amount)| ("w03", cell.as_str(), *amount))
        .collect();
    edits.push(("w03", "c0011", 7));
    edits.push(("w03", "c5000", 9));
    edit(&table, &edits).await;
    for (writer, cell, amount) in &edits {
        expected.insert((writer.to_string(), cell.to_string()), *amount);
    }
    let grid_of = |expected: &std::collections::BTreeMap<(String, String), i128>| -> Vec<_> {
        expected
            .iter()
            .map(|((writer, cell), amount)| (writer.clone(), cell.clone(), 1, *amount))
            .collect()
    };

    // Few of the base's rows are contested: the background compaction is minor.
    let snapshot = table.log().latest().await.unwrap();
    let newest = snapshot.version.0;
    let due = due_compaction(&table, &context.state(), &snapshot)
        .await
        .unwrap();
    assert_eq!(due, Some(CompactionScope::Minor), "{name}");
    let report = compact(
        &table,
        &context.state(),
        CompactionScope::Minor,
        None,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (report.files_removed, report.files_added),
        (15, 2),
        "{name}: {report:?}"
    );
    let after = files(&table).await;
    assert_eq!(
        after[0], base[0],
        "{name}: the large file is left as it was"
    );
    assert_eq!(
        after[1..]
            .iter()
            .map(|(_, cells, seq)| (*cells, *seq))
            .collect::<Vec<_>>(),
        [(true, newest), (false, newest)],
        "{name}: one file of cells and one of tombstones, with the newest seq folded"
    );
    assert_eq!(
        grid(&context).await,
        grid_of(&expected),
        "{name}: the same cells after a minor compaction"
    );

    // Edits all over the cube: most of the base would be contested, so the compaction is full.
    let scattered: Vec<String> = (0..64)
        .step_by(8)
        .map(|writer| format!("w{writer:02}"))
        .collect();
    let edits: Vec<(&str, &str, i128)> = scattered
        .iter()
        .map(|writer| (writer.as_str(), "c0500", 5))
        .collect();
    edit(&table, &edits).await;
    for (writer, cell, amount) in &edits {
        expected.insert((writer.to_string(), cell.to_string()), *amount);
    }
    let snapshot = table.log().latest().await.unwrap();
    let due = due_compaction(&table, &context.state(), &snapshot)
        .await
        .unwrap();
    assert_eq!(due, Some(CompactionScope::Full), "{name}");
    compact_fully(&table, &context.state()).await;
    let after = files(&table).await;
    assert_eq!(after.len(), 1, "{name}: {after:?}");
    assert!(after[0].1, "{name}: no tombstones are left");
    assert_eq!(
        grid(&context).await,
        grid_of(&expected),
        "{name}: the same cells after a full compaction"
    );
}

/// A large cube's recent edits are folded by minor compactions, which leave its large file
/// alone and keep tombstones, until edits all over it make the background compaction full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minor_compactions_fold_recent_edits_and_full_ones_the_rest() {
    for backend in backends() {
        minor_then_full_compactions(backend).await;
    }
}

/// The files one full compaction writes share a `seq`: their bounds meet (each covers every
/// cell of its writers), but they never share a coordinate, so reads do not merge them and a
/// later compaction leaves them alone.
#[tokio::test]
async fn the_files_of_one_compaction_are_not_merged_on_read() {
    let backend = local();
    let policy = CompactionPolicy {
        small_file_bytes: 0,
        compacted_file_rows: 10_000,
        ..CompactionPolicy::default()
    };
    let (table, context) = new_cube_compacted_by(&backend, policy).await;
    // 64 writers of 1,000 cells, written as even cells, then odd ones: two files whose
    // bounds meet, so they are merged on read. Compacted, they are cut inside a writer's cells
    // (every 16,384 rows), so the bounds of neighbouring files meet too.
    let base: Vec<_> = (0..64)
        .flat_map(|writer| {
            (0..1000).map(move |cell| {
                let amount = (writer * 1000 + cell) as i128;
                (format!("w{writer:02}"), format!("c{cell:04}"), amount)
            })
        })
        .collect();
    for parity in [0, 1] {
        let half: Vec<_> = base.iter().skip(parity).step_by(2).cloned().collect();
        table.append(&[cells(&table, &half)]).await.unwrap();
    }
    let plan = |context: SessionContext| async move {
        let explained = context
            .sql("EXPLAIN SELECT sum(amount) FROM plan")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        format!(
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&explained).unwrap()
        )
    };
    assert!(
        plan(context.clone()).await.contains("__mdf_rank"),
        "the two halves are merged"
    );
    let report = compact_fully(&table, &context.state()).await;
    // Files are cut at the first batch past 10,000 rows.
    assert!(
        report.files_removed == 2 && report.files_added >= 3,
        "{report:?}"
    );
    let merged = plan(context.clone()).await;
    assert!(
        !merged.contains("__mdf_rank"),
        "the compacted files are read as they are: {merged}"
    );
    let expected: Vec<_> = base
        .into_iter()
        .map(|(writer, cell, amount)| (writer, cell, 1, amount))
        .collect();
    assert_eq!(grid(&context).await, expected);
    let again = compact_fully(&table, &context.state()).await;
    assert_eq!(again.version, None, "nothing left to compact: {again:?}");
}

/// Edits waiting beside a large file are merged on read only where a query meets them: a
/// query elsewhere reads the file as it is, one that meets them ranks only the rows of the
/// granules the edits touch, and every answer is the latest write of each cell.
#[tokio::test]
async fn edits_beside_a_large_file_are_merged_only_where_a_query_meets_them() {
    let backend = local();
    let policy = CompactionPolicy {
        auto_compact_files: 1000,
        ..CompactionPolicy::default()
    };
    let (table, context) = new_cube_compacted_by(&backend, policy).await;
    table.append(&[cells(&table, &large_base())]).await.unwrap();
    let mut expected: std::collections::BTreeMap<(String, String), i128> = large_base()
        .into_iter()
        .map(|(writer, cell, amount)| ((writer, cell), amount))
        .collect();
    // One cell written twice, a new cell, a deleted one, and a file of two cells whose
    // bounds hold seven more of the base's.
    let edits = [
        ("w03", "c0005", 1),
        ("w03", "c0005", 2),
        ("w03", "c9999", 3),
        ("w40", "c0100", 4),
    ];
    edit(&table, &edits).await;
    for (writer, cell, amount) in edits {
        expected.insert((writer.to_owned(), cell.to_owned()), amount);
    }
    let delete = "DELETE FROM plan WHERE writer = 'w40' AND cell = 'c0101'";
    context.sql(delete).await.unwrap().collect().await.unwrap();
    expected.remove(&("w40".to_owned(), "c0101".to_owned()));
    let corners = [
        ("w10".to_owned(), "c0000".to_owned(), 5),
        ("w12".to_owned(), "c0002".to_owned(), 6),
    ];
    table.append(&[cells(&table, &corners)]).await.unwrap();
    for (writer, cell, amount) in corners {
        expected.insert((writer, cell), amount);
    }

    let expect = |keep: &dyn Fn(&str, &str) -> bool| -> Vec<(String, String, i64, i128)> {
        (expected.iter())
            .filter(|((writer, cell), _)| keep(writer, cell))
            .map(|((writer, cell), amount)| (writer.clone(), cell.clone(), 1, *amount))
            .collect()
    };
    let (untouched, read) = grid_where(&context, "writer = 'w20'").await;
    assert_eq!(untouched, expect(&|writer, _| writer == "w20"));
    let plain = ReadFacts {
        scans: 1,
        ranked: 0,
    };
    assert_eq!(
        read, plain,
        "no edit is where w20 is: the base is read as it is"
    );
    let (point, read) = grid_where(&context, "writer = 'w03' AND cell = 'c0005'").await;
    assert_eq!(point, expect(&|w, c| (w, c) == ("w03", "c0005")));
    assert_eq!(
        read.ranked, 3,
        "the cell's three writes are ranked, and only they"
    );
    let (all, read) = grid_where(&context, "true").await;
    assert_eq!(all, expect(&|_, _| true));
    // The boxes the edits share with the base are merged where that reads no more granules:
    // w03/c0005 with the 3 x 3 cells from w10/c0000 to w12/c0002 (granules 0 and 1 either
    // way) into w03..w12 x c0000..c0005, and w40/c0100 with w40/c0101 (granule 5); not the
    // two hulls (granules 0 to 5). Ranked: the base's 10 x 6 + 2 cells in them, and the
    // edits' six rows (w03/c9999 is outside the base's bounds: read as it is). However many
    // files, at most four scans: files as they are, the base's rows around the boxes, and
    // the contested rows of the edits and of the base.
    assert_eq!(
        read,
        ReadFacts {
            scans: 4,
            ranked: 68
        }
    );
    let (some, _) = grid_where(
        &context,
        "writer BETWEEN 'w03' AND 'w12' AND cell < 'c0003'",
    )
    .await;
    assert_eq!(
        some,
        expect(&|w, c| ("w03"..="w12").contains(&w) && c < "c0003")
    );
}

/// A full compaction of `table`, planned in `state`.
async fn compact_fully(table: &MdfTable, state: &SessionState) -> CompactionReport {
    compact(table, state, CompactionScope::Full, None, &|_| {})
        .await
        .unwrap()
}

/// A session over `table` (as `plan`) that plans UPDATE and DELETE as the engine does.
fn session(backend: &Backend, table: &Arc<MdfTable>) -> SessionContext {
    let context = SessionContext::new();
    context.add_analyzer_rule(Arc::new(CubeDmlRule));
    backend.storage.register(context.runtime_env().as_ref());
    context
        .register_table("plan", Arc::clone(table) as _)
        .unwrap();
    context
}

/// A new cube in `backend` compacted by `policy`, and a session over it.
async fn new_cube_compacted_by(
    backend: &Backend,
    policy: CompactionPolicy,
) -> (Arc<MdfTable>, SessionContext) {
    let table = MdfTable::create(backend.storage.clone(), cube())
        .await
        .unwrap()
        .with_compaction_policy(policy);
    let table = Arc::new(table);
    let context = session(backend, &table);
    (table, context)
}

/// A new cube in `backend` and a session over it.
async fn new_cube(backend: &Backend) -> (Arc<MdfTable>, SessionContext) {
    new_cube_compacted_by(backend, CompactionPolicy::default()).await
}

/// `(writer, cell, copies, amount)` per coordinate, in order.
async fn grid(context: &SessionContext) -> Vec<(String, String, i64, i128)> {
    grid_where(context, "true").await.0
}

/// `(writer, cell, copies, amount)` per coordinate passing `condition`, in order, and what
/// the read did.
async fn grid_where(
    context: &SessionContext,
    condition: &str,
) -> (Vec<(String, String, i64, i128)>, ReadFacts) {
    let query = format!(
        "SELECT writer, cell, count(*), max(amount) FROM plan WHERE {condition} \
         GROUP BY writer, cell ORDER BY writer, cell"
    );
    let plan = context
        .sql(&query)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let batches = collect(Arc::clone(&plan), context.task_ctx())
        .await
        .unwrap();
    (coordinates(&batches), ReadFacts::of(plan.as_ref()))
}

/// What an executed read did.
#[derive(Debug, Default, PartialEq)]
struct ReadFacts {
    /// Parquet scans in the plan.
    scans: usize,
    /// Rows ranked per coordinate (merged on read).
    ranked: usize,
}

impl ReadFacts {
    fn of(plan: &dyn ExecutionPlan) -> ReadFacts {
        let mut facts = ReadFacts::default();
        if plan.name() == "DataSourceExec" {
            facts.scans += 1;
        }
        if plan.name().contains("WindowAggExec") {
            facts.ranked += plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
        }
        for child in plan.children() {
            let theirs = ReadFacts::of(child.as_ref());
            facts.scans += theirs.scans;
            facts.ranked += theirs.ranked;
        }
        facts
    }
}

/// The rows of a [`grid_where`] answer.
fn coordinates(batches: &[RecordBatch]) -> Vec<(String, String, i64, i128)> {
    batches
        .iter()
        .flat_map(|batch| {
            (0..batch.num_rows()).map(move |row| {
                (
                    batch.column(0).as_string_view().value(row).to_owned(),
                    batch.column(1).as_string_view().value(row).to_owned(),
                    batch.column(2).as_primitive::<Int64Type>().value(row),
                    batch.column(3).as_primitive::<Decimal128Type>().value(row),
                )
            })
        })
        .collect()
}

async fn overwrites_during_compactions(backend: Backend) {
    let name = backend.name;
    let (table, context) = new_cube(&backend).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let table = Arc::clone(&table);
            tokio::spawn(async move {
                for amount in 0..ROUNDS {
                    table
                        .append(&[round(&table, writer, amount)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let compactor = {
        let table = Arc::clone(&table);
        let state = context.state();
        tokio::spawn(async move {
            let mut compactions = 0;
            for _ in 0..4 {
                let report = compact_fully(&table, &state).await;
                compactions += usize::from(report.version.is_some());
            }
            compactions
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let compactions = compactor.await.unwrap();
    let expected: Vec<_> = (0..WRITERS)
        .flat_map(|writer| {
            (0..CELLS_PER_WRITER).map(move |cell| {
                (
                    format!("w{writer}"),
                    format!("c{cell}"),
                    1,
                    (ROUNDS - 1) as i128,
                )
            })
        })
        .collect();
    assert_eq!(
        grid(&context).await,
        expected,
        "{name}: each cell once, at its last write ({compactions} compactions ran alongside)"
    );
    compact_fully(&table, &context.state()).await;
    assert_eq!(
        grid(&context).await,
        expected,
        "{name}: and after a final compaction"
    );
    // The last compaction may have had nothing left to do, when one alongside the writers
    // ran after their last commit.
    let snapshot = table.log().latest().await.unwrap();
    let files: Vec<u64> = snapshot.files.iter().map(|file| file.rows).collect();
    assert_eq!(
        files,
        [(WRITERS * CELLS_PER_WRITER) as u64],
        "{name}: compacted into one file of the live cells"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrites_from_many_writers_during_compactions_lose_nothing() {
    for backend in backends() {
        overwrites_during_compactions(backend).await;
    }
}

/// The SQLSTATE at the root of a failed statement.
fn sqlstate(error: &DataFusionError) -> Option<&'static str> {
    match error.find_root() {
        DataFusionError::External(inner) => {
            inner.downcast_ref::<MdfError>().map(MdfError::sqlstate)
        }
        _ => None,
    }
}

#[tokio::test]
async fn an_update_of_cells_committed_since_it_read_fails_with_40001() {
    let backend = local();
    let (table, context) = new_cube(&backend).await;
    for writer in 0..2 {
        table.append(&[round(&table, writer, 1)]).await.unwrap();
    }
    // Planned (and so read) before another writer's commit to the same cells.
    let update = context
        .sql("UPDATE plan SET amount = amount + 10 WHERE writer = 'w0'")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    table.append(&[round(&table, 0, 7)]).await.unwrap();
    let error = collect(update, context.task_ctx()).await.unwrap_err();
    assert_eq!(sqlstate(&error), Some("40001"), "{error}");
    assert!(error.to_string().contains("concurrent update"), "{error}");

    // A commit to other cells meanwhile is no conflict.
    let update = context
        .sql("DELETE FROM plan WHERE writer = 'w1' AND cell = 'c0'")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    table.append(&[round(&table, 5, 1)]).await.unwrap();
    collect(update, context.task_ctx()).await.unwrap();

    let seen = grid(&context).await;
    let amounts: Vec<(&str, &str, i128)> = seen
        .iter()
        .filter(|row| row.0 != "w5")
        .map(|row| (row.0.as_str(), row.1.as_str(), row.3))
        .collect();
    let mut expected: Vec<(&str, &str, i128)> = ["c0", "c1", "c2", "c3", "c4"]
        .map(|cell| ("w0", cell, 7))
        .to_vec();
    expected.extend(["c1", "c2", "c3", "c4"].map(|cell| ("w1", cell, 1)));
    assert_eq!(
        amounts, expected,
        "the refused update wrote nothing; the delete went through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_writes_are_compacted_in_the_background() {
    let backend = local();
    let (table, context) = new_cube(&backend).await;
    let writes = AUTO_COMPACT_FILES + 8;
    for n in 0..writes {
        let insert = format!("INSERT INTO plan VALUES ('w0', 'c{}', {n})", n % 10);
        context.sql(&insert).await.unwrap().collect().await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let compacted = loop {
        let snapshot = table.log().latest().await.unwrap();
        let compactions = snapshot
            .commits
            .iter()
            .filter(|commit| commit.operation == CommitOperation::Compact)
            .count();
        if compactions > 0 || std::time::Instant::now() > deadline {
            break (compactions, snapshot.files.len());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        compacted.0 > 0,
        "a writer compacted the cube: {compacted:?}"
    );
    assert!(
        compacted.1 < writes / 2,
        "{writes} one-cell writes left few files: {compacted:?}"
    );
    let expected: Vec<_> = (0..10)
        .map(|cell| {
            let last = (0..writes).filter(|n| n % 10 == cell).max().unwrap();
            ("w0".to_owned(), format!("c{cell}"), 1, last as i128)
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(
        grid(&context).await,
        expected,
        "each cell at its last write"
    );
}
