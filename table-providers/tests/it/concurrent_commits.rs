//! Many writers appending to one cube at once lose nothing and never share a version.

use std::sync::Arc;

use datafusion::arrow::array::{Decimal128Array, RecordBatch, StringViewArray};
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use quantatom_table_providers::mdf::{CubeDefinition, CubeLog, MdfError, MdfTable, Measure};
use quantatom_table_providers::storage::Operation;

use crate::support::{Backend, backends};

const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 5;

fn cube() -> CubeDefinition {
    CubeDefinition {
        name: "plan".into(),
        dimensions: vec!["writer".into(), "append".into()],
        measures: vec![Measure {
            name: "amount".into(),
            precision: 18,
            scale: 2,
        }],
    }
}

/// The one cell writer `writer` writes in its append `append`.
fn cell(table: &MdfTable, writer: usize, append: usize) -> RecordBatch {
    RecordBatch::try_new(
        TableProvider::schema(table),
        vec![
            Arc::new(StringViewArray::from(vec![format!("w{writer}")])),
            Arc::new(StringViewArray::from(vec![format!("a{append}")])),
            Arc::new(
                Decimal128Array::from(vec![(writer * 100 + append) as i128])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

async fn appends_from_many_writers(backend: Backend) {
    let name = backend.name;
    let table = Arc::new(
        MdfTable::create(backend.storage.clone(), cube())
            .await
            .unwrap(),
    );
    // Each writer opens the cube on its own, as separate processes (replicas) would: their
    // commits race for versions on the store (one process's commits take turns).
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let storage = backend.storage.clone();
            let name = table.definition().name.clone();
            tokio::spawn(async move {
                let table = MdfTable::open(storage, &name).await.unwrap();
                let mut versions = Vec::new();
                for append in 0..APPENDS_PER_WRITER {
                    let batch = cell(&table, writer, append);
                    let version = table.append(&[batch]).await.unwrap();
                    versions.push(version.expect("a cell was written").0);
                }
                versions
            })
        })
        .collect();
    let mut versions = Vec::new();
    for writer in writers {
        versions.extend(writer.await.unwrap());
    }
    versions.sort_unstable();
    let commits = (WRITERS * APPENDS_PER_WRITER) as u64;
    assert_eq!(
        versions,
        (1..=commits).collect::<Vec<_>>(),
        "{name}: every acknowledged append owns one version, and the versions have no gaps"
    );
    assert_eq!(table.version().await.unwrap().0, commits, "{name}");

    let context = SessionContext::new();
    backend.storage.register(context.runtime_env().as_ref());
    context
        .register_table("plan", Arc::clone(&table) as _)
        .unwrap();
    let rows = context
        .sql("SELECT writer, append, count(*) AS copies, sum(amount) AS amount FROM plan GROUP BY writer, append ORDER BY writer, append")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let seen: Vec<(String, String, i64, i128)> = rows
        .iter()
        .flat_map(|batch| {
            let column = |i: usize| batch.column(i).clone();
            let (writers, appends, copies, amounts) = (column(0), column(1), column(2), column(3));
            (0..batch.num_rows()).map(move |row| {
                use datafusion::arrow::array::AsArray;
                use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
                (
                    writers.as_string_view().value(row).to_owned(),
                    appends.as_string_view().value(row).to_owned(),
                    copies.as_primitive::<Int64Type>().value(row),
                    amounts.as_primitive::<Decimal128Type>().value(row),
                )
            })
        })
        .collect();
    let mut expected: Vec<(String, String, i64, i128)> = (0..WRITERS)
        .flat_map(|writer| {
            (0..APPENDS_PER_WRITER).map(move |append| {
                (
                    format!("w{writer}"),
                    format!("a{append}"),
                    1,
                    (writer * 100 + append) as i128,
                )
            })
        })
        .collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "{name}: every write is visible exactly once"
    );

    let puts = backend.storage.metrics().of(Operation::Put);
    assert!(
        puts.calls > 2 * commits,
        "{name}: every data file and log entry went through the observed store: {puts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_lose_nothing_on_every_backend() {
    for backend in backends() {
        appends_from_many_writers(backend).await;
    }
}

/// The commit protocol rests on put-if-absent: a second write of a log entry must be refused
/// by the store itself (S3: `If-None-Match: *` answered with 412), not overwrite the first.
#[tokio::test]
async fn the_store_refuses_a_second_write_of_a_log_entry() {
    for backend in backends() {
        let log = CubeLog::new(backend.storage.clone(), "plan");
        log.create(cube()).await.unwrap();
        let second = log.create(cube()).await;
        assert!(
            matches!(second, Err(MdfError::AlreadyExists(_))),
            "{}: {second:?}",
            backend.name
        );
        let puts = backend.storage.metrics().of(Operation::Put);
        assert_eq!((puts.calls, puts.errors), (2, 1), "{}", backend.name);
    }
}
