//! Server-side time of the tour's P&L grid (bench/grid.sql) in the engine, without the wire
//! (run by `bench/tiles/run`): parsing, planning and running it in a session, as the server
//! does for a simple query. Prints the Markdown rows of p50 and p99 in milliseconds for a cold
//! run (a new engine over the data, tiles off; 5 engines), byte-cache warm runs (tiles off) and
//! tile hits (50 runs each).
//!
//! usage: tile_bench DATA_DIR GRID_SQL_FILE   (a folder holding the demo, `quantatom demo`)

use std::time::Instant;

use quantatom_engine::storage::StorageConfig;
use quantatom_engine::{Engine, EngineConfig};

/// Timed runs after the first.
const RUNS: usize = 50;

async fn open(data: &str) -> Engine {
    Engine::open(&EngineConfig {
        storage: StorageConfig::Local(data.into()),
        demo_cells: None,
        ledger: true,
        metadata: Default::default(),
        caches: Default::default(),
        compaction: Default::default(),
    })
    .await
    .expect("the data opens")
}

/// Milliseconds of each of `runs` runs of `sql` in one session of `engine`, after `setting`.
async fn time(engine: &Engine, setting: &str, sql: &str, runs: usize) -> Vec<f64> {
    let session = engine.new_session();
    session.sql(setting).await.unwrap().collect().await.unwrap();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        session.sql(sql).await.unwrap().collect().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times
}

fn row(name: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    let at = |p: usize| times[(times.len() - 1) * p / 100];
    println!("| {name} | {:.3} | {:.3} |", at(50), at(99));
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(data), Some(grid)) = (args.next(), args.next()) else {
        eprintln!("usage: tile_bench DATA_DIR GRID_SQL_FILE");
        std::process::exit(2);
    };
    let grid = std::fs::read_to_string(grid).expect("the grid query is readable");
    let off = "SET quantatom.tile_cache = false";
    let mut cold = Vec::new();
    for _ in 0..5 {
        cold.extend(time(&open(&data).await, off, &grid, 1).await);
    }
    let engine = open(&data).await;
    let warm = time(&engine, off, &grid, RUNS + 1).await;
    let hits = time(&engine, "SET quantatom.tile_cache = true", &grid, RUNS + 1).await;
    row("cold (tiles off, new engine; 5 runs)", cold);
    row("byte-cache warm (tiles off)", warm[1..].to_vec());
    row("tile hit", hits[1..].to_vec());
}
