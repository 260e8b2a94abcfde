//! Metadata benchmark (run by `bench/metadata`): a 100,000-member dimension queried through
//! `dim.*` with its filters pushed down to PostgreSQL (as SQL with bind parameters, the GiST
//! index on `path`) and evaluated in the engine over the embedded store; and the demo's
//! subtree grid, which joins the cube to `dim.entity`, on both stores. Prints Markdown rows.
//!
//! usage: metadata_bench POSTGRES_SERVER_URL   (postgres://USER@HOST:PORT, no database)

use std::collections::BTreeMap;
use std::time::Instant;

use quantatom_engine::metadata::{Dimension, MemberSpec, PostgresStoreSettings};
use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig, MetadataConfig};

/// Groups under the root, and leaves under each group: 100 + 100 × 999 + 1 = 100,001 members.
const GROUPS: usize = 100;
const LEAVES_PER_GROUP: usize = 999;

/// Timed runs after the first.
const RUNS: usize = 20;

const QUERIES: [(&str, &str); 4] = [
    (
        "subtree of 1,000 members of 100,001",
        "SELECT count(*) FROM dim.big WHERE path <@ 'Root.G42'",
    ),
    (
        "one member by code",
        "SELECT name FROM dim.big WHERE code = 'M42_7'",
    ),
    (
        "members at one level, by name pattern",
        "SELECT count(*) FROM dim.big WHERE nlevel(path) = 3 AND name LIKE 'Member 42\\_%'",
    ),
    (
        "demo subtree grid (1M cells) joined to dim.entity",
        "SELECT c.account, sum(c.amount) FROM cube.finance c JOIN dim.entity e ON c.entity = e.code \
         WHERE e.path <@ 'Total.EMEA' AND c.version = 'Budget' AND c.time BETWEEN '2025_01' AND '2025_12' \
         GROUP BY c.account ORDER BY c.account",
    ),
];

fn big_dimension() -> (Dimension, Vec<MemberSpec>) {
    let spec = |code: String, name: String, parent: Option<String>| MemberSpec {
        code,
        name,
        parent,
        attributes: BTreeMap::new(),
    };
    let mut members = vec![spec("Root".into(), "All".into(), None)];
    for group in 0..GROUPS {
        members.push(spec(
            format!("G{group}"),
            format!("Group {group}"),
            Some("Root".into()),
        ));
        for leaf in 0..LEAVES_PER_GROUP {
            members.push(spec(
                format!("M{group}_{leaf}"),
                format!("Member {group}_{leaf}"),
                Some(format!("G{group}")),
            ));
        }
    }
    let dimension = Dimension::new("big", "100,001 generated members");
    (dimension, members)
}

/// An engine over `folder` with the demo model and the big dimension, reopened so that its
/// `dim` schema lists the big dimension.
async fn engine(folder: &std::path::Path, metadata: MetadataConfig) -> Engine {
    let config = EngineConfig {
        storage: StorageConfig::Local(folder.to_owned()),
        demo_cells: Some(1_000_000),
        ledger: true,
        metadata,
        caches: Default::default(),
        compaction: Default::default(),
    };
    let loading = Engine::open(&config).await.expect("the engine opens");
    let (dimension, members) = big_dimension();
    loading
        .metadata()
        .create_dimension(dimension, members)
        .await
        .expect("the big dimension is created");
    Engine::open(&config).await.expect("the engine reopens")
}

/// First run and median of [`RUNS`] more, in milliseconds, and the answer.
async fn time(engine: &Engine, sql: &str) -> (f64, f64, String) {
    let session = engine.new_session();
    let run = async || {
        let started = Instant::now();
        let batches = session.sql(sql).await.unwrap().collect().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let answer = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (elapsed, answer)
    };
    let (first, answer) = run().await;
    let mut warm = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        warm.push(run().await.0);
    }
    warm.sort_by(f64::total_cmp);
    (first, warm[RUNS / 2], answer)
}

#[tokio::main]
async fn main() {
    let server = std::env::args()
        .nth(1)
        .expect("usage: metadata_bench POSTGRES_SERVER_URL");
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL answers");
    tokio::spawn(connection);
    let database = format!("quantatom_bench_{}", std::process::id());
    client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let postgres = MetadataConfig::Postgres(PostgresStoreSettings {
        url: format!("{server}/{database}"),
        pool_size: 4,
        timeout: std::time::Duration::from_secs(10),
    });
    let (embedded_folder, postgres_folder) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let embedded = engine(embedded_folder.path(), MetadataConfig::Embedded).await;
    let postgres = engine(postgres_folder.path(), postgres).await;
    println!(
        "| query | PostgreSQL store, filters pushed down: first / median (ms) | embedded store, filtered in the engine: first / median (ms) |"
    );
    println!("|---|---|---|");
    for (name, sql) in QUERIES {
        let (pg_first, pg_median, pg_answer) = time(&postgres, sql).await;
        let (em_first, em_median, em_answer) = time(&embedded, sql).await;
        assert_eq!(pg_answer, em_answer, "{name}: the stores answer alike");
        println!("| {name} | {pg_first:.2} / {pg_median:.2} | {em_first:.2} / {em_median:.2} |");
    }
    drop(postgres);
    let _ = client
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await;
}
