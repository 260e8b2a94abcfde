//! Latest write wins: overwrites from many writers while compactions run lose nothing, and a
//! write that read an old version fails with 40001 when a later commit touched its cells.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Decimal128Array, RecordBatch, StringViewArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use quantatom_table_providers::mdf::dml::CubeDmlRule;
use quantatom_table_providers::mdf::maintenance::{AUTO_COMPACT_FILES, compact};
use quantatom_table_providers::mdf::{
    CommitOperation, CubeDefinition, MdfError, MdfTable, Measure,
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

/// A new cube in `backend` and a session over it.
async fn new_cube(backend: &Backend) -> (Arc<MdfTable>, SessionContext) {
    let table = Arc::new(
        MdfTable::create(backend.storage.clone(), cube())
            .await
            .unwrap(),
    );
    let context = session(backend, &table);
    (table, context)
}

/// `(writer, cell, copies, amount)` per coordinate, in order.
async fn grid(context: &SessionContext) -> Vec<(String, String, i64, i128)> {
    let batches = context
        .sql("SELECT writer, cell, count(*), max(amount) FROM plan GROUP BY writer, cell ORDER BY writer, cell")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
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
                let report = compact(&table, &state, None, &|_| {}).await.unwrap();
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
    compact(&table, &context.state(), None, &|_| {})
        .await
        .unwrap();
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
