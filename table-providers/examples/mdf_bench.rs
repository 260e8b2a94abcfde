//! MDF storage benchmark: opening a cube's log at 100 and 10,000 commits, one-cell commit
//! latency, and commit throughput with 1, 8 and 32 concurrent writers, on a local folder and,
//! when `QUANTATOM_TEST_S3_BUCKET` and the `AWS_*` variables name an S3-compatible server, on
//! S3. Prints a Markdown section; `bench/mdf` runs it and puts that into docs/benchmarks.md.
//!
//! `cargo run --release --example mdf_bench -p quantatom-table-providers`

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Decimal128Array, RecordBatch, StringViewArray};
use datafusion::catalog::TableProvider;
use quantatom_table_providers::mdf::{CubeDefinition, CubeLog, MdfTable, Measure};
use quantatom_table_providers::storage::{S3Settings, Storage, StorageConfig};

/// Commits per throughput run, shared among its writers.
const COMMITS_PER_RUN: usize = 256;

fn cube(name: &str) -> CubeDefinition {
    CubeDefinition {
        name: name.into(),
        dimensions: vec!["entity".into(), "account".into()],
        measures: vec![Measure {
            name: "amount".into(),
            precision: 18,
            scale: 2,
        }],
    }
}

fn one_cell(table: &MdfTable, writer: usize, n: usize) -> RecordBatch {
    RecordBatch::try_new(
        TableProvider::schema(table),
        vec![
            Arc::new(StringViewArray::from(vec![format!("E{writer}")])),
            Arc::new(StringViewArray::from(vec![format!("A{n}")])),
            Arc::new(
                Decimal128Array::from(vec![n as i128])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// p50 and p99 of one-cell commits (a data file and a log entry each), in milliseconds.
async fn commit_latency(storage: &Storage, commits: usize) -> (f64, f64) {
    let table = MdfTable::create(storage.clone(), cube("latency"))
        .await
        .unwrap();
    let mut times = Vec::with_capacity(commits);
    for n in 0..commits {
        let cell = one_cell(&table, 0, n);
        let started = Instant::now();
        table.append(&[cell]).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// Commits per second with `writers` tasks committing `each` one-cell appends at once.
async fn throughput(storage: &Storage, writers: usize, each: usize) -> f64 {
    let table = Arc::new(
        MdfTable::create(storage.clone(), cube(&format!("throughput{writers}")))
            .await
            .unwrap(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let table = Arc::clone(&table);
            tokio::spawn(async move {
                for n in 0..each {
                    table.append(&[one_cell(&table, writer, n)]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        table.version().await.unwrap().0 as usize,
        writers * each,
        "every commit landed"
    );
    (writers * each) as f64 / seconds
}

/// Milliseconds to open (read the latest snapshot of) a cube with `commits` commits, from a
/// fresh handle, as a new server replica does.
async fn open_time(storage: &Storage, commits: usize) -> f64 {
    let name = format!("open{commits}");
    let log = CubeLog::new(storage.clone(), &name);
    log.create(cube(&name)).await.unwrap();
    // One writer: no lost races, so building a long log costs one listing, one put per commit.
    for n in 0..commits {
        let file = quantatom_table_providers::mdf::DataFile {
            path: format!("data/{n}.parquet"),
            size: 1,
            rows: 1,
            kind: Default::default(),
            seq: None,
            bounds: None,
            sha256: None,
            summary: None,
            marks: Default::default(),
        };
        log.commit_append(vec![file]).await.unwrap();
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let fresh = CubeLog::new(storage.clone(), &name);
        let started = Instant::now();
        let snapshot = fresh.latest().await.unwrap();
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(snapshot.files.len(), commits);
    }
    best
}

async fn measure(label: &str, storage: Storage) {
    let (p50, p99) = commit_latency(&storage, 200).await;
    let mut rates = Vec::new();
    for writers in [1, 8, 32] {
        rates.push(throughput(&storage, writers, COMMITS_PER_RUN / writers).await);
    }
    let open_100 = open_time(&storage, 100).await;
    let open_10k = open_time(&storage, 10_000).await;
    println!(
        "| {label} | {p50:.1} | {p99:.1} | {:.0} | {:.0} | {:.0} | {open_100:.1} | {open_10k:.1} |",
        rates[0], rates[1], rates[2]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "| storage | commit p50 (ms) | commit p99 (ms) | commits/s, 1 writer | 8 writers | 32 writers | open at 100 commits (ms) | open at 10,000 commits (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let folder = tempfile::tempdir().unwrap();
    measure("local folder", Storage::local(folder.path()).unwrap()).await;
    if let Ok(bucket) = std::env::var("QUANTATOM_TEST_S3_BUCKET") {
        let location = format!("s3://{bucket}/bench-{}", uuid::Uuid::new_v4().simple());
        let settings = S3Settings {
            path_style: true,
            ..S3Settings::default()
        };
        let config = StorageConfig::from_location(&location, settings).unwrap();
        measure("S3 (moto on loopback)", Storage::open(&config).unwrap()).await;
    }
}
